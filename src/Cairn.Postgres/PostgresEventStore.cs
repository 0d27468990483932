using Cairn.EventStore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// The event store on PostgreSQL, shared by any number of processes. Each append is one transaction that assigns
/// positions under a transaction-scoped advisory lock and holds it until it commits (its checks run under the lock too,
/// or before it on a read whose head is checked unchanged under it): positions are assigned in commit order, so a reader of <c>$all</c> never sees a position before a lower one
/// that is still to commit, and a rolled-back append leaves no gap to wait for (see docs/postgres.md).
/// </summary>
public sealed partial class PostgresEventStore : IEventStore, IDisposable, IAsyncDisposable
{
    private readonly EventStoreOptions _options;
    private readonly PostgresEventStoreOptions _postgresOptions;
    private readonly NpgsqlDataSource _dataSource;
    private readonly PostgresWriter _writer;

    /// <summary>The writer every write of this store goes through.</summary>
    internal PostgresWriter Writer => _writer;
    private readonly AppendSignal _signal;
    private readonly PostgresListener? _appendListener;
    private readonly ILogger _logger;
    private readonly string _s;
    private readonly int _schemaKey;
    private int _disposed;

    /// <summary>
    /// Opens the store, creating or migrating its schema first unless <see cref="PostgresEventStoreOptions.MigrateOnStart"/>
    /// is off. <paramref name="cancellationToken"/> ends a wait for another process's migration (a host passes its
    /// stopping token, so a host stopped while it starts does not wait for ever); the store is then not opened.
    /// </summary>
    /// <exception cref="OperationCanceledException">The token fired while the store waited for another process's migration.</exception>
    public PostgresEventStore(PostgresEventStoreOptions postgresOptions, EventStoreOptions? options = null, ILogger<PostgresEventStore>? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(postgresOptions);
        postgresOptions.Validate();
        _options = options ?? new EventStoreOptions();
        _options.Validate();
        _postgresOptions = postgresOptions;
        _logger = logger ?? NullLogger<PostgresEventStore>.Instance;
        _signal = new AppendSignal(postgresOptions.ExternalCommitPollInterval);
        _s = PostgresSchema.Quote(postgresOptions.Schema);
        _schemaKey = PostgresSchema.SchemaKey(postgresOptions.Schema);
        _dataSource = CreateDataSource(postgresOptions);
        try
        {
            if (postgresOptions.MigrateOnStart)
            {
                PostgresSchema.Migrate(_dataSource, postgresOptions.Schema, cancellationToken);
            }
            else
            {
                PostgresSchema.Check(_dataSource, postgresOptions.Schema);
            }

            using var connection = _dataSource.OpenConnection();
            using var command = new NpgsqlCommand(HeadPositionSql, connection);
            _signal.Advance((long)command.ExecuteScalar()!);
        }
        catch
        {
            _dataSource.Dispose();
            throw;
        }

        AppendChannel = postgresOptions.Schema.Length <= 55 ? postgresOptions.Schema + ".appends" : $"cairn_{_schemaKey:x8}.appends";
        _appendListener = postgresOptions.NotifyAppends
            ? new PostgresListener(postgresOptions, AppendChannel, PostgresListener.AppendApplicationName, "append notifications", Notified, _signal.Pulse, _logger)
            : null;
        _writer = new PostgresWriter(this, _dataSource, _logger);
        _logger.LogInformation("Cairn PostgreSQL event store opened in schema {Schema} (head {Head}).", postgresOptions.Schema, _signal.Head);
    }

    /// <summary>The PostgreSQL schema holding the store's tables.</summary>
    public string Schema => _postgresOptions.Schema;

    /// <summary>The event store's settings: source, size limit and clock.</summary>
    internal EventStoreOptions Options => _options;

    /// <summary>The backend's settings: connection string, schema and poll interval.</summary>
    internal PostgresEventStoreOptions PostgresOptions => _postgresOptions;

    /// <summary>
    /// The channel every append notifies as it commits, in any process: the live readers of every other process sharing
    /// the schema wake at once, instead of at their next <see cref="PostgresEventStoreOptions.ExternalCommitPollInterval"/>.
    /// </summary>
    internal string AppendChannel { get; }

    /// <summary>
    /// The start of every append notification's payload, the rest being the head: the schema's own name, since two
    /// schemas' channels may coincide (a long name's is made from its hash).
    /// </summary>
    internal string NotificationPrefix => _postgresOptions.Schema + ":";

    /// <summary>
    /// An append committed, maybe in another process: its payload names the schema and the head it left. A payload of
    /// another schema on the same channel only makes the readers look again.
    /// </summary>
    private void Notified(string payload)
    {
        if (payload.StartsWith(NotificationPrefix, StringComparison.Ordinal)
            && long.TryParse(payload.AsSpan(NotificationPrefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var head))
        {
            _signal.Advance(head);
        }
        else
        {
            _signal.Pulse();
        }
    }

    /// <summary>The listener of <see cref="AppendChannel"/>, opened by the first live reader that waits; none with <see cref="PostgresEventStoreOptions.NotifyAppends"/> off.</summary>
    internal PostgresListener? AppendListener => _appendListener;

    /// <summary>The schema-qualified name of one of the store's tables.</summary>
    internal string Table(string name) => _s + "." + name;

    /// <summary>Opens a pooled connection to the store's database.</summary>
    internal ValueTask<NpgsqlConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        return _dataSource.OpenConnectionAsync(cancellationToken);
    }

    /// <inheritdoc />
    public Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken)
    {
        try
        {
            _appendListener?.Start();
            return _signal.WaitAsync(position.Value, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task SetStreamMetadataAsync(StreamName stream, StreamMetadata metadata, ExpectedVersion expectedMetadataVersion, CancellationToken cancellationToken) =>
        ChangeLifecycleAsync(stream, ExpectedVersion.Any, StreamRules.LifecycleChange.SetMetadata, metadata, expectedMetadataVersion, cancellationToken);

    /// <inheritdoc />
    public Task DeleteStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        ChangeLifecycleAsync(stream, expectedVersion, StreamRules.LifecycleChange.SoftDelete, null, ExpectedVersion.Any, cancellationToken);

    /// <inheritdoc />
    public Task TombstoneStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        ChangeLifecycleAsync(stream, expectedVersion, StreamRules.LifecycleChange.Tombstone, null, ExpectedVersion.Any, cancellationToken);

    /// <summary>
    /// The connection pool. Unless the connection string sets <c>Max Auto Prepare</c>, Npgsql prepares the statements a connection
    /// runs more than once (the store's statements are few and repeat), so PostgreSQL parses and plans each once per
    /// connection.
    /// </summary>
    private static NpgsqlDataSource CreateDataSource(PostgresEventStoreOptions options) =>
        options.BuildDataSource(defaults: connection =>
        {
            if (connection.MaxAutoPrepare == 0)
            {
                connection.MaxAutoPrepare = 64;
                connection.AutoPrepareMinUsages = 2;
            }
        });

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Closes the store's connections.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _writer.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _appendListener?.Dispose();
        _dataSource.Dispose();
        _signal.Close(nameof(PostgresEventStore));
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _writer.DisposeAsync().ConfigureAwait(false);
        if (_appendListener is not null)
        {
            await _appendListener.DisposeAsync().ConfigureAwait(false);
        }

        await _dataSource.DisposeAsync().ConfigureAwait(false);

        // A wait for the next append ends now rather than at its poll, whose next read would find the store disposed.
        _signal.Close(nameof(PostgresEventStore));
    }
}
