using Cairn.EventStore;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>
/// The writer thread's view of the file: its connection, prepared statements and caches of stream state and
/// interned names. Only the writer thread touches it. Caches are dropped whenever a transaction rolls back or
/// another process has committed since ours.
/// </summary>
internal sealed partial class SqliteWriteContext : IDisposable
{
    private const int MaxCachedStreams = 100_000;
    private const int MaxCachedNames = 10_000;

    /// <summary>Correlation keys kept: those of the flows in progress are asked for again within moments.</summary>
    private const int MaxCachedCorrelations = 10_000;

    private readonly SqliteConnection _connection;
    private readonly EventStoreOptions _options;
    private readonly Dictionary<string, StreamRow> _streams = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _correlationKeys = new(StringComparer.Ordinal);
    private readonly System.Buffers.ArrayBufferWriter<byte> _envelope = new(256);
    private readonly bool _fullDurability;
    private bool _relaxed;
    private readonly RawStatement _begin, _commit, _rollback, _dataVersion, _head, _savepoint, _release, _rollbackToSavepoint;
    private readonly RawStatement _insertEvent, _insertTag, _selectStream, _insertStream, _updateStream, _selectName, _insertName, _selectId, _upsertCheckpoint;
    private long _dataVersionSeen = -1;
    private long _lastTimeTicks;
    private long _committedHead;
    private long _headBeforeOperation;
    private bool _inTransaction;

    public SqliteWriteContext(SqliteConnection connection, EventStoreOptions options, bool fullDurability)
    {
        _connection = connection;
        _options = options;
        _fullDurability = fullDurability;
        _begin = new RawStatement(connection, "BEGIN IMMEDIATE");
        _commit = new RawStatement(connection, "COMMIT");
        _rollback = new RawStatement(connection, "ROLLBACK");
        _savepoint = new RawStatement(connection, "SAVEPOINT cairn_operation");
        _release = new RawStatement(connection, "RELEASE cairn_operation");
        _rollbackToSavepoint = new RawStatement(connection, "ROLLBACK TO cairn_operation");
        _dataVersion = new RawStatement(connection, "PRAGMA data_version");
        // The last event: one seek of the table's key. Commit times never go backwards along the log, so its time is the
        // latest; asking max() of both columns instead read every row (no index has the time).
        _head = new RawStatement(connection, "SELECT position, time_ticks FROM cairn_events ORDER BY position DESC LIMIT 1");

        // Parameters are bound by position: the order of the ?NNN numbers below is the order the code binds them in.
        _insertEvent = new RawStatement(connection, """
            INSERT INTO cairn_events (position, stream_id, version, id, type_id, time_ticks, envelope, data)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            """);
        _insertTag = new RawStatement(connection, "INSERT INTO cairn_event_tags (tag, position) VALUES (?1, ?2)");
        _selectStream = new RawStatement(connection, "SELECT s.id, (SELECT max(e.version) FROM cairn_events e WHERE e.stream_id = s.id), s.state, s.max_count, s.max_age_ticks, s.truncate_before FROM cairn_streams s WHERE s.name = ?1");
        _insertStream = new RawStatement(connection, "INSERT INTO cairn_streams (name, category, state) VALUES (?1, ?2, ?3) RETURNING id");
        _updateStream = new RawStatement(
            connection,
            "UPDATE cairn_streams SET state = ?1, max_count = ?2, max_age_ticks = ?3, truncate_before = ?4 WHERE id = ?5");
        _selectName = new RawStatement(connection, "SELECT id FROM cairn_names WHERE value = ?1");
        _insertName = new RawStatement(connection, "INSERT INTO cairn_names (value) VALUES (?1) RETURNING id");
        _selectId = new RawStatement(connection, "SELECT s.name, e.version, e.position FROM cairn_events e JOIN cairn_streams s ON s.id = e.stream_id WHERE e.id = ?1");
        _upsertCheckpoint = new RawStatement(
            connection,
            "INSERT INTO cairn_checkpoints (key, position, updated_ticks) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET position = excluded.position, updated_ticks = excluded.updated_ticks");
        // data_version first: a commit by another connection after this read changes it, so the next Begin
        // reloads what LoadHead may have missed.
        _dataVersionSeen = _dataVersion.ExecuteInt64()!.Value;
        LoadHead();
    }

    /// <summary>The position of the last event written (committed, or in the open transaction).</summary>
    public long Head { get; private set; }

    /// <summary>Whether the operation in hand has written anything yet.</summary>
    private bool OperationWrote { get; set; }

    /// <summary>
    /// The commit time of the transaction in hand's events: the clock, but never before the last event's, so "as of a
    /// time" reads can stop at the first later event.
    /// </summary>
    public long TimeTicks { get; private set; }

    /// <summary>
    /// The clock as the transaction in hand began: what messaging's leases, delays and retention count from. Not
    /// <see cref="TimeTicks"/>, which a clock set back (after a restart, say) holds at the last event's time: no lease
    /// would run out and no delay fall due until the clock passed it.
    /// </summary>
    public long NowTicks { get; private set; }

    /// <summary>
    /// Begins a transaction. One that is not <paramref name="durable"/> commits without an fsync (WAL with
    /// <c>synchronous=NORMAL</c>, which SQLite lets change only between transactions): it survives a crash of the
    /// process, and the next durable commit flushes it with its own.
    /// </summary>
    public void Begin(bool durable = true)
    {
        // The level is switched lazily, here, between transactions: a commit never has to restore it, so no failure
        // after a COMMIT can leave durable commits running relaxed. The pragma is run afresh each time because SQLite
        // applies it when the statement is prepared, not when a cached statement is stepped.
        var relax = !durable && _fullDurability;
        if (relax != _relaxed)
        {
            var rc = raw.sqlite3_exec(_connection.Handle, relax ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
            if (rc != raw.SQLITE_OK)
            {
                throw new SqliteException($"Cannot set the commit's durability: {raw.sqlite3_errmsg(_connection.Handle).utf8_to_string()}", rc);
            }

            _relaxed = relax;
        }

        _begin.Execute();
        _inTransaction = true;
        _inlineChanges.Clear();
        var dataVersion = _dataVersion.ExecuteInt64()!.Value;
        if (dataVersion != _dataVersionSeen)
        {
            // Another connection committed since our last transaction: what we cached may be stale.
            DropCaches();
            LoadHead();
            _dataVersionSeen = dataVersion;
        }

        // Commit times never go backwards along the log, so "as of a time" reads can stop at the first later event.
        var now = _options.TimeProvider.GetUtcNow().UtcTicks;
        NowTicks = now;
        TimeTicks = Math.Max(now, _lastTimeTicks);
    }

    /// <summary>Whether the operation in hand runs inside a savepoint of its own.</summary>
    private bool _guarded;

    /// <summary>
    /// Starts an operation. A <paramref name="guarded"/> one runs inside its own savepoint, so a failure half-way
    /// through its writes undoes only its own; an unguarded one costs no savepoint, and if it fails after writing, only
    /// the whole transaction can be undone (<see cref="OperationUndo.NeedsSavepoint"/>).
    /// </summary>
    public void StartOperation(bool guarded)
    {
        OperationWrote = false;
        MarkOperationNotices();
        MarkInlineChanges();
        _headBeforeOperation = Head;
        _guarded = guarded;
        if (guarded)
        {
            _savepoint.Execute();
        }
    }

    /// <summary><c>SQLITE_DBSTATUS_CACHE_WRITE</c>: pages the connection has written out (to the log, in WAL mode).</summary>
    private const int SqliteDbStatusCacheWrite = 9;

    /// <summary>Pages the last commit wrote to the write-ahead log.</summary>
    public int PagesCommitted { get; private set; }

    /// <summary>Keeps the operation's writes in the transaction.</summary>
    public void EndOperation()
    {
        if (_guarded)
        {
            _release.Execute();
        }
    }

    /// <summary>
    /// Undoes the failed operation's writes and forgets what it cached, when that can be done without touching the
    /// others in the transaction: always for one that wrote nothing, and for a guarded one.
    /// </summary>
    public OperationUndo UndoOperation()
    {
        if (raw.sqlite3_get_autocommit(_connection.Handle) != 0)
        {
            _inTransaction = false;
            return OperationUndo.TransactionLost;
        }

        if (!OperationWrote)
        {
            EndOperation();
            return OperationUndo.Undone;
        }

        if (!_guarded)
        {
            return OperationUndo.NeedsSavepoint;
        }

        _rollbackToSavepoint.Execute();
        _release.Execute();
        UndoInlineChanges(_inlineChangesAtOperation);
        DropCaches();
        Head = _headBeforeOperation;
        return OperationUndo.Undone;
    }

    public void Commit()
    {
        _commit.Execute();
        raw.sqlite3_db_status(_connection.Handle, SqliteDbStatusCacheWrite, out var pages, out _, 1);
        PagesCommitted = pages;

        _inTransaction = false;
        _inlineChanges.Clear();
        _lastTimeTicks = TimeTicks;
        _committedHead = Head;

        // data_version does not move for this connection's own commits, so the value read in Begin stays exact.
    }

    public void Rollback()
    {
        // Asked of SQLite, not of our own flag: a transaction SQLite still holds open must be ended, or every later
        // BEGIN would fail.
        if (_inTransaction || raw.sqlite3_get_autocommit(_connection.Handle) == 0)
        {
            try
            {
                _rollback.Execute();
            }
            catch (SqliteException)
            {
                // SQLite may already have rolled back (after an I/O error); there is nothing left to undo.
            }

            _inTransaction = raw.sqlite3_get_autocommit(_connection.Handle) == 0;
        }

        UndoInlineChanges(0);
        Reset();
        ForgetPendingNotices();
    }

    /// <summary>Forgets everything cached, after a rollback or a fault.</summary>
    private void Reset()
    {

        DropCaches();
        Head = _committedHead;
        try
        {
            LoadHead();
        }
        catch (SqliteException)
        {
            // The file is unreadable for now; the next Begin will fail and say so.
        }
    }

    private void DropCaches()
    {
        _streams.Clear();
        _names.Clear();
        _correlationKeys.Clear();
        DropMessagingCaches();

        // A rolled back build may come back under the same id with another shape.
        DisposeProjectionStatements();
    }

    private void LoadHead()
    {
        try
        {
            var any = _head.Step();
            Head = any ? _head.Int64(0) : 0;
            _committedHead = Head;
            _lastTimeTicks = Math.Max(_lastTimeTicks, any ? _head.Int64(1) : 0);
        }
        finally
        {
            _head.Reset();
        }
    }

    public void Dispose()
    {
        if (_inTransaction)
        {
            Rollback();
        }

        foreach (var statement in new[] { _begin, _commit, _rollback, _savepoint, _release, _rollbackToSavepoint, _dataVersion, _head, _insertEvent, _insertTag, _selectStream, _insertStream, _updateStream, _selectName, _insertName, _selectId, _upsertCheckpoint })
        {
            statement.Dispose();
        }

        DisposeMessagingStatements();
        DisposeProjectionStatements();
        _connection.Dispose();
    }

    /// <summary>The connection's <c>synchronous</c> level now (1 NORMAL, 2 FULL): what the commit in hand will do.</summary>
    internal long SynchronousLevel()
    {
        using var pragma = new RawStatement(_connection, "PRAGMA synchronous");
        return pragma.ExecuteInt64() ?? -1;
    }

    /// <summary>The log pages after which the writer's connection checkpoints inside a commit (<c>wal_autocheckpoint</c>).</summary>
    internal long AutomaticCheckpointPages()
    {
        using var pragma = new RawStatement(_connection, "PRAGMA wal_autocheckpoint");
        return pragma.ExecuteInt64() ?? -1;
    }

    /// <summary>Stores a checkpoint in the transaction in hand.</summary>
    public void SetCheckpoint(string key, long position)
    {
        Wrote();
        _upsertCheckpoint.Bind(1, key);
        _upsertCheckpoint.Bind(2, position);
        _upsertCheckpoint.Bind(3, TimeTicks);
        _upsertCheckpoint.Execute();
    }

    private void Wrote() => OperationWrote = true;


    private sealed class StreamRow
    {
        public long Id { get; set; }

        public long? LastVersion { get; set; }

        public StreamState State { get; set; }

        public StreamMetadata Metadata { get; set; } = new();
    }
}

/// <summary>What <see cref="SqliteWriteContext.UndoOperation"/> could do about a failed operation.</summary>
internal enum OperationUndo
{
    /// <summary>The operation's writes are gone and the rest of the transaction stands.</summary>
    Undone,

    /// <summary>
    /// The operation wrote without a savepoint: only a rollback of the whole transaction undoes it, after which the
    /// operations are run again, each in a savepoint.
    /// </summary>
    NeedsSavepoint,

    /// <summary>SQLite has already rolled the whole transaction back (after an I/O error, say).</summary>
    TransactionLost,
}
