using System.Text.RegularExpressions;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>Settings of the PostgreSQL backend.</summary>
public sealed partial record PostgresEventStoreOptions
{
    /// <summary>
    /// The most bytes of events (data, metadata and envelopes) one append may carry, and one group-commit batch of appends: PostgreSQL
    /// takes a statement's parameters in one protocol message of at most 1 GB, and closes the connection over it.
    /// </summary>
    internal const long DefaultMaxAppendBytes = 768L * 1024 * 1024;

    /// <summary>The limit <see cref="DefaultMaxAppendBytes"/> describes; lower in tests.</summary>
    internal long MaxAppendBytes { get; init; } = DefaultMaxAppendBytes;

    /// <summary>The Npgsql connection string, such as <c>Host=db;Database=app;Username=app;Password=…</c>.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>
    /// Called on each Npgsql data source builder Cairn makes from <see cref="ConnectionString"/> (the store's pool, the
    /// queue and append listeners' own connections, the migrator's), before it is built: for what a connection string cannot say,
    /// such as a password or token provider (<c>UsePeriodicPasswordProvider</c>), client certificates, a physical
    /// connection initializer or logging. Null by default.
    /// </summary>
    public Action<NpgsqlDataSourceBuilder>? ConfigureDataSource { get; init; }

    /// <summary>
    /// The PostgreSQL schema holding Cairn's tables, created when missing. Several stores can share a database, each in
    /// its own schema; their appends never wait for one another's locks (with <see cref="NotifyAppends"/> on, they take
    /// turns at the commit). Letters, digits and underscores, not starting with a digit, at most 63 characters. Cairn
    /// quotes the name, so its case counts: SQL of your own must quote a name with capitals ("Billing"), which
    /// PostgreSQL would otherwise fold to another schema (billing).
    /// </summary>
    public string Schema { get; init; } = "cairn";

    /// <summary>
    /// Whether opening the store creates and migrates its tables (under an advisory lock, so several processes may
    /// start at once). When false, the schema must already be at the version this library expects.
    /// </summary>
    public bool MigrateOnStart { get; init; } = true;

    /// <summary>
    /// How often live readers look for commits made by other processes when no notification woke them (with
    /// <see cref="NotifyAppends"/> off, or while the listening connection is down); commits in this process wake them
    /// at once. An interval past 49 days (<see cref="TimeSpan.MaxValue"/>) means they never poll.
    /// </summary>
    public TimeSpan ExternalCommitPollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Whether each append notifies (<c>pg_notify</c>) the schema's append channel as it commits, so the live readers of
    /// every other process wake at once instead of at their next <see cref="ExternalCommitPollInterval"/>. On by
    /// default. PostgreSQL commits transactions that notify one at a time across the server; a schema's appends are
    /// one at a time already, but turn this off when stores in several schemas of one server must commit their appends
    /// at once, and their readers in other processes can wait for the poll.
    /// </summary>
    public bool NotifyAppends { get; init; } = true;

    /// <summary>Refuses impossible settings with a message naming the setting.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString))
        {
            throw new ArgumentException("The PostgreSQL connection string is empty; give one such as \"Host=localhost;Database=app;Username=app\".", nameof(ConnectionString));
        }

        try
        {
            _ = new NpgsqlConnectionStringBuilder(ConnectionString);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException)
        {
            // Npgsql's own words name the keyword ("Couldn't set port"); the string itself may hold a password.
            throw new ArgumentException($"The PostgreSQL connection string is not valid: {ex.Message}", nameof(ConnectionString), ex);
        }

        if (Schema is null || !SchemaName().IsMatch(Schema))
        {
            throw new ArgumentException($"'{Schema}' is not a valid schema name for Cairn: letters, digits and underscores, not starting with a digit, at most 63 characters.", nameof(Schema));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ExternalCommitPollInterval, TimeSpan.Zero, nameof(ExternalCommitPollInterval));
    }

    /// <summary>
    /// A data source of <see cref="ConnectionString"/>: <paramref name="defaults"/> first, then
    /// <see cref="ConfigureDataSource"/>, then <paramref name="required"/>, which the application's callback cannot undo.
    /// Every connection Cairn opens comes from one.
    /// </summary>
    internal NpgsqlDataSource BuildDataSource(Action<NpgsqlConnectionStringBuilder>? defaults = null, Action<NpgsqlConnectionStringBuilder>? required = null)
    {
        var builder = new NpgsqlDataSourceBuilder(ConnectionString);
        defaults?.Invoke(builder.ConnectionStringBuilder);
        ConfigureDataSource?.Invoke(builder);
        required?.Invoke(builder.ConnectionStringBuilder);
        return builder.Build();
    }

    // \z, not $: $ also matches before a final new line, and "cairn\n" would name another, empty schema.
    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]{0,62}\z", RegexOptions.CultureInvariant)]
    private static partial Regex SchemaName();
}
