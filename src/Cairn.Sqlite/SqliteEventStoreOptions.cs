namespace Cairn.Sqlite;

/// <summary>How hard a commit is pushed to disk before the append is acknowledged.</summary>
public enum SqliteDurability
{
    /// <summary><c>synchronous=FULL</c>: every acknowledged commit survives a power loss. The default.</summary>
    Full,

    /// <summary><c>synchronous=NORMAL</c>: commits survive a process crash; the last ones may be lost on power loss.</summary>
    Normal,
}

/// <summary>Settings of the embedded SQLite backend.</summary>
public sealed record SqliteEventStoreOptions
{
    /// <summary>The connection string, such as <c>Data Source=cairn.db</c>. The file is created on first use.</summary>
    public required string ConnectionString { get; init; }

    /// <summary>Whether a commit waits for the disk (the default) or only for the OS.</summary>
    public SqliteDurability Durability { get; init; } = SqliteDurability.Full;

    /// <summary>The most write operations (appends, checkpoints, lifecycle changes) one group commit takes: 1 to 1,000,000.</summary>
    public int MaxOperationsPerCommit { get; init; } = 2048;

    /// <summary>
    /// How often live readers look for commits made by other processes; commits in this process wake them at once. An
    /// interval past 49 days (<see cref="TimeSpan.MaxValue"/>) means they never look, for a file one process writes.
    /// </summary>
    public TimeSpan ExternalCommitPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Whether the write-ahead log is copied back into the file by a thread of its own (the default), beside the
    /// writer's commits, rather than by SQLite inside the commit that crosses its threshold, which then holds up every
    /// write queued behind it.
    /// </summary>
    public bool BackgroundCheckpoints { get; init; } = true;

    /// <summary>
    /// How long a statement waits for a lock held by another process before failing. SQLite counts it in milliseconds
    /// of a 32-bit number: a longer one waits as long as SQLite can (about 24.8 days).
    /// </summary>
    public TimeSpan BusyTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary><see cref="BusyTimeout"/> in milliseconds, as every connection hands it to SQLite.</summary>
    internal int BusyTimeoutMilliseconds => (int)Math.Min(int.MaxValue, BusyTimeout.TotalMilliseconds);

    /// <summary>Refuses impossible settings with a message naming the setting.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString))
        {
            throw new ArgumentException("The SQLite connection string is empty; give one such as \"Data Source=cairn.db\".", nameof(ConnectionString));
        }

        // The store opens the file from several connections of its own (its readers) by its path: a URI file name
        // ("file:…", which Microsoft.Data.Sqlite opens) would leave them opening another file, and every read failing.
        Microsoft.Data.Sqlite.SqliteConnectionStringBuilder builder;
        try
        {
            builder = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(ConnectionString);
        }
        catch (FormatException ex)
        {
            // A value of the wrong form ("Pooling=maybe"): an ArgumentException, as an unknown keyword is.
            throw new ArgumentException($"The SQLite connection string has a value of the wrong form: {ex.Message}", nameof(ConnectionString), ex);
        }

        if (builder.DataSource.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException("The SQLite Data Source is a URI (\"file:…\"); give the file's path instead, such as \"Data Source=/var/lib/app/cairn.db\".", nameof(ConnectionString));
        }

        // Refused wherever the options are used (the store, the storage migrator), so a tool's status never calls current
        // what the store would not open.
        if (builder.Mode == Microsoft.Data.Sqlite.SqliteOpenMode.Memory || builder.DataSource is "" or ":memory:")
        {
            throw new ArgumentException("The SQLite event store needs a file: an in-memory SQLite database is private to one connection. Use UseInMemory() for a store in memory.", nameof(ConnectionString));
        }

        if (builder.Mode == Microsoft.Data.Sqlite.SqliteOpenMode.ReadOnly)
        {
            throw new ArgumentException("The SQLite event store writes to its file: Mode=ReadOnly is not supported.", nameof(ConnectionString));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(MaxOperationsPerCommit, 1, nameof(MaxOperationsPerCommit));

        // The writer holds a batch's slots for good: a limit far past what one commit can gather would only take memory.
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxOperationsPerCommit, 1_000_000, nameof(MaxOperationsPerCommit));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ExternalCommitPollInterval, TimeSpan.Zero, nameof(ExternalCommitPollInterval));
        ArgumentOutOfRangeException.ThrowIfLessThan(BusyTimeout, TimeSpan.FromMilliseconds(1), nameof(BusyTimeout));
    }
}
