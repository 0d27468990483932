using System.Runtime.InteropServices;
using Cairn.EventStore;
using Npgsql;
using NpgsqlTypes;

namespace Cairn.Postgres;

public sealed partial class PostgresEventStore
{
    /// <inheritdoc />
    public async Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        var prepared = PreparedAppend.Prepare(request, _options);
        ThrowIfTooLarge(prepared);
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        return await _writer.AppendAsync(prepared, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Refuses an append whose data and metadata could not travel as one statement's parameters (PostgreSQL closes the
    /// connection over a protocol message of more than 1 GB): every append, alone or in a messaging transaction.
    /// </summary>
    internal void ThrowIfTooLarge(PreparedAppend prepared)
    {
        if (prepared.Bytes > _postgresOptions.MaxAppendBytes)
        {
            throw new AppendTooLargeException(prepared.Bytes, _postgresOptions.MaxAppendBytes);
        }
    }

    /// <summary>
    /// What runs inside the transaction of every append that wrote events, after they are written: each projection
    /// store over this store that attached inline projections applies them here, one after another, so a failure of
    /// any fails the append and takes back what the others wrote. Replaced whole under <see cref="_afterAppendGate"/>.
    /// </summary>
    private volatile Func<PostgresWriteContext, AppendResult, CancellationToken, Task>[] _afterAppend = [];
    private readonly Lock _afterAppendGate = new();

    /// <summary>Whether appends run anything after they write (then each runs alone, in a savepoint of its own).</summary>
    internal bool HasAfterAppend => _afterAppend.Length > 0;

    /// <summary>Has every append from now on run <paramref name="hook"/> in its transaction (once, however often it is added).</summary>
    internal void AddAfterAppend(Func<PostgresWriteContext, AppendResult, CancellationToken, Task> hook)
    {
        lock (_afterAppendGate)
        {
            if (!_afterAppend.Contains(hook))
            {
                _afterAppend = [.. _afterAppend, hook];
            }
        }
    }

    /// <summary>Stops running <paramref name="hook"/> after appends.</summary>
    internal void RemoveAfterAppend(Func<PostgresWriteContext, AppendResult, CancellationToken, Task> hook)
    {
        lock (_afterAppendGate)
        {
            _afterAppend = [.. _afterAppend.Where(h => h != hook)];
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> in a transaction of the process's writer, which commits it together with whatever
    /// other write work is queued (group commit); completes once it has committed, or with the work's own exception,
    /// having written nothing. On commit, readers waiting for its appends are woken and its
    /// <see cref="PostgresWriteContext.OnCommitted"/> actions run. The commit is not cancelled: once the work is done,
    /// a cancellation could no longer tell the caller whether it landed. Work must write only through the context it
    /// is given: queuing more write work from inside it is refused. Work that writes nothing is still answered only
    /// once a synchronous standby has everything up to its commit, unless <paramref name="confirmsReplication"/> is
    /// false (see <see cref="PostgresWriter.ExecuteAsync{T}"/>).
    /// </summary>
    internal Task<T> WriteAsync<T>(Func<PostgresWriteContext, Task<T>> work, CancellationToken cancellationToken, bool confirmsReplication = true)
    {
        try
        {
            ThrowIfDisposed();
        }
        catch (ObjectDisposedException disposed)
        {
            return Refusal.Of<T>(disposed);
        }

        return _writer.ExecuteAsync(work, cancellationToken, confirmsReplication);
    }

    /// <summary>Called by the writer once a transaction has committed.</summary>
    internal void Committed(PostgresWriteContext context)
    {
        if (context.LastAppended > 0)
        {
            _signal.Advance(context.LastAppended);
        }

        context.RunCommitted();
    }

    // Lookups by a list of keys go one key at a time, through the unique index: `key = ANY($1)` lets PostgreSQL plan a
    // scan of the whole table, and with statements prepared, a plan made while the table was small is kept after it grew.

    /// <summary>The rows of the streams named in <c>$1</c> (a text array), in <see cref="StreamRow.ColumnsOf"/>.</summary>
    private string StreamsByNameSql => _streamsByNameSql ??= $"SELECT s.* FROM unnest($1::text[]) AS n(name) CROSS JOIN LATERAL (SELECT {StreamRow.ColumnsOf(_s)} FROM {_s}.streams t WHERE t.name = n.name OFFSET 0) s";

    private string? _streamsByNameSql;

    /// <summary>The id, stream, version and position of the events whose ids are in <c>$1</c> (a uuid array).</summary>
    private string EventsByIdSql => _eventsByIdSql ??= $"SELECT e.* FROM unnest($1::uuid[]) AS r(id) CROSS JOIN LATERAL (SELECT t.id, t.stream, t.version, t.position FROM {_s}.events t WHERE t.id = r.id OFFSET 0) e";

    private string? _eventsByIdSql;

    /// <summary>The statement taking the append lock; it is held until the transaction ends.</summary>
    private string LockSql => $"SELECT pg_advisory_xact_lock({PostgresSchema.AppendLockClass}, {_schemaKey})";

    private string HeadSql => $"SELECT position, time_ticks FROM {_s}.events ORDER BY position DESC LIMIT 1";

    /// <summary>The last position in the log, 0 when it is empty; built once, since every optimistic write asks it.</summary>
    private string HeadPositionSql => _headPositionSql ??= $"SELECT coalesce(max(position), 0) FROM {_s}.events";

    private string? _headPositionSql;

    /// <summary>Takes the append lock and reads the head in a snapshot taken after it.</summary>
    internal async Task<(long Head, long LastTicks)> TakeAppendLockAsync(PostgresWriteContext context, CancellationToken cancellationToken)
    {
        await using var batch = context.Batch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(LockSql));
        batch.BatchCommands.Add(new NpgsqlBatchCommand(HeadSql));
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? (reader.GetInt64(0), reader.GetInt64(1)) : (0L, long.MinValue);
    }

    /// <summary>
    /// Appends in the transaction in hand. Unless the transaction holds it already, the first round trip takes the
    /// append lock and then reads, in snapshots taken after it (READ COMMITTED takes one per statement), the streams,
    /// any stored ids and the head: every append that committed before is visible and none can commit until this one
    /// does. Checks come next, then one statement writes the streams and the events.
    /// </summary>
    internal async Task<AppendResult> AppendInContextAsync(PostgresWriteContext context, PreparedAppend append, CancellationToken cancellationToken)
    {
        var state = await ReadAppendStateAsync(context, [append], cancellationToken).ConfigureAwait(false);
        if (state.TryRetry(append) is { } retried)
        {
            return retried;
        }

        var firstVersions = state.CheckExpectations(append);
        if (append.Condition is { } condition)
        {
            await CheckConditionAsync(context.Connection, context.Transaction, condition, cancellationToken).ConfigureAwait(false);
        }

        var rows = new PendingEvents();
        var appended = state.Plan(context.Log, append, firstVersions, rows, _options.TimeProvider.GetUtcNow().UtcTicks);
        await InsertAsync(context, rows, append, cancellationToken).ConfigureAwait(false);
        foreach (var after in _afterAppend)
        {
            await after(context, appended, cancellationToken).ConfigureAwait(false);
        }

        return appended;
    }

    /// <summary>
    /// Appends several unconditional appends in the transaction in hand with two round trips in all: one reads the
    /// state of every stream and id they touch (taking the append lock), one writes every event that passed its
    /// checks. Each append is checked in turn against the log and the appends before it, exactly as if it ran alone
    /// after them; one refused by a check gets its exception and writes nothing, the others go on. Only for appends
    /// with no condition, when no inline projection must follow each append.
    /// </summary>
    internal async Task<IReadOnlyList<(AppendResult? Result, Exception? Error)>> AppendManyInContextAsync(PostgresWriteContext context, IReadOnlyList<PreparedAppend> appends, CancellationToken cancellationToken)
    {
        var state = await ReadAppendStateAsync(context, appends, cancellationToken).ConfigureAwait(false);
        var rows = new PendingEvents();
        var outcomes = PlanEach(state, context.Log, appends, rows);
        if (rows.Count > 0)
        {
            await InsertAsync(context, rows, null, cancellationToken).ConfigureAwait(false);
        }

        return outcomes;
    }

    /// <summary>Checks and plans each append in turn, on the state as the ones before it left it.</summary>
    private (AppendResult? Result, Exception? Error)[] PlanEach(AppendState state, AppendHead log, IReadOnlyList<PreparedAppend> appends, PendingEvents rows)
    {
        var outcomes = new (AppendResult?, Exception?)[appends.Count];
        var now = _options.TimeProvider.GetUtcNow().UtcTicks;
        for (var i = 0; i < appends.Count; i++)
        {
            try
            {
                outcomes[i] = (state.TryRetry(appends[i]) ?? state.Plan(log, appends[i], state.CheckExpectations(appends[i]), rows, now), null);
            }
            catch (CairnException ex)
            {
                outcomes[i] = (null, ex);
            }
        }

        return outcomes;
    }

    /// <summary>
    /// Tries plain appends without the append lock held across round trips. Unless <paramref name="known"/> is given,
    /// the first round trip reads the head and then the streams the appends touch, with no lock; the appends are checked
    /// and planned on what it read. The write takes the lock and writes them, in one implicit transaction that commits
    /// as the round trip ends, and only if the head is still the one read: nothing writes streams or events without
    /// appending, so an unchanged head means everything read is still true. The lock is held for the write's work and
    /// its commit, never while the client plans. Event ids are not looked up, except those of refused appends: a reused
    /// one makes the write fail on the unique index, and the locked path then tells a retry from a duplicate.
    /// </summary>
    /// <param name="connection">An open connection with no transaction.</param>
    /// <param name="appends">The appends, each with no condition.</param>
    /// <param name="known">
    /// What the writer's own last commits left, to plan on with no read at all: the write then also requires that none
    /// of the streams it does not know exists. A refusal planned on it is not trusted.
    /// </param>
    /// <param name="cancellationToken">Calls off the write while it waits (for the append lock): nothing is written then.</param>
    /// <returns>
    /// The outcome of each append, as <see cref="AppendManyInContextAsync"/> gives them, with what is now known of the
    /// log; or, having written nothing, why not.
    /// </returns>
    internal async Task<OptimisticAppend> TryAppendOptimisticallyAsync(NpgsqlConnection connection, IReadOnlyList<PreparedAppend> appends, KnownLog? known, CancellationToken cancellationToken = default)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var append in appends)
        {
            foreach (var part in append.Streams)
            {
                names.Add(part.Stream.Value);
            }
        }

        var state = new AppendState();
        var log = new AppendHead();
        var unknown = new List<string>();
        if (known is not null)
        {
            log.Read(known.Head, known.LastTicks);
            foreach (var name in names)
            {
                if (known.Streams.TryGetValue(name, out var row))
                {
                    state.Streams[name] = row;
                }
                else
                {
                    unknown.Add(name);
                }
            }
        }
        else
        {
            try
            {
                await using var read = new NpgsqlBatch(connection);

                // The head first: a commit landing between the two reads then shows as a moved head.
                read.BatchCommands.Add(new NpgsqlBatchCommand(HeadSql));
                read.BatchCommands.Add(Command(StreamsByNameSql, names.ToArray()));
                await using var reader = await read.ExecuteReaderAsync(CancellationToken.None).ConfigureAwait(false);
                log.Read(0, long.MinValue);
                if (await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false))
                {
                    log.Read(reader.GetInt64(0), reader.GetInt64(1));
                }

                await reader.NextResultAsync(CancellationToken.None).ConfigureAwait(false);
                while (await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false))
                {
                    var row = StreamRow.Read(reader);
                    state.Streams[row.Name] = row;
                }
            }
            catch (NpgsqlException ex) when (ex is not PostgresException)
            {
                // The connection failed before anything was sent to write: the locked way, on a new one, decides.
                return OptimisticAppend.Unread;
            }
        }

        var expectedHead = log.Head;
        var rows = new PendingEvents();
        var outcomes = PlanEach(state, log, appends, rows);
        if (BeforeOptimisticWrite is { } beforeWrite)
        {
            await beforeWrite().ConfigureAwait(false);
        }

        // A refused append may be a retry of one that landed (a retry is one before its expected version is checked):
        // the write goes ahead only if none of the refused appends' ids is in the log.
        var refusedIds = new List<Guid>();
        for (var i = 0; i < appends.Count; i++)
        {
            if (outcomes[i].Error is not null)
            {
                refusedIds.AddRange(appends[i].Streams.SelectMany(p => p.Events).Select(e => e.Id.Value));
            }
        }

        if (known is not null && refusedIds.Count > 0)
        {
            return OptimisticAppend.Unsure;
        }

        if (rows.Count == 0)
        {
            await using var lookup = new NpgsqlCommand($"SELECT EXISTS ({EventsByIdSql})", connection);
            lookup.Parameters.Add(new NpgsqlParameter { Value = refusedIds, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
            return (bool)(await lookup.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false))!
                ? OptimisticAppend.IdConflict
                : new OptimisticAppend(outcomes, 0, Known: known);
        }

        await using var write = new NpgsqlBatch(connection);
        write.BatchCommands.Add(new NpgsqlBatchCommand(LockSql));
        var insert = new NpgsqlBatchCommand(GuardedInsertSql);
        rows.Bind(insert.Parameters);
        insert.Parameters.Add(new NpgsqlParameter { Value = expectedHead, NpgsqlDbType = NpgsqlDbType.Bigint });
        insert.Parameters.Add(new NpgsqlParameter { Value = refusedIds, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
        insert.Parameters.Add(new NpgsqlParameter { Value = unknown, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        write.BatchCommands.Add(insert);

        // The head after the write, still under the lock: when nothing was written, it tells a moved head from the rest.
        write.BatchCommands.Add(new NpgsqlBatchCommand(HeadPositionSql));

        // Last, so the reader need not step over it; only when the guard let the events in.
        if (_postgresOptions.NotifyAppends)
        {
            write.BatchCommands.Add(NotifyCommand(log.LastAppended));
        }
        long headAfter;
        try
        {
            // The reader steps over the insert, which returns no rows: from the lock's result to the head's. A
            // cancellation (while another process holds the lock, say) aborts the batch's implicit transaction:
            // PostgreSQL reports the statement cancelled only when nothing of it was committed.
            await using var reader = await write.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.NextResultAsync(CancellationToken.None).ConfigureAwait(false);
            await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false);
            headAfter = reader.GetInt64(0);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation && ex.ConstraintName == "events_id_key")
        {
            return OptimisticAppend.IdConflict;
        }

        if (insert.RecordsAffected != rows.Count)
        {
            return headAfter != expectedHead ? OptimisticAppend.HeadMoved
                : known is not null ? OptimisticAppend.Unsure
                : OptimisticAppend.IdConflict;
        }

        _signal.Advance(log.LastAppended);
        var streams = known is { Streams.Count: < KnownLog.MaxStreams } ? known.Streams : new Dictionary<string, StreamRow>(StringComparer.Ordinal);
        foreach (var (name, row) in state.Streams)
        {
            streams[name] = row;
        }

        return new OptimisticAppend(outcomes, log.LastAppended, Known: new KnownLog(log.Head, log.LastTicks, streams));
    }

    /// <summary>For tests: runs between an optimistic append's read and its write, where another writer may append.</summary>
    internal Func<Task>? BeforeOptimisticWrite { get; set; }

    /// <summary>What <see cref="TryAppendOptimisticallyAsync"/> did.</summary>
    /// <param name="Outcomes">Each append's result or refusal; null when nothing was written.</param>
    /// <param name="LastPosition">The last position written, or 0.</param>
    /// <param name="Moved">Nothing written: the head had moved since it was read (another writer appended).</param>
    /// <param name="Known">What the writer may plan its next appends on, when something was written.</param>
    /// <param name="Retry">Nothing written: what the writer knew was not enough; read the log and try again.</param>
    internal sealed record OptimisticAppend(
        (AppendResult? Result, Exception? Error)[]? Outcomes,
        long LastPosition,
        bool Moved = false,
        KnownLog? Known = null,
        bool Retry = false)
    {
        /// <summary>Another writer appended between the read and the write: the appends take the locked path.</summary>
        public static readonly OptimisticAppend HeadMoved = new(null, 0, Moved: true);

        /// <summary>An event id is in the log already: the locked path tells a retry from a duplicate.</summary>
        public static readonly OptimisticAppend IdConflict = new(null, 0);

        /// <summary>Planned on what the writer knew, and that did not hold (or refused an append): read and try again.</summary>
        public static readonly OptimisticAppend Unsure = new(null, 0, Retry: true);

        /// <summary>The connection failed while reading, before anything was sent to write: the appends take the locked path.</summary>
        public static readonly OptimisticAppend Unread = new(null, 0);
    }

    /// <summary>Reads, under the append lock (taken now unless held), what the appends' checks need.</summary>
    private async Task<AppendState> ReadAppendStateAsync(PostgresWriteContext context, IReadOnlyList<PreparedAppend> appends, CancellationToken cancellationToken)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var ids = new List<Guid>();
        foreach (var append in appends)
        {
            foreach (var part in append.Streams)
            {
                names.Add(part.Stream.Value);
                foreach (var e in part.Events)
                {
                    ids.Add(e.Id.Value);
                }
            }
        }

        var state = new AppendState();
        var locking = !context.HoldsAppendLock;
        await using var batch = context.Batch();
        if (locking)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(LockSql));
        }

        batch.BatchCommands.Add(Command(StreamsByNameSql, names.ToArray()));
        batch.BatchCommands.Add(Command(EventsByIdSql, ids.ToArray()));
        if (locking)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(HeadSql));
        }

        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (locking)
        {
            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        }

        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var row = StreamRow.Read(reader);
            state.Streams[row.Name] = row;
        }

        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            state.Stored[reader.GetGuid(0)] = new StreamRules.StoredId(reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3));
        }

        if (locking)
        {
            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            context.Log.Read(0, long.MinValue);
            if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                context.Log.Read(reader.GetInt64(0), reader.GetInt64(1));
            }
        }

        return state;
    }

    /// <summary>Writes the pending streams and events in one statement; <paramref name="single"/> names the append for a duplicate id.</summary>
    private async Task InsertAsync(PostgresWriteContext context, PendingEvents rows, PreparedAppend? single, CancellationToken cancellationToken)
    {
        await using var batch = context.Batch();
        var insert = new NpgsqlBatchCommand(InsertSql);
        rows.Bind(insert.Parameters);
        batch.BatchCommands.Add(insert);

        // In the append's transaction, so it is sent only if the append commits; and only if it wrote, since a batch
        // of several appends may commit the others when this one wrote nothing.
        if (_postgresOptions.NotifyAppends)
        {
            batch.BatchCommands.Add(NotifyCommand(context.LastAppended));
        }
        int inserted;
        try
        {
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            inserted = insert.RecordsAffected;
        }
        catch (PostgresException ex) when (single is not null && ex.SqlState == PostgresErrorCodes.UniqueViolation && ex.ConstraintName == "events_id_key")
        {
            var duplicate = single.Streams.SelectMany(s => s.Events).First().Id;
            throw new DuplicateEventIdException(duplicate, "was already appended, and this append is not a retry of the one that wrote it");
        }

        if (inserted != rows.Count)
        {
            // Planned under the append lock, an active stream's row cannot be missing; if one were, the statement wrote
            // nothing, and the append fails rather than lands without its stream.
            throw new InvalidOperationException($"The append wrote none of its {rows.Count} events: the row of a stream it was planned on is missing.");
        }
    }

    /// <summary>
    /// The streams and stored ids the appends of one round trip touch, as read under the append lock and then as the
    /// appends planned so far have changed them.
    /// </summary>
    private sealed class AppendState
    {
        public Dictionary<string, StreamRow> Streams { get; } = new(StringComparer.Ordinal);

        public Dictionary<Guid, StreamRules.StoredId> Stored { get; } = [];

        private StreamRules.StoredId? Lookup(Envelopes.MessageId id) => Stored.TryGetValue(id.Value, out var found) ? found : null;

        /// <summary>The original result when the append is a retry of one already written; null otherwise.</summary>
        public AppendResult? TryRetry(PreparedAppend append) =>
            Stored.Count > 0 && StreamRules.MayBeRetry(append, Lookup) ? StreamRules.CheckRetry(append, Lookup) : null;

        /// <summary>Checks the expected versions and returns the first version each stream part writes.</summary>
        public long[] CheckExpectations(PreparedAppend append)
        {
            var firstVersions = new long[append.Streams.Count];
            for (var s = 0; s < append.Streams.Count; s++)
            {
                var part = append.Streams[s];
                var row = Streams.GetValueOrDefault(part.Stream.Value);
                firstVersions[s] = StreamRules.NextVersion(part.Stream, part.ExpectedVersion, row?.State ?? StreamState.NotFound, row?.LastVersion);
            }

            return firstVersions;
        }

        /// <summary>
        /// Refuses an id reused by an append that is not a retry (after the expectations, as on every backend), then
        /// gives the events their positions after <paramref name="log"/>'s head and adds them to <paramref name="rows"/>.
        /// </summary>
        public AppendResult Plan(AppendHead log, PreparedAppend append, long[] firstVersions, PendingEvents rows, long now)
        {
            foreach (var part in append.Streams)
            {
                foreach (var e in part.Events)
                {
                    if (Stored.ContainsKey(e.Id.Value))
                    {
                        throw new DuplicateEventIdException(e.Id, "was already appended, and this append is not a retry of the one that wrote it");
                    }
                }
            }

            // Commit times never go backwards along the log.
            rows.Ticks = log.NextTicks(now);
            var head = log.Head;
            var position = head;
            var results = new StreamAppendResult[append.Streams.Count];
            for (var s = 0; s < append.Streams.Count; s++)
            {
                var part = append.Streams[s];
                var version = firstVersions[s];
                foreach (var e in part.Events)
                {
                    position++;
                    rows.Add(part.Stream, e, position, version);
                    Stored[e.Id.Value] = new StreamRules.StoredId(part.Stream.Value, version, position);
                    version++;
                }

                results[s] = new StreamAppendResult(part.Stream, firstVersions[s], version - 1);
                var row = Streams.GetValueOrDefault(part.Stream.Value);
                Streams[part.Stream.Value] = row is null
                    ? new StreamRow(part.Stream.Value, StreamState.Active, version - 1, new StreamMetadata())
                    : row with { State = StreamState.Active, LastVersion = version - 1 };
                rows.StreamWritten(part.Stream.Value, writesRow: row is not { State: StreamState.Active });
            }

            log.Appended(position);
            return new AppendResult(results, new GlobalPosition(head + 1), new GlobalPosition(position), WasDuplicate: false);
        }
    }

    /// <summary>The columns of events to insert with one statement, and the streams they write to.</summary>
    private sealed class PendingEvents
    {
        private readonly List<long> _positions = [];
        private readonly List<Guid> _ids = [];
        private readonly List<string> _streams = [];
        private readonly List<string> _categories = [];
        private readonly List<bool> _system = [];
        private readonly List<long> _versions = [];
        private readonly List<string> _types = [];
        private readonly List<string> _sources = [];
        private readonly List<string?> _contentTypes = [];
        private readonly List<string?> _dataSchemas = [];
        private readonly List<string?> _correlations = [];
        private readonly List<string?> _causations = [];
        private readonly List<string?> _traceParents = [];
        private readonly List<string?> _tags = [];
        private readonly List<byte[]?> _metadata = [];
        private readonly List<byte[]> _data = [];

        /// <summary>
        /// The streams written to, each once: true for one whose row the statement writes (a new stream, or one made active
        /// again), false for one that is active already, whose row is only looked up for its id.
        /// </summary>
        private readonly Dictionary<string, bool> _streamRows = new(StringComparer.Ordinal);

        public int Count => _positions.Count;

        /// <summary>The commit time of every event of the statement.</summary>
        public long Ticks { get; set; }

        public void Add(StreamName stream, PreparedEvent e, long position, long version)
        {
            _positions.Add(position);
            _ids.Add(e.Id.Value);
            // Consecutive events of one stream share its category string: one substring per run of them, not per event.
            _categories.Add(_streams.Count > 0 && ReferenceEquals(_streams[^1], stream.Value) ? _categories[^1] : stream.Category);
            _streams.Add(stream.Value);
            _system.Add(stream.IsSystem);
            _versions.Add(version);
            _types.Add(e.Type);
            _sources.Add(e.Source);
            // Null stands for JSON, the content type of most events (migration 7).
            _contentTypes.Add(e.ContentType == EventData.JsonContentType ? null : e.ContentType);
            _dataSchemas.Add(e.DataSchema);
            _correlations.Add(e.CorrelationId);
            _causations.Add(e.CausationId);
            _traceParents.Add(e.TraceParent);
            _tags.Add(e.Tags.Count == 0 ? null : System.Text.Json.JsonSerializer.Serialize(e.Tags as string[] ?? [.. e.Tags], CairnJsonContext.Default.StringArray));
            _metadata.Add(e.MetadataJson);
            // The event's own array when its data is the whole of one, as it usually is: no second copy of a batch.
            _data.Add(MemoryMarshal.TryGetArray(e.Data, out var whole) && whole.Offset == 0 && whole.Count == whole.Array!.Length ? whole.Array : e.Data.ToArray());
        }

        public void StreamWritten(string stream, bool writesRow) => _streamRows[stream] = writesRow || _streamRows.GetValueOrDefault(stream);

        public void Bind(NpgsqlParameterCollection p)
        {
            p.Add(new NpgsqlParameter { Value = _streamRows.Keys.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _streamRows.Values.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean });
            p.Add(new NpgsqlParameter { Value = Ticks, NpgsqlDbType = NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = _positions, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = _ids, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
            p.Add(new NpgsqlParameter { Value = _streams, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _categories, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _system, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean });
            p.Add(new NpgsqlParameter { Value = _versions, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
            p.Add(new NpgsqlParameter { Value = _types, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _sources, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _contentTypes, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _dataSchemas, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _correlations, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _causations, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _traceParents, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _tags, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            p.Add(new NpgsqlParameter { Value = _metadata, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
            p.Add(new NpgsqlParameter { Value = _data, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
        }
    }

    /// <summary>
    /// Writes the events, and the rows of the streams that need one (created Active, or made Active again), in one
    /// statement. <c>$1</c> names every stream written to and <c>$2</c> says which need their row written: their ids come
    /// from the upsert, those of streams already active from a lookup of their rows, which the statement does not write.
    /// The streams come in one list rather than two, so no execution has an empty list the planner would plan for anew.
    /// </summary>
    private string InsertSql => _insertSql ??= InsertSqlGuardedBy(null);

    /// <summary>
    /// <see cref="InsertSql"/> that writes nothing unless the head (the last position in the log, 0 when it is empty)
    /// is parameter <c>$20</c>, none of the ids in <c>$21</c> is in the log and none of the streams named in <c>$22</c>
    /// has a row. The guard gates both writes of the statement, the streams' rows and the events.
    /// </summary>
    private string GuardedInsertSql => _guardedInsertSql ??= InsertSqlGuardedBy(
        $"""
        ({HeadPositionSql}) = $20
          AND (cardinality($21::uuid[]) = 0 OR NOT EXISTS ({EventsByIdSql.Replace("$1", "$21", StringComparison.Ordinal)}))
          AND (cardinality($22::text[]) = 0 OR NOT EXISTS (SELECT 1 FROM unnest($22::text[]) AS n(name) CROSS JOIN LATERAL (SELECT 1 FROM {_s}.streams t WHERE t.name = n.name OFFSET 0) x))
        """);

    // Built once: every batch's write uses one of them.
    private string? _insertSql;
    private string? _guardedInsertSql;

    /// <summary>
    /// The insert. The rows of streams already active are looked up first (<c>k</c>); the statement writes anything only
    /// if every one of them was found and <paramref name="guard"/> (a condition, or null for none) holds, both decided
    /// once in <c>g</c>, which both writes consult. So a missing row writes nothing rather than part of an append, and
    /// the guard's subqueries, written once, do not make the planner plan each execution anew.
    /// </summary>
    private string InsertSqlGuardedBy(string? guard) => $"""
        WITH k AS (
            SELECT r.id, r.name FROM unnest($1::text[], $2::boolean[]) AS n(name, writes)
                CROSS JOIN LATERAL (SELECT t.id, t.name FROM {_s}.streams t WHERE t.name = n.name OFFSET 0) r
            WHERE NOT n.writes),
        g AS (
            SELECT {(guard is null ? "" : $"{guard} AND ")}(SELECT count(*) FROM k) = (SELECT count(*) FROM unnest($2::boolean[]) AS f(writes) WHERE NOT f.writes) AS ok),
        w AS (
            INSERT INTO {_s}.streams AS t (name, state)
            SELECT u.name, {(int)StreamState.Active} FROM unnest($1::text[], $2::boolean[]) AS u(name, writes)
            WHERE u.writes AND (SELECT ok FROM g)
            ON CONFLICT (name) DO UPDATE SET state = excluded.state
            RETURNING t.id, t.name),
        s AS (
            SELECT w.id, w.name FROM w
            UNION ALL
            SELECT k.id, k.name FROM k)
        INSERT INTO {_s}.events (position, id, stream_id, stream, category, is_system, version, type, time_ticks, source, content_type,
                                 data_schema, correlation_id, causation_id, trace_parent, tags, metadata, data)
        SELECT u.position, u.id, s.id, u.stream, u.category, u.is_system, u.version, u.type, $3, u.source, u.content_type,
               u.data_schema, u.correlation_id, u.causation_id, u.trace_parent,
               CASE WHEN u.tags IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)) END, u.metadata, u.data
        FROM unnest($4::bigint[], $5::uuid[], $6::text[], $7::text[], $8::boolean[], $9::bigint[], $10::text[], $11::text[], $12::text[],
                    $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::bytea[], $19::bytea[])
             AS u(position, id, stream, category, is_system, version, type, source, content_type,
                  data_schema, correlation_id, causation_id, trace_parent, tags, metadata, data)
        JOIN s ON s.name = u.stream
        WHERE (SELECT ok FROM g)
        """;

    private async Task CheckConditionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, AppendCondition condition, CancellationToken cancellationToken)
    {
        var query = new PostgresQuery($"SELECT position FROM {_s}.events e WHERE e.position > ");
        query.Sql.Append(query.Add(condition.After?.Value ?? 0L)).Append(" AND ");
        query.AppendQueryPredicate(condition.FailIfEventsMatch);
        query.Sql.Append(" ORDER BY e.position LIMIT 1");
        await using var command = query.ToCommand(connection, transaction);
        if (await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long position)
        {
            throw new AppendConditionFailedException(condition, new GlobalPosition(position));
        }
    }

    private async Task ChangeLifecycleAsync(StreamName stream, ExpectedVersion expected, StreamRules.LifecycleChange change, StreamMetadata? metadata, ExpectedVersion expectedMetadata, CancellationToken cancellationToken)
    {
        StreamRules.CheckLifecycleMetadata(change, metadata);
        ThrowIfDisposed();
        if (stream.IsSystem)
        {
            throw new InvalidStreamNameException(stream.Value, "the lifecycle of Cairn's own streams cannot be changed");
        }

        // Prepared here, on the caller's flow, so the record carries the caller's correlation and trace context; the
        // state it records is filled in under the lock.
        var template = PreparedAppend.Prepare(
            new AppendRequest(stream.MetadataStream, ExpectedVersion.Any, [StreamRules.LifecycleRecord(stream, StreamState.NotFound, new StreamMetadata())]),
            _options,
            allowSystemStreams: true);
        cancellationToken.ThrowIfCancellationRequested();
        await WriteAsync(async context =>
        {
            await context.LockAppendsAsync(cancellationToken).ConfigureAwait(false);
            var connection = context.Connection;
            var transaction = context.Transaction;
            var metadataVersion = expectedMetadata == ExpectedVersion.Any
                ? null
                : (await ReadStreamRowAsync(connection, transaction, stream.MetadataStream, cancellationToken).ConfigureAwait(false))?.LastVersion;
            StreamRules.CheckMetadataVersion(stream, expectedMetadata, () => metadataVersion);
            var row = await ReadStreamRowAsync(connection, transaction, stream, cancellationToken).ConfigureAwait(false);
            if (StreamRules.ApplyLifecycle(stream, expected, change, row?.State ?? StreamState.NotFound, row?.LastVersion, row?.Metadata ?? new StreamMetadata(), metadata) is not { } next)
            {
                return 0L;
            }

            var part = template.Streams[0];
            var filled = part.Events[0] with { Data = StreamRules.LifecycleRecord(stream, next.State, next.Metadata).Data };
            var result = await context.AppendAsync(template with { Streams = [part with { Events = [filled] }] }, cancellationToken).ConfigureAwait(false);
            await using var update = new NpgsqlCommand(
                $"""
                INSERT INTO {_s}.streams AS t (name, state, max_count, max_age_ticks, truncate_before) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (name) DO UPDATE SET state = excluded.state, max_count = excluded.max_count,
                    max_age_ticks = excluded.max_age_ticks, truncate_before = excluded.truncate_before
                """,
                connection,
                transaction);
            update.Parameters.Add(new NpgsqlParameter { Value = stream.Value });
            update.Parameters.Add(new NpgsqlParameter { Value = (short)next.State });
            update.Parameters.Add(new NpgsqlParameter { Value = (object?)next.Metadata.MaxCount ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            update.Parameters.Add(new NpgsqlParameter { Value = (object?)next.Metadata.MaxAge?.Ticks ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            update.Parameters.Add(new NpgsqlParameter { Value = (object?)next.Metadata.TruncateBefore ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return result.LastPosition.Value;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The notification of an append on <see cref="AppendChannel"/>, its payload the schema and the head the append
    /// leaves (<see cref="NotificationPrefix"/>): a listener announces it as it would its own commit, and its own
    /// appends' notifications change nothing. Sent only when the log's head is that position, that is when the events
    /// went in: under the append lock, or after the guard of an optimistic write.
    /// </summary>
    private NpgsqlBatchCommand NotifyCommand(long head) => new($"SELECT pg_notify($1, $3 || $2::text) WHERE ({HeadPositionSql}) = $2")
    {
        Parameters =
        {
            new NpgsqlParameter { Value = AppendChannel, NpgsqlDbType = NpgsqlDbType.Text },
            new NpgsqlParameter { Value = head, NpgsqlDbType = NpgsqlDbType.Bigint },
            new NpgsqlParameter { Value = NotificationPrefix, NpgsqlDbType = NpgsqlDbType.Text },
        },
    };

    private static NpgsqlBatchCommand Command(string sql, object value) => new(sql) { Parameters = { new NpgsqlParameter { Value = value } } };
}
