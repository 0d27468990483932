using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// One write transaction of the PostgreSQL backend: its connection and transaction, whether it holds the append lock
/// and, once it does, the head it appends after. Appends and the other parts of the backend (projections, messaging)
/// write through it, so what they write commits together or not at all.
/// </summary>
internal sealed class PostgresWriteContext(PostgresEventStore store, NpgsqlConnection connection, NpgsqlTransaction transaction)
{
    private List<Action>? _committed;
    private long _lastTicks = long.MinValue;

    /// <summary>The store the transaction writes to.</summary>
    public PostgresEventStore Store { get; } = store;

    /// <summary>The transaction's connection.</summary>
    public NpgsqlConnection Connection { get; } = connection;

    /// <summary>The transaction.</summary>
    public NpgsqlTransaction Transaction { get; } = transaction;

    /// <summary>Whether the transaction holds the append lock (taken by its first append or by <see cref="LockAppendsAsync"/>).</summary>
    public bool HoldsAppendLock { get; private set; }

    /// <summary>The position of the last event in the log as this transaction sees it; known once it holds the append lock.</summary>
    public long Head { get; private set; }

    /// <summary>The position of the last event this transaction appended, or 0.</summary>
    public long LastAppended { get; private set; }

    /// <summary>A batch on the transaction.</summary>
    public NpgsqlBatch Batch() => new(Connection, Transaction);

    /// <summary>A command on the transaction.</summary>
    public NpgsqlCommand Command(string sql) => new(sql, Connection, Transaction);

    /// <summary>
    /// Takes the append lock unless the transaction holds it: no append can commit until this transaction ends, so
    /// <see cref="Head"/> stays the head.
    /// </summary>
    public async Task LockAppendsAsync(CancellationToken cancellationToken)
    {
        if (HoldsAppendLock)
        {
            return;
        }

        var (head, lastTicks) = await Store.TakeAppendLockAsync(this, cancellationToken).ConfigureAwait(false);
        Locked(head, lastTicks);
    }

    /// <summary>Appends in this transaction.</summary>
    public Task<AppendResult> AppendAsync(PreparedAppend append, CancellationToken cancellationToken) =>
        Store.AppendInContextAsync(this, append, cancellationToken);

    /// <summary>Records that the append lock is held and what the log's head and last commit time were when it was taken.</summary>
    internal void Locked(long head, long lastTicks)
    {
        HoldsAppendLock = true;
        Head = head;
        _lastTicks = lastTicks;
    }

    /// <summary>The commit time for the next append: now, or the last one's if the clock went back.</summary>
    internal long NextTicks(long now)
    {
        _lastTicks = Math.Max(now, _lastTicks);
        return _lastTicks;
    }

    /// <summary>Records an append that wrote events up to <paramref name="last"/>.</summary>
    internal void Appended(long last)
    {
        Head = last;
        LastAppended = last;
    }

    /// <summary>Runs <paramref name="action"/> once the transaction has committed (never if it rolls back).</summary>
    public void OnCommitted(Action action) => (_committed ??= []).Add(action);

    /// <summary>Runs the actions registered with <see cref="OnCommitted"/>.</summary>
    internal void RunCommitted()
    {
        if (_committed is null)
        {
            return;
        }

        foreach (var action in _committed)
        {
            action();
        }
    }
}
