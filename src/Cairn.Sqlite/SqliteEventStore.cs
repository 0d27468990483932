using Cairn.EventStore;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Sqlite;

/// <summary>
/// The embedded event store: one SQLite file in WAL mode, created on first use, with durable commits by default.
/// Appends from every caller go through one writer thread that commits whatever is queued in one transaction (group
/// commit); reads run on pooled connections beside it and never hold a snapshot between pages.
/// </summary>
public sealed partial class SqliteEventStore : IEventStore, IDisposable, IAsyncDisposable
{
    private readonly EventStoreOptions _options;
    private readonly SqliteEventStoreOptions _sqliteOptions;
    private readonly string _readConnectionString;
    private readonly AppendSignal _signal;
    private readonly EventReader _rows = new();
    private readonly ReadConnectionPool _readers;
    private readonly ILogger _logger;
    private int _disposed;

    /// <summary>Opens (creating when needed) the store in the file the connection string names.</summary>
    public SqliteEventStore(SqliteEventStoreOptions sqliteOptions, EventStoreOptions? options = null, ILogger<SqliteEventStore>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(sqliteOptions);
        sqliteOptions.Validate();
        _options = options ?? new EventStoreOptions();
        _options.Validate();
        _sqliteOptions = sqliteOptions;
        _logger = logger ?? NullLogger<SqliteEventStore>.Instance;
        _signal = new AppendSignal(sqliteOptions.ExternalCommitPollInterval);

        var builder = new SqliteConnectionStringBuilder(sqliteOptions.ConnectionString);
        var directory = Path.GetDirectoryName(Path.GetFullPath(builder.DataSource));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        builder.Pooling = true;
        builder.DefaultTimeout = (int)Math.Ceiling(sqliteOptions.BusyTimeoutMilliseconds / 1000.0);
        _readConnectionString = builder.ToString();
        DataSource = Path.GetFullPath(builder.DataSource);
        _readers = new ReadConnectionPool(DataSource, sqliteOptions.BusyTimeoutMilliseconds);

        var connection = new SqliteConnection(_readConnectionString);
        try
        {
            connection.Open();
            var synchronous = sqliteOptions.Durability == SqliteDurability.Full ? "FULL" : "NORMAL";
            using (var pragmas = connection.CreateCommand())
            {
                // Each write operation runs in a savepoint, whose statement journal SQLite would otherwise keep in a
                // temporary file created and deleted per commit; the WAL alone carries durability.
                pragmas.CommandText = $"PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = {sqliteOptions.BusyTimeoutMilliseconds}; PRAGMA temp_store = MEMORY;";
                pragmas.ExecuteNonQuery();
            }

            SqliteSchema.Ensure(connection);
            if (sqliteOptions.BackgroundCheckpoints)
            {
                using (var fallback = connection.CreateCommand())
                {
                    fallback.CommandText = "PRAGMA page_size";
                    var pageSize = (long)fallback.ExecuteScalar()!;

                    // A log that a long reader made grow past the writer's threshold is cut back to it once it starts over.
                    fallback.CommandText = $"PRAGMA wal_autocheckpoint = {SqliteCheckpointer.WriterCheckpointPages}; PRAGMA journal_size_limit = {SqliteCheckpointer.WriterCheckpointPages * pageSize}";
                    fallback.ExecuteNonQuery();
                }

                Checkpointer = new SqliteCheckpointer(_readConnectionString, synchronous, _logger);
            }

            Writer = new SqliteWriter(connection, sqliteOptions, _options, _signal, QueueSignal, _logger, Checkpointer);
        }
        catch
        {
            Checkpointer?.Dispose();
            connection.Dispose();
            throw;
        }

        _logger.LogInformation("Cairn SQLite event store opened at {Path} (head {Head}, durability {Durability}).", DataSource, _signal.Head, sqliteOptions.Durability);
    }

    /// <summary>The full path of the SQLite file.</summary>
    public string DataSource { get; }

    internal SqliteWriter Writer { get; }

    /// <summary>The background checkpointer; null when <see cref="SqliteEventStoreOptions.BackgroundCheckpoints"/> is off.</summary>
    internal SqliteCheckpointer? Checkpointer { get; }

    /// <summary>Wakes long-polling receivers when a commit puts messages in their queue.</summary>
    internal Messaging.QueueSignal QueueSignal { get; } = new();

    /// <summary>The event store's settings: source, size limit and clock, which messaging shares.</summary>
    internal EventStoreOptions Options => _options;

    /// <summary>The SQLite settings.</summary>
    internal SqliteEventStoreOptions SqliteOptions => _sqliteOptions;

    /// <inheritdoc />
    public Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken)
    {
        try
        {
            ThrowIfDisposed();
            var prepared = PreparedAppend.Prepare(request, _options);
            return Writer.ExecuteAsync(context => context.Append(prepared), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<AppendResult>(ex);
        }
    }

    /// <inheritdoc />
    public Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken)
    {
        try
        {
            ThrowIfDisposed();
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

    private Task ChangeLifecycleAsync(StreamName stream, ExpectedVersion expected, StreamRules.LifecycleChange change, StreamMetadata? metadata, ExpectedVersion expectedMetadata, CancellationToken cancellationToken)
    {
        PreparedAppend template;
        try
        {
            StreamRules.CheckLifecycleMetadata(change, metadata);
            ThrowIfDisposed();
            if (stream.IsSystem)
            {
                throw new InvalidStreamNameException(stream.Value, "the lifecycle of Cairn's own streams cannot be changed");
            }

            // Prepared here, on the caller's flow, so the record carries the caller's correlation and trace context;
            // the writer fills in the state it decides.
            template = PreparedAppend.Prepare(
                new AppendRequest(stream.MetadataStream, ExpectedVersion.Any, [StreamRules.LifecycleRecord(stream, StreamState.NotFound, new StreamMetadata())]),
                _options,
                allowSystemStreams: true);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }

        return Writer.ExecuteAsync(
            context => context.ChangeLifecycle(stream, expected, expectedMetadata, change, metadata, (state, md) =>
            {
                var part = template.Streams[0];
                var filled = part.Events[0] with { Data = StreamRules.LifecycleRecord(stream, state, md).Data };
                return template with { Streams = [part with { Events = [filled] }] };
            }),
            cancellationToken);
    }

    internal ReadConnectionPool.Lease RentReadConnection()
    {
        ThrowIfDisposed();
        return _readers.Rent();
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Finishes the queued writes, then closes the file.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // The writer first, which finishes the queued writes and tells the checkpointer of their pages; the last
        // connection to close checkpoints what is left. Waits for appends and long-polling receives end then: their
        // next look would find the store disposed.
        try
        {
            Writer.Dispose();
        }
        finally
        {
            Checkpointer?.Dispose();
            _readers.Dispose();
            _signal.Close(nameof(SqliteEventStore));
            QueueSignal.Close();
        }

        SqliteConnection.ClearPool(new SqliteConnection(_readConnectionString));
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
