using System.Threading.Channels;
using Cairn.EventStore;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// The process's one writer to PostgreSQL: write work from every caller queues here, and the writer runs what has
/// queued up, up to <see cref="MaxBatch"/> pieces, in one transaction on its own connection: one append lock, one
/// commit and one WAL flush for all of them (group commit). Plain appends (no condition, and no inline projection to
/// apply after each) are checked together and written by one statement: two round trips for all of them. A batch of
/// nothing but plain appends first goes the optimistic way, which holds the append lock only for the write's round trip
/// and its commit (<see cref="PostgresEventStore.TryAppendOptimisticallyAsync"/>); while the writer's own commits follow
/// one another with no other writer's in between, it plans on what they left (<see cref="KnownLog"/>) and writes in
/// one round trip. Every other
/// piece runs in a savepoint of its own when others share its transaction, so a piece that fails is undone alone and
/// the rest commit. If a statement without a savepoint fails, which aborts PostgreSQL's transaction, every piece of the
/// batch is run again in a transaction of its own.
/// </summary>
internal sealed class PostgresWriter : IAsyncDisposable
{
    /// <summary>
    /// The most pieces in one transaction. Each savepoint that writes is a subtransaction, and beyond 64 of them in
    /// one transaction PostgreSQL's snapshots overflow to disk for every reader; 32 keeps well below.
    /// </summary>
    public const int MaxBatch = 32;

    /// <summary>Runs of a piece that PostgreSQL may roll back to break a deadlock before its caller gets the error.</summary>
    private const int MaxDeadlockRuns = 5;

    /// <summary>
    /// How many batches go the locked way after an optimistic one found that another writer had appended: while
    /// processes contend, the optimistic way would mostly find the head moved and cost its two round trips for nothing.
    /// </summary>
    private const int LockedBatchesAfterHeadMoved = 16;

    private static readonly AsyncLocal<PostgresWriter?> Running = new();

    private readonly PostgresEventStore _store;
    private readonly NpgsqlDataSource _dataSource;
    private readonly ILogger _logger;
    private readonly Channel<Work> _queue = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });

    private int _queued;

    /// <summary>Pieces queued and not yet taken into a batch (for tests that line up a batch).</summary>
    internal int Queued => Volatile.Read(ref _queued);

    /// <summary>A piece taken from the queue that did not fit the last batch: the first of the next.</summary>
    private Work? _carried;

    private readonly Task _loop;
    private NpgsqlConnection? _connection;
    private int _lockedBatches;

    /// <summary>
    /// Set by the writer's connection when PostgreSQL reports that a commit stopped waiting for the synchronous standby
    /// (<see cref="IsCancelledReplicationWait"/>); cleared before each batch.
    /// </summary>
    private volatile bool _replicationWaitCancelled;

    /// <summary>
    /// Whether the server's commits wait for a synchronous standby, as last read (<see cref="ReplicationStateSql"/>, or
    /// told by the warning of a cancelled wait), and when it is due to be read again (<see cref="Environment.TickCount64"/>;
    /// at once at first): a batch of work that may have written nothing reads it again once due,
    /// <see cref="ReplicationSettingsAge"/> after the last read, and with every such batch while it is on.
    /// </summary>
    private bool _synchronousStandby;
    private long _replicationSettingsDueAt;

    /// <summary>Whether the lack of the right to write a logical-decoding message was logged already.</summary>
    private bool _emitRefusalLogged;

    private static readonly TimeSpan ReplicationSettingsAge = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Whether commits wait for a synchronous standby, whether the transaction has written nothing (it has no transaction
    /// id), and whether the role may write a logical-decoding message (<see cref="EmitMessageSql"/>). Asked apart from the
    /// message itself, since PostgreSQL checks the right to call a function as a statement starts, whether or not it runs;
    /// the function is looked up by name, since PostgreSQL 17 gave it a fourth argument.
    /// </summary>
    private const string ReplicationStateSql = """
        SELECT current_setting('synchronous_standby_names') <> ''
                   AND current_setting('synchronous_commit') IN ('on', 'remote_write', 'remote_apply'),
               txid_current_if_assigned() IS NULL,
               COALESCE((SELECT bool_or(has_function_privilege(p.oid, 'EXECUTE')) FROM pg_catalog.pg_proc p
                         WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace
                           AND p.proargtypes[2] = 'pg_catalog.text'::regtype), false)
        """;

    /// <summary>
    /// A transactional logical-decoding message (prefix <c>cairn</c>, empty). PostgreSQL waits for the standby only at
    /// the commit of a transaction that wrote to the WAL with a transaction id, so a transaction that wrote nothing would
    /// be answered at once, though the write it repeats (a retry) may never have reached the standby; with the message,
    /// its commit comes after that write's and waits until the standby has everything up to it.
    /// </summary>
    private const string EmitMessageSql = "SELECT pg_catalog.pg_logical_emit_message(true, 'cairn', '')";

    /// <summary>What this writer's last optimistic commit left of the log; dropped by anything else it writes.</summary>
    private KnownLog? _known;

    public PostgresWriter(PostgresEventStore store, NpgsqlDataSource dataSource, ILogger logger)
    {
        _store = store;
        _dataSource = dataSource;
        _logger = logger;
        _loop = BackgroundWork.Start(RunAsync);
    }

    /// <summary>
    /// Queues <paramref name="work"/> and completes when its transaction has committed (or with the work's own
    /// exception, having written nothing).
    /// </summary>
    /// <param name="work">The work.</param>
    /// <param name="cancellationToken">Cancels the work while it waits to run.</param>
    /// <param name="confirmsReplication">
    /// Whether the work, when it writes nothing, is still answered only once a synchronous standby has everything up to
    /// its commit: true for work that may repeat a write (a retry); false for work that only writes when it finds
    /// something to do, such as a receive's look for messages.
    /// </param>
    public Task<T> ExecuteAsync<T>(Func<PostgresWriteContext, Task<T>> work, CancellationToken cancellationToken, bool confirmsReplication = true)
    {
        var item = new Work<T>(work, cancellationToken, confirmsReplication);
        try
        {
            Enqueue(item, cancellationToken);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            return Refusal.Of<T>(ex);
        }

        return item.Task;
    }

    /// <summary>Queues an append and completes when it has committed, or with the check that refused it.</summary>
    public Task<AppendResult> AppendAsync(PreparedAppend append, CancellationToken cancellationToken)
    {
        var item = new AppendWork(append, cancellationToken);
        Enqueue(item, cancellationToken);
        return item.Task;
    }

    private void Enqueue(Work item, CancellationToken cancellationToken)
    {
        if (Running.Value == this)
        {
            throw new InvalidOperationException("Write work of the PostgreSQL store cannot queue more write work: write through the PostgresWriteContext it was given.");
        }

        cancellationToken.ThrowIfCancellationRequested();

        // Cancelled while it waits in the queue (behind a batch that waits for another process's append lock, say), the
        // caller has its answer at once; the writer passes over it.
        item.CancelWhileQueued();
        Interlocked.Increment(ref _queued);
        if (!_queue.Writer.TryWrite(item))
        {
            Interlocked.Decrement(ref _queued);
            item.TryTake();
            throw new ObjectDisposedException(nameof(PostgresEventStore));
        }
    }

    /// <summary>The next piece for a batch: the carried one, else the next queued one, or null when there is none.</summary>
    private Work? NextPiece()
    {
        if (_carried is { } carried)
        {
            _carried = null;
            return carried;
        }

        while (_queue.Reader.TryRead(out var queued))
        {
            Interlocked.Decrement(ref _queued);
            if (queued.TryTake())
            {
                return queued;
            }
        }

        return null;
    }

    private async Task RunAsync()
    {
        var batch = new List<Work>(MaxBatch);
        var maxBytes = _store.PostgresOptions.MaxAppendBytes;
        while (_carried is not null || await _queue.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            // The callers the last commit answered are queued to run on the thread pool, and most append again at
            // once. Stepping behind them lets their next appends join this batch rather than wait a whole commit for
            // the next: with 16 callers, batches of about 16 instead of two alternating halves of 8. Task.Yield goes to
            // the back of the pool's global queue, behind them; a forced-yielding await would go to this thread's own
            // queue, which runs newest first, ahead of them. The loop runs on the pool with no context to capture
            // (started by Task.Run, every await ConfigureAwait(false)).
            await Task.Yield();
            batch.Clear();
            var bytes = 0L;
            while (batch.Count < MaxBatch && NextPiece() is { } item)
            {
                if (item.CancellationToken.IsCancellationRequested)
                {
                    item.Fail(new OperationCanceledException(item.CancellationToken));
                    continue;
                }

                // Appends' data travels in one protocol message per statement: a batch stays within what one append
                // may carry, and what would not fit waits for the next batch.
                var size = item is AppendWork append ? append.Append.Bytes : 0;
                if (batch.Count > 0 && bytes + size > maxBytes)
                {
                    _carried = item;
                    break;
                }

                bytes += size;
                batch.Add(item);
            }

            if (batch.Count == 0)
            {
                continue;
            }

            Running.Value = this;
            try
            {
                if (await TryAppendOptimisticallyAsync(batch).ConfigureAwait(false))
                {
                    continue;
                }

                await RunBatchAsync(batch).ConfigureAwait(false);

                // Pieces left without an answer: a statement without a savepoint broke the shared transaction, or
                // PostgreSQL broke a deadlock by rolling a piece back. Each runs again, alone, until answered. (One
                // refused by a check keeps its answer: it must never land after it.)
                foreach (var item in batch)
                {
                    while (!item.Settled)
                    {
                        await RunBatchAsync([item]).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception ex)
            {
                // Never expected: the runs above settle every piece. Settle any left so no caller waits forever.
                _logger.LogError(ex, "The PostgreSQL writer failed a batch unexpectedly.");
                foreach (var item in batch)
                {
                    item.Fail(ex);
                }
            }
            finally
            {
                Running.Value = null;
                _lastBatchEndedAt = Environment.TickCount64;
            }
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes a batch made only of plain appends the optimistic way (<see cref="PostgresEventStore.TryAppendOptimisticallyAsync"/>):
    /// one to three round trips, the append lock held only for each write's. Returns false, having written and settled
    /// nothing, when the batch is not of that kind or the optimistic write found the log changed; after the head moved
    /// under it (another process appends), the next <see cref="LockedBatchesAfterHeadMoved"/> batches go the locked way.
    /// </summary>
    private async Task<bool> TryAppendOptimisticallyAsync(List<Work> batch)
    {
        if (_store.HasAfterAppend || batch.Exists(w => w is not AppendWork { Append.Condition: null }))
        {
            return false;
        }

        if (_lockedBatches > 0)
        {
            _lockedBatches--;
            return false;
        }

        var appends = batch.ConvertAll(w => ((AppendWork)w).Append);
        var known = _known;
        _known = null;
        _replicationWaitCancelled = false;
        PostgresEventStore.OptimisticAppend written;
        NpgsqlConnection? connection = null;
        var reused = false;
        try
        {
            connection = await OpenAsync().ConfigureAwait(false);
            reused = TakeReused();

            // The batch may be called off while it waits (for another process's append lock) once every caller of it
            // is: its statements serve them all, so none can call it off for the others.
            using var allCancelled = new AllCancelled(batch);
            written = await _store.TryAppendOptimisticallyAsync(connection, appends, known, allCancelled.Token).ConfigureAwait(false);
            if (written.Retry)
            {
                written = await _store.TryAppendOptimisticallyAsync(connection, appends, known: null, allCancelled.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (connection is { State: System.Data.ConnectionState.Open } && batch.TrueForAll(w => w.CancellationToken.IsCancellationRequested))
        {
            // PostgreSQL cancelled the statement, so the batch's implicit transaction rolled back: nothing was written.
            foreach (var item in batch)
            {
                item.Fail(new OperationCanceledException(item.CancellationToken));
            }

            return true;
        }
        catch (Exception ex)
        {
            if (connection is null)
            {
                // Could not connect: the locked way tries again and answers the callers.
                await DropConnectionAsync().ConfigureAwait(false);
                return false;
            }

            if (TimedOut(connection, ex))
            {
                // Rolled back by the server, on a connection still good: the locked way would wait as long again.
                FailAll(batch, ex);
                return true;
            }

            if (IsBroken(connection, ex))
            {
                if (reused)
                {
                    // Whether the write landed is unknown, but an append is recognised when it runs again (by its
                    // events' ids, answered with the first one's result), so the locked way runs it on a new connection.
                    await RunAgainOnNewConnectionAsync(ex).ConfigureAwait(false);
                    return false;
                }

                // Whether the write under way landed is unknown, as for any commit that loses its connection.
                await DropConnectionAsync().ConfigureAwait(false);
                FailAll(batch, ex);
                return true;
            }

            // Not expected (the store turns the conflicts it knows into outcomes): said once, and the locked way is
            // taken for a while rather than paying for a failing guess on every batch.
            _logger.LogWarning(ex, "An optimistic PostgreSQL append failed; this writer appends the locked way for its next {Batches} batches.", LockedBatchesAfterHeadMoved);
            _lockedBatches = LockedBatchesAfterHeadMoved;
            return false;
        }

        if (connection.State != System.Data.ConnectionState.Open)
        {
            await DropConnectionAsync().ConfigureAwait(false);
        }

        if (written.Outcomes is not { } outcomes)
        {
            if (written.Moved)
            {
                _lockedBatches = LockedBatchesAfterHeadMoved;
            }

            return false;
        }

        _known = written.Known;
        var done = new List<Work>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            var item = (AppendWork)batch[i];
            if (outcomes[i].Error is { } error)
            {
                item.Fail(error);
            }
            else
            {
                item.Succeeded(outcomes[i].Result!);
                done.Add(item);
            }
        }

        // No piece here is a recognised retry of an earlier write: the optimistic way does not look ids up, and an id
        // already in the log sends the batch the locked way. Only a repeat within the batch is answered as one, and the
        // batch wrote, so its commit waited for any synchronous standby.
        AnswerCommitted(done);
        return true;
    }

    /// <summary>
    /// Whether a batch's transaction must confirm replication before its commit (<see cref="ConfirmReplicationAsync"/>):
    /// when it holds a recognised append retry, or other work that may have written nothing (a lifecycle change that
    /// changed nothing, a messaging commit whose appends were all retries) while the server is known, or not recently
    /// known not, to wait for a synchronous standby. Never when the transaction wrote (<see cref="PostgresWriteContext.Wrote"/>):
    /// its commit waits by itself.
    /// </summary>
    private bool MustConfirmReplication(PostgresWriteContext context, List<Work> done) =>
        !context.Wrote
        && (done.Exists(w => w is AppendWork && w.MayHaveWrittenNothing)
            || (done.Exists(w => w is not AppendWork && w.MayHaveWrittenNothing)
                && (_synchronousStandby || Environment.TickCount64 >= _replicationSettingsDueAt)));

    /// <summary>
    /// Reads whether commits wait for a synchronous standby and, when they do and the transaction has written nothing,
    /// writes <see cref="EmitMessageSql"/> so that its commit waits too. A role without the right to write the message
    /// cannot: that is logged once, and such a commit is answered without the wait, as PostgreSQL alone would.
    /// </summary>
    private async Task ConfirmReplicationAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        bool wroteNothing, mayEmit;
        await using (var state = new NpgsqlCommand(ReplicationStateSql, connection, transaction))
        await using (var reader = await state.ExecuteReaderAsync(CancellationToken.None).ConfigureAwait(false))
        {
            await reader.ReadAsync(CancellationToken.None).ConfigureAwait(false);
            _synchronousStandby = reader.GetBoolean(0);
            wroteNothing = reader.GetBoolean(1);
            mayEmit = reader.GetBoolean(2);
        }

        _replicationSettingsDueAt = Environment.TickCount64 + (long)ReplicationSettingsAge.TotalMilliseconds;
        if (!_synchronousStandby || !wroteNothing)
        {
            return;
        }

        if (!mayEmit)
        {
            if (!_emitRefusalLogged)
            {
                _emitRefusalLogged = true;
                _logger.LogWarning("The PostgreSQL role may not execute pg_logical_emit_message, so a write that repeats an earlier one and writes nothing (a retried append, the same metadata set again) is answered without waiting for the synchronous standby to have the earlier one. Grant EXECUTE on pg_catalog.pg_logical_emit_message(boolean, text, text) to the role.");
            }

            return;
        }

        await using var emit = new NpgsqlCommand(EmitMessageSql, connection, transaction);
        await emit.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>
    /// Answers the pieces of a batch whose transaction committed, or, when PostgreSQL stopped waiting for the
    /// synchronous standby, fails them with <see cref="ReplicationNotConfirmedException"/>.
    /// </summary>
    private void AnswerCommitted(List<Work> done)
    {
        if (_replicationWaitCancelled)
        {
            FailAll(done, new ReplicationNotConfirmedException());
            return;
        }

        foreach (var item in done)
        {
            item.Complete();
        }
    }

    /// <summary>
    /// Whether a notice is PostgreSQL's warning that a commit stopped waiting for the synchronous standby (its wait was
    /// cancelled, or the session is being terminated): told by the server function that raises it, which, unlike the
    /// message, does not depend on the server's language.
    /// </summary>
    internal static bool IsCancelledReplicationWait(PostgresNotice notice) =>
        notice.InvariantSeverity == "WARNING" && notice.Routine == "SyncRepWaitForLSN";

    /// <summary>
    /// Runs a batch in one transaction and settles every piece, except when a piece without a savepoint broke the
    /// transaction (then nothing is settled, nothing committed), and a piece PostgreSQL rolled back to break a deadlock
    /// (<see cref="RunsAgain"/>): those are left for the caller to run alone.
    /// </summary>
    private async Task RunBatchAsync(IReadOnlyList<Work> batch)
    {
        _known = null;
        _replicationWaitCancelled = false;
        NpgsqlConnection connection;
        NpgsqlTransaction transaction;
        var reused = false;
        try
        {
            connection = await OpenAsync().ConfigureAwait(false);
            reused = TakeReused();
            transaction = await connection.BeginTransactionAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (reused)
            {
                // Nothing of the batch was sent: each of its pieces runs again, alone, on a new connection.
                await RunAgainOnNewConnectionAsync(ex).ConfigureAwait(false);
                return;
            }

            await DropConnectionAsync().ConfigureAwait(false);
            FailAll(batch, ex);
            return;
        }

        await using (transaction.ConfigureAwait(false))
        {
            var context = new PostgresWriteContext(_store, connection, transaction);
            var shared = batch.Count > 1;
            var done = new List<Work>(batch.Count);
            var plain = shared && !_store.HasAfterAppend
                ? batch.OfType<AppendWork>().Where(a => a.Append.Condition is null).ToList()
                : [];
            if (plain.Count > 1)
            {
                try
                {
                    // Called off only once every one of its callers is; then each runs again alone, and finds itself cancelled.
                    using var allCancelled = new AllCancelled(plain);
                    var outcomes = await _store.AppendManyInContextAsync(context, plain.ConvertAll(a => a.Append), allCancelled.Token).ConfigureAwait(false);
                    for (var i = 0; i < plain.Count; i++)
                    {
                        if (outcomes[i].Error is { } error)
                        {
                            plain[i].Fail(error);
                        }
                        else
                        {
                            plain[i].Succeeded(outcomes[i].Result!);
                            done.Add(plain[i]);
                        }
                    }
                }
                catch (Exception ex)
                {
                    if (TimedOut(connection, ex))
                    {
                        // Their shared statement waited out its time-out (the append lock held elsewhere): each would
                        // wait as long again alone. Nothing was written; the connection stays, and the batch's other
                        // pieces, unsettled, run alone.
                        FailAll(plain, ex);
                        return;
                    }

                    if (IsBroken(connection, ex))
                    {
                        if (reused)
                        {
                            // Broken before the commit: nothing was written, and each piece runs again, alone.
                            await RunAgainOnNewConnectionAsync(ex).ConfigureAwait(false);
                            return;
                        }

                        await DropConnectionAsync().ConfigureAwait(false);
                        FailAll(batch, ex);
                        return;
                    }

                    return;
                }

                batch = [.. batch.Except(plain)];
            }
            else
            {
                plain = [];
            }

            for (var i = 0; i < batch.Count; i++)
            {
                var item = batch[i];
                var mark = context.Mark();
                var savepoint = shared && (item is not AppendWork || _store.HasAfterAppend);
                try
                {
                    if (savepoint)
                    {
                        await ExecuteAsync(connection, transaction, "SAVEPOINT cairn_work").ConfigureAwait(false);
                    }

                    await item.RunAsync(context).ConfigureAwait(false);
                    done.Add(item);
                }
                catch (Exception ex)
                {
                    if (TimedOut(connection, ex))
                    {
                        // The server cancelled the statement and the transaction is aborted: nothing is written, and
                        // the pieces after it would wait as long (the append lock held elsewhere). The connection stays.
                        FailAll(done, ex);
                        FailAll(batch.Skip(i), ex);
                        return;
                    }

                    if (IsBroken(connection, ex))
                    {
                        if (reused)
                        {
                            // Broken before the commit: nothing was written, and each piece not yet answered runs
                            // again, alone (one a check refused keeps its answer).
                            await RunAgainOnNewConnectionAsync(ex).ConfigureAwait(false);
                            return;
                        }

                        await DropConnectionAsync().ConfigureAwait(false);
                        FailAll(done, ex);
                        FailAll(batch.Skip(i), ex);
                        return;
                    }

                    if (!shared)
                    {
                        if (!RunsAgain(item, ex))
                        {
                            item.Fail(ex);
                        }

                        return; // the transaction rolls back as it is disposed
                    }

                    if (savepoint)
                    {
                        try
                        {
                            await ExecuteAsync(connection, transaction, "ROLLBACK TO SAVEPOINT cairn_work").ConfigureAwait(false);
                        }
                        catch (Exception rollbackFailure)
                        {
                            await DropConnectionAsync().ConfigureAwait(false);
                            FailAll(done, rollbackFailure);
                            item.Fail(ex);
                            FailAll(batch.Skip(i + 1), rollbackFailure);
                            return;
                        }

                        context.Restore(mark);
                        if (!RunsAgain(item, ex))
                        {
                            item.Fail(ex);
                        }
                    }
                    else if (await IsIntactAsync(connection, transaction).ConfigureAwait(false))
                    {
                        // Refused by a check before it wrote anything: the transaction goes on without it.
                        context.Restore(mark);
                        item.Fail(ex);
                    }
                    else
                    {
                        // A statement failed, so PostgreSQL aborted the whole transaction.
                        return;
                    }
                }
            }

            if (done.Count == 0)
            {
                return;
            }

            try
            {
                if (MustConfirmReplication(context, done))
                {
                    await ConfirmReplicationAsync(connection, transaction).ConfigureAwait(false);
                }

                await transaction.CommitAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                await DropConnectionAsync().ConfigureAwait(false);
                FailAll(done, ex);
                return;
            }

            // Committed: whatever fails from here on (a metrics listener that throws, say) must not report the pieces
            // failed, or a caller would retry what is already durable.
            try
            {
                _store.Committed(context);
            }
            catch (Exception ex)
            {
                _logger.LogError(ex, "The PostgreSQL writer's notifications after a commit failed; the work is committed.");
            }

            AnswerCommitted(done);
        }
    }

    private async Task<NpgsqlConnection> OpenAsync()
    {
        if (_connection is { State: System.Data.ConnectionState.Open } open)
        {
            if (Environment.TickCount64 - _lastBatchEndedAt < IdleBeforeCheckMilliseconds || await IsAliveAsync(open).ConfigureAwait(false))
            {
                return open;
            }

            // The server ended the session while it sat idle (idle_session_timeout, a restart, a proxy): nothing of the
            // batch was sent, so it goes on a new connection rather than failing its callers with an unknown outcome.
            _logger.LogInformation("The PostgreSQL writer's idle connection was closed by the server; it opens a new one.");
        }

        await DropConnectionAsync().ConfigureAwait(false);
        var connection = await _dataSource.OpenConnectionAsync().ConfigureAwait(false);
        _connectionFresh = true;

        // Every check here relies on each statement seeing what committed before it started, whatever the server's or
        // the role's default: the session's transactions are READ COMMITTED.
        try
        {
            // And the warning that a commit's wait for a synchronous standby was cancelled reaches it, whatever the
            // server's, the role's or the connection string's client_min_messages.
            await using var isolation = new NpgsqlCommand("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED; SET client_min_messages = warning", connection);
            await isolation.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        connection.Notice += (_, e) =>
        {
            if (IsCancelledReplicationWait(e.Notice))
            {
                // Which also says the server's commits wait for a synchronous standby, whatever was last read.
                _replicationWaitCancelled = true;
                _synchronousStandby = true;
            }
        };
        _connection = connection;
        return _connection;
    }

    /// <summary>
    /// How long the writer's connection may sit idle before a batch first checks it is still open on the server's side.
    /// The writer keeps its one connection out of the pool, so the pool's pruning of idle connections never reaches it,
    /// and a server or proxy that ends idle sessions leaves it closed without the client knowing.
    /// </summary>
    private const long IdleBeforeCheckMilliseconds = 1000;

    /// <summary>When the last batch ended (<see cref="Environment.TickCount64"/>).</summary>
    private long _lastBatchEndedAt = Environment.TickCount64;

    /// <summary>Whether no batch has used the connection since it was opened; see <see cref="TakeReused"/>.</summary>
    private bool _connectionFresh;

    /// <summary>
    /// Whether the connection a batch is about to use served an earlier one. The server may have ended that session
    /// since (a restart, <c>pg_terminate_backend</c>, a proxy), within the idle second no check covers: a batch that
    /// finds it broken before anything of it was committed runs again on a new connection, where a fresh connection's
    /// break fails it.
    /// </summary>
    private bool TakeReused()
    {
        var reused = !_connectionFresh;
        _connectionFresh = false;
        return reused;
    }

    /// <summary>Drops a connection found broken under a batch that committed nothing, so the batch runs again on a new one.</summary>
    private async Task RunAgainOnNewConnectionAsync(Exception broken)
    {
        _logger.LogInformation(broken, "The PostgreSQL writer's connection was closed by the server before a batch committed anything; the batch runs again on a new connection.");
        await DropConnectionAsync().ConfigureAwait(false);
    }

    /// <summary>Whether the connection still answers: one round trip, after which it is known alive or known broken.</summary>
    private static async Task<bool> IsAliveAsync(NpgsqlConnection connection)
    {
        try
        {
            await using var ping = new NpgsqlCommand("SELECT 1", connection);
            await ping.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// Closes the writer's connection after a failure, and clears the pool's idle connections: when the server went
    /// away they are all broken, and each would otherwise fail one more caller before it is found out.
    /// </summary>
    private async Task DropConnectionAsync()
    {
        _dataSource.Clear();
        if (_connection is { } connection)
        {
            _connection = null;
            try
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                _logger.LogDebug(ex, "Closing a broken PostgreSQL writer connection failed.");
            }
        }
    }

    /// <summary>
    /// Whether a statement ran out of its <c>Command Timeout</c> on a connection still open: Npgsql had the server cancel
    /// it, so its transaction is aborted and nothing of it is written, but the connection is good. (Npgsql closes one
    /// whose cancellation failed; that one is broken.)
    /// </summary>
    private static bool TimedOut(NpgsqlConnection connection, Exception ex) =>
        connection.State == System.Data.ConnectionState.Open && ex is NpgsqlException { InnerException: TimeoutException } and not PostgresException;

    /// <summary>Whether the connection itself failed (as opposed to a statement or a check), so nothing more can run on it.</summary>
    private static bool IsBroken(NpgsqlConnection connection, Exception ex) =>
        connection.State != System.Data.ConnectionState.Open || (ex is NpgsqlException && ex is not PostgresException);

    /// <summary>Whether the transaction can still run statements (a failed statement aborts it until it ends).</summary>
    private static async Task<bool> IsIntactAsync(NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        try
        {
            await ExecuteAsync(connection, transaction, "SELECT 1").ConfigureAwait(false);
            return true;
        }
        catch (PostgresException)
        {
            return false;
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>
    /// Whether a piece that failed with <paramref name="ex"/> runs again instead of being answered: when PostgreSQL
    /// rolled it back to break a deadlock (or a serialization failure), at most <see cref="MaxDeadlockRuns"/> times.
    /// Nothing of it was written. Group commit puts unrelated work in one transaction, so two processes' batches can
    /// take the same locks in opposite orders (a projection batch's build row, then the append lock, beside an append
    /// whose inline projection locks the same row after it); alone, a piece takes its locks in the one order every
    /// piece keeps.
    /// </summary>
    private static bool RunsAgain(Work item, Exception ex)
    {
        // Also when wrapped: a projection handler's own SQL fails its event with the PostgresException inside.
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is PostgresException { SqlState: PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure } && item.Deadlocks < MaxDeadlockRuns)
            {
                item.Deadlocks++;
                return true;
            }
        }

        return false;
    }

    private static void FailAll(IEnumerable<Work> items, Exception ex)
    {
        foreach (var item in items)
        {
            item.Fail(ex);
        }
    }

    /// <summary>Stops taking work, finishes what is queued, and closes the writer's connection.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _loop.ConfigureAwait(false);
    }

    /// <summary>
    /// A token cancelled once the tokens of every piece of a batch are: a statement that serves them all may then be
    /// called off. None when a piece cannot be cancelled.
    /// </summary>
    private sealed class AllCancelled : IDisposable
    {
        private readonly CancellationTokenSource? _source;
        private readonly CancellationTokenRegistration[] _registrations = [];
        private int _left;

        public AllCancelled(IReadOnlyList<Work> batch)
        {
            if (batch.Count == 0 || batch.Any(w => !w.CancellationToken.CanBeCanceled))
            {
                return;
            }

            _source = new CancellationTokenSource();
            _left = batch.Count;
            _registrations = new CancellationTokenRegistration[batch.Count];
            for (var i = 0; i < batch.Count; i++)
            {
                _registrations[i] = batch[i].CancellationToken.UnsafeRegister(
                    static state =>
                    {
                        var all = (AllCancelled)state!;
                        if (Interlocked.Decrement(ref all._left) == 0)
                        {
                            // Not on the cancelling caller's thread: Npgsql sends its cancel request from the callback.
                            _ = all._source!.CancelAsync();
                        }
                    },
                    this);
            }
        }

        public CancellationToken Token => _source?.Token ?? CancellationToken.None;

        public void Dispose()
        {
            foreach (var registration in _registrations)
            {
                registration.Dispose();
            }
        }
    }

    /// <summary>A piece of write work waiting for, or in, a batch.</summary>
    private abstract class Work(CancellationToken cancellationToken)
    {
        private const int Queued = 0, Taken = 1, Cancelled = 2;
        private int _state;
        private CancellationTokenRegistration _whileQueued;

        public CancellationToken CancellationToken { get; } = cancellationToken;

        /// <summary>Fails the piece with its cancellation if its token is cancelled before the writer takes it.</summary>
        public void CancelWhileQueued()
        {
            if (CancellationToken.CanBeCanceled)
            {
                _whileQueued = CancellationToken.UnsafeRegister(
                    static state =>
                    {
                        var work = (Work)state!;
                        if (Interlocked.CompareExchange(ref work._state, Cancelled, Queued) == Queued)
                        {
                            work.Fail(new OperationCanceledException(work.CancellationToken));
                        }
                    },
                    this);
            }
        }

        /// <summary>Takes the piece for a batch; false when it was cancelled in the queue (and so answered).</summary>
        public bool TryTake()
        {
            if (Interlocked.CompareExchange(ref _state, Taken, Queued) != Queued)
            {
                return false;
            }

            _whileQueued.Dispose();
            return true;
        }

        /// <summary>Whether the caller has its answer (a failure: successes are settled only after the commit).</summary>
        public abstract bool Settled { get; }

        /// <summary>How many times PostgreSQL rolled the piece back to break a deadlock (see <see cref="RunsAgain"/>).</summary>
        public int Deadlocks { get; set; }

        public abstract Task RunAsync(PostgresWriteContext context);

        public abstract void Complete();

        public abstract void Fail(Exception exception);

        /// <summary>
        /// Whether the piece, having succeeded, may have written nothing that a synchronous standby must have before it
        /// is answered: an append that was a recognised retry, and other work that confirms replication, which cannot
        /// say.
        /// </summary>
        public abstract bool MayHaveWrittenNothing { get; }
    }

    private class Work<T>(Func<PostgresWriteContext, Task<T>> work, CancellationToken cancellationToken, bool confirmsReplication = true) : Work(cancellationToken)
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T _result = default!;

        public override bool MayHaveWrittenNothing => confirmsReplication;

        public Task<T> Task => _completion.Task;

        public override bool Settled => _completion.Task.IsCompleted;

        public override async Task RunAsync(PostgresWriteContext context) => _result = await work(context).ConfigureAwait(false);

        /// <summary>The result recorded so far.</summary>
        protected T Result => _result;

        /// <summary>Records the result of work done by the batch on its behalf.</summary>
        public void Succeeded(T result) => _result = result;

        public override void Complete() => _completion.TrySetResult(_result);

        public override void Fail(Exception exception)
        {
            if (exception is OperationCanceledException canceled)
            {
                _completion.TrySetCanceled(canceled.CancellationToken);
            }
            else
            {
                _completion.TrySetException(exception);
            }
        }
    }

    /// <summary>An append: alone it runs as any work does, and the batch may check and write it together with others.</summary>
    private sealed class AppendWork(PreparedAppend append, CancellationToken cancellationToken)
        : Work<AppendResult>(context => context.AppendAsync(append, cancellationToken), cancellationToken)
    {
        public PreparedAppend Append { get; } = append;

        public override bool MayHaveWrittenNothing => Result is { WasDuplicate: true };
    }
}
