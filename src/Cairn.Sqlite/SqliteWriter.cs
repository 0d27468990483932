using System.Diagnostics;
using System.Threading.Channels;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Cairn.Sqlite;

/// <summary>
/// A unit of work for the single writer: an append, a checkpoint, a lifecycle change. Whatever it throws, its writes
/// alone are undone: directly when it threw before writing, otherwise by running its group again with a savepoint
/// per operation. So it may run more than once before its commit, and must not act outside the transaction.
/// </summary>
internal abstract class WriteOperation
{
    private const int Pending = 0, Claimed = 1, Cancelled = 2;
    private int _state;

    /// <summary>Takes the operation for a commit; false when it was cancelled first.</summary>
    public bool TryClaim() => Interlocked.CompareExchange(ref _state, Claimed, Pending) == Pending;

    /// <summary>Cancels the operation if no commit has taken it yet.</summary>
    public bool TryCancel() => Interlocked.CompareExchange(ref _state, Cancelled, Pending) == Pending;

    /// <summary>
    /// Whether the operation's commit must reach the disk before it completes. Only a receive is not: a lease lost to a
    /// power cut makes the message visible again, which at-least-once delivery allows.
    /// </summary>
    public bool Durable { get; init; } = true;

    /// <summary>
    /// Whether the operation always runs in a savepoint of its own: one that runs application code (a projection's
    /// handlers), which must run once per attempt, not again because another operation of its group failed.
    /// </summary>
    public bool Guarded { get; init; }

    public abstract void Execute(SqliteWriteContext context);

    public abstract void Complete();

    public abstract void Fail(Exception error);

    public abstract void Cancel();
}

internal sealed class WriteOperation<T>(Func<SqliteWriteContext, T> work, CancellationToken cancellationToken) : WriteOperation
{
    private readonly TaskCompletionSource<T> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private T? _result;

    public Task<T> Task => _done.Task;

    public CancellationToken CancellationToken => cancellationToken;

    public override void Execute(SqliteWriteContext context) => _result = work(context);

    public override void Complete() => _done.TrySetResult(_result!);

    public override void Fail(Exception error) => _done.TrySetException(error);

    public override void Cancel() => _done.TrySetCanceled(cancellationToken);
}

/// <summary>
/// The one writer of a SQLite file in this process. Callers queue operations; a dedicated thread drains everything
/// queued into one transaction and one fsync (group commit). One operation that throws is undone alone, whether
/// refused by its own checks or failing half-way through its writes: the group first runs without savepoints, and
/// runs again with one per operation only when an operation fails after writing. Only when SQLite loses the whole
/// transaction are the others replayed without the faulty one. Nothing is acknowledged before its commit is durable.
/// </summary>
internal sealed class SqliteWriter : IDisposable
{
    private readonly Channel<WriteOperation> _queue = Channel.CreateBounded<WriteOperation>(new BoundedChannelOptions(65536)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.Wait,
    });

    private readonly SqliteWriteContext _context;
    private readonly SqliteEventStoreOptions _options;
    private readonly AppendSignal _signal;
    private readonly Messaging.QueueSignal _queueSignal;
    private readonly ILogger _logger;
    private readonly Thread _thread;

    /// <summary>The longest a commit waits for more operations; short beside an fsync.</summary>
    private static readonly TimeSpan Linger = TimeSpan.FromMicroseconds(100);

    private int _lastCommitSize;

    private readonly SqliteCheckpointer? _checkpointer;

    public SqliteWriter(SqliteConnection connection, SqliteEventStoreOptions options, EventStoreOptions storeOptions, AppendSignal signal, Messaging.QueueSignal queueSignal, ILogger logger, SqliteCheckpointer? checkpointer = null)
    {
        _checkpointer = checkpointer;
        _options = options;
        _signal = signal;
        _queueSignal = queueSignal;
        _logger = logger;
        _context = new SqliteWriteContext(connection, storeOptions, options.Durability == SqliteDurability.Full);
        _signal.Advance(_context.Head);
        _thread = new Thread(Run) { IsBackground = true, Name = "Cairn SQLite writer" };
        _thread.UnsafeStart(); // without the caller's execution context (a span, a message context), which it would keep for good
    }

    /// <summary>
    /// Queues work for the next group commit; completes once it is durably committed (or, when
    /// <paramref name="durable"/> is false, committed, with the disk flush left to the next durable commit).
    /// <paramref name="guarded"/>: see <see cref="WriteOperation.Guarded"/>.
    /// </summary>
    public Task<T> ExecuteAsync<T>(Func<SqliteWriteContext, T> work, CancellationToken cancellationToken, bool durable = true, bool guarded = false)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }

        var operation = new WriteOperation<T>(work, cancellationToken) { Durable = durable, Guarded = guarded };
        if (!_queue.Writer.TryWrite(operation))
        {
            return QueueSlowlyAsync(operation, cancellationToken);
        }

        RegisterCancellation(operation, cancellationToken);
        return operation.Task;
    }

    private async Task<T> QueueSlowlyAsync<T>(WriteOperation<T> operation, CancellationToken cancellationToken)
    {
        try
        {
            await _queue.Writer.WriteAsync(operation, cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(SqliteEventStore), "The SQLite event store is disposed.");
        }

        RegisterCancellation(operation, cancellationToken);
        return await operation.Task.ConfigureAwait(false);
    }

    private static void RegisterCancellation<T>(WriteOperation<T> operation, CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            return;
        }

        var registration = cancellationToken.Register(static state =>
        {
            var op = (WriteOperation<T>)state!;
            if (op.TryCancel())
            {
                op.Cancel();
            }
        }, operation);
        operation.Task.ContinueWith(static (_, r) => ((CancellationTokenRegistration)r!).Dispose(), registration, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Attaches an inline projection; it applies to appends once a batch of it goes live.</summary>
    public void AttachInline(InlineProjection projection) => _context.AttachInline(projection);

    /// <summary>Stops applying an inline projection to appends.</summary>
    public void DetachInline(string projection) => _context.DetachInline(projection);

    /// <summary>Whether appends stopped applying an inline projection for another process's switch.</summary>
    public bool IsInlineDetached(string projection) => _context.IsInlineDetached(projection);

    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _thread.Join();
        _context.Dispose();
    }

    private void Run()
    {
        var reader = _queue.Reader;
        var batch = new List<WriteOperation>(_options.MaxOperationsPerCommit);
        while (true)
        {
            if (!reader.TryPeek(out _))
            {
                var more = reader.WaitToReadAsync().AsTask();
                if (!more.GetAwaiter().GetResult())
                {
                    return;
                }
            }

            batch.Clear();
            Drain(reader, batch);

            // The appenders acknowledged by the last commit are about to send their next operations. Waiting a few
            // microseconds for them, when fewer have arrived than that commit carried, lets one fsync serve them all.
            if (batch.Count < _lastCommitSize && batch.Count < _options.MaxOperationsPerCommit)
            {
                var started = Stopwatch.GetTimestamp();
                while (batch.Count < _lastCommitSize && Stopwatch.GetElapsedTime(started) < Linger)
                {
                    Thread.Yield();
                    Drain(reader, batch);
                }
            }

            if (batch.Count > 0)
            {
                try
                {
                    CommitBatch(batch);
                }
                catch (Exception ex)
                {
                    // Nothing may end the writer thread: fail what is in hand, start clean, and go on.
                    _logger.LogCritical(ex, "The SQLite writer failed unexpectedly; {Count} operations fail.", batch.Count);
                    FailAll(batch, ex);
                    _context.Rollback();
                }
            }
        }
    }

    private void Drain(ChannelReader<WriteOperation> reader, List<WriteOperation> batch)
    {
        while (batch.Count < _options.MaxOperationsPerCommit && reader.TryRead(out var operation))
        {
            if (operation.TryClaim())
            {
                batch.Add(operation);
            }
        }
    }

    private void CommitBatch(List<WriteOperation> batch)
    {
        var pending = batch;

        // A savepoint per operation is needed only to undo one that fails after it has written, which is rare: a
        // refusal by an operation's own checks comes before its writes. So a group runs without them first, and only
        // when one of its operations fails after writing is it rolled back and run again with them. (The savepoints
        // cost about a tenth of a three-step workflow's CPU: SQLite copies every page an operation touches again.)
        // Operations that run application code are always guarded, so that code never runs again for another's fault:
        // a group holding one runs with a savepoint per operation from the start, since a group run again after an
        // unguarded operation failed after writing would run that code a second time.
        var guarded = pending.Exists(o => o.Guarded);
        while (pending.Count > 0)
        {
            var executed = new List<WriteOperation>(pending.Count);

            // Refusals are reported only after the commit, so a caller that retries reads what this batch wrote
            // instead of racing it and being refused again.
            var refused = new List<(WriteOperation Operation, Exception Error)>();
            WriteOperation? faulty = null;
            Exception? fault = null;
            var needsSavepoints = false;
            try
            {
                _context.Begin(durable: pending.Exists(o => o.Durable));
            }
            catch (Exception ex)
            {
                _logger.LogError(ex, "The SQLite writer could not begin a transaction; {Count} operations fail.", pending.Count);
                FailAll(pending, ex);
                _context.Rollback();
                return;
            }

            foreach (var operation in pending)
            {
                try
                {
                    _context.StartOperation(guarded || operation.Guarded || _context.AppliesInlineProjections);
                    operation.Execute(_context);
                    _context.EndOperation();
                    executed.Add(operation);
                }
                catch (Exception ex)
                {
                    OperationUndo undo;
                    try
                    {
                        undo = _context.UndoOperation();
                    }
                    catch (SqliteException)
                    {
                        undo = OperationUndo.TransactionLost;
                    }

                    if (undo == OperationUndo.NeedsSavepoint)
                    {
                        needsSavepoints = true;
                        break;
                    }

                    if (undo == OperationUndo.TransactionLost)
                    {
                        // SQLite lost the whole transaction: replay the others without this one.
                        faulty = operation;
                        fault = ex;
                        break;
                    }

                    // Refused by its own checks, or undone to its savepoint after a failed write (a reused event
                    // id, say): the others in the group are untouched.
                    refused.Add((operation, ex));
                }
            }

            if (needsSavepoints)
            {
                // Nothing of the group is settled yet: undo it all and run it again, each operation in its savepoint.
                _logger.LogDebug("An operation failed after writing; its group of {Count} runs again with a savepoint per operation.", pending.Count);
                _context.Rollback();
                guarded = true;
                continue;
            }

            if (faulty is not null)
            {
                // The transaction is gone: undo what is left of it and replay the others without the faulty one.
                _logger.LogWarning(fault, "An operation failed and SQLite rolled back its group commit; the group is replayed without it.");
                _context.Rollback();
                faulty.Fail(fault!);
                pending = [.. pending.Where(operation => operation != faulty)];
                continue;
            }

            try
            {
                _context.Commit();
            }
            catch (Exception ex)
            {
                _logger.LogError(ex, "The SQLite commit of {Count} operations failed; none of them is acknowledged.", executed.Count);
                _context.Rollback();

                // The refusals were judged against writes that did not commit: report the commit's failure instead.
                FailAll(executed, ex);
                FailAll([.. refused.Select(r => r.Operation)], ex);
                return;
            }

            // Committed: whatever fails from here on (a metrics listener that throws, say) must not report the group's
            // operations failed, or a caller would retry what is already durable.
            try
            {
                _checkpointer?.Written(_context.PagesCommitted);
                _lastCommitSize = executed.Count + refused.Count;
                _signal.Advance(_context.Head);
                foreach (var queue in _context.TakeTouchedQueues())
                {
                    _queueSignal.Pulse(queue);
                }

                foreach (var queue in _context.TakeDeadLettered())
                {
                    Diagnostics.CairnDiagnostics.MessagesDeadLettered.Add(1, new KeyValuePair<string, object?>("queue", queue));
                }
            }
            catch (Exception ex)
            {
                _logger.LogError(ex, "The SQLite writer's notifications after a commit of {Count} operations failed; the operations are committed.", executed.Count);
            }

            foreach (var operation in executed)
            {
                operation.Complete();
            }

            FailRefused(refused);
            return;
        }
    }

    private static void FailRefused(List<(WriteOperation Operation, Exception Error)> refused)
    {
        foreach (var (operation, error) in refused)
        {
            operation.Fail(error);
        }
    }

    private static void FailAll(List<WriteOperation> operations, Exception error)
    {
        foreach (var operation in operations)
        {
            operation.Fail(error);
        }
    }
}
