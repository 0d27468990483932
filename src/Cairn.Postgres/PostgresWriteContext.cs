using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// One PostgreSQL transaction of write work: appends, and whatever the messaging and read-model parts write beside
/// them, commit together or not at all. The first append takes the append lock, which is then held until the
/// transaction ends, so the positions assigned here follow every append committed before and precede every one after.
/// </summary>
internal sealed class PostgresWriteContext
{
    private readonly PostgresEventStore _store;
    private List<Action>? _committed;

    internal PostgresWriteContext(PostgresEventStore store, NpgsqlConnection connection, NpgsqlTransaction transaction)
    {
        _store = store;
        Connection = connection;
        Transaction = transaction;
    }

    /// <summary>The connection, with <see cref="Transaction"/> open on it.</summary>
    public NpgsqlConnection Connection { get; }

    /// <summary>The transaction every statement of the work runs in.</summary>
    public NpgsqlTransaction Transaction { get; }

    /// <summary>The store whose schema the transaction writes.</summary>
    public PostgresEventStore Store => _store;

    /// <summary>The head as this transaction sees it: read when it takes the append lock, moved on by its appends.</summary>
    public AppendHead Log { get; } = new();

    /// <summary>Whether this transaction holds the append lock (it appended, or took it with <see cref="LockAppendsAsync"/>).</summary>
    public bool HoldsAppendLock => Log.IsKnown;

    /// <summary>The last position written in this transaction, or committed before it: valid once the append lock is held.</summary>
    public long Head => Log.Head;

    /// <summary>The position of the last event this transaction appended, or 0 when it appended none.</summary>
    public long LastAppended => Log.LastAppended;

    /// <summary>
    /// Whether work in this transaction said it wrote rows (<see cref="NoteWrite"/>), or appended events. A transaction
    /// that wrote commits with a wait for any synchronous standby up to its commit, which covers every earlier commit too,
    /// so the writer need not make sure of it (see <see cref="PostgresWriter"/>). Work rolled back to a savepoint after
    /// writing leaves it set: its writes took a transaction id and WAL, which make the commit wait all the same.
    /// </summary>
    public bool Wrote => _wrote || LastAppended > 0;

    private bool _wrote;

    /// <summary>Says that work in this transaction wrote rows (an insert or update that changed at least one).</summary>
    public void NoteWrite() => _wrote = true;

    /// <summary>A new command in the transaction.</summary>
    public NpgsqlCommand Command(string sql) => new(sql, Connection, Transaction);

    /// <summary>A new batch in the transaction.</summary>
    public NpgsqlBatch Batch() => new(Connection, Transaction);

    /// <summary>
    /// Appends inside this transaction: expectations are checked against what committed before it and what it has
    /// written itself; live inline projections are applied in the same transaction.
    /// </summary>
    public Task<AppendResult> AppendAsync(PreparedAppend append, CancellationToken cancellationToken) =>
        _store.AppendInContextAsync(this, append, cancellationToken);

    /// <summary>Takes the append lock without appending (for work that must see the head and keep it still until commit).</summary>
    public async Task LockAppendsAsync(CancellationToken cancellationToken)
    {
        if (!HoldsAppendLock)
        {
            var (head, ticks) = await _store.TakeAppendLockAsync(this, cancellationToken).ConfigureAwait(false);
            Log.Read(head, ticks);
        }
    }

    /// <summary>Runs <paramref name="action"/> once the transaction has committed (wake-ups, caches); never on rollback.</summary>
    public void OnCommitted(Action action) => (_committed ??= []).Add(action);

    /// <summary>What the context knows before a piece of work runs, to go back to if the piece is undone.</summary>
    internal readonly record struct State(long Head, long LastTicks, long LastAppended, int Committed);

    /// <summary>The context's state now.</summary>
    internal State Mark() => new(Log.Head, Log.LastTicks, Log.LastAppended, _committed?.Count ?? 0);

    /// <summary>Goes back to <paramref name="state"/> after the work since it was rolled back (or wrote nothing).</summary>
    internal void Restore(State state)
    {
        Log.Restore(state.Head, state.LastTicks, state.LastAppended);
        _committed?.RemoveRange(state.Committed, _committed.Count - state.Committed);
    }

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
