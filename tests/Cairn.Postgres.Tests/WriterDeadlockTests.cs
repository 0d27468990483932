using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Group commit puts unrelated work in one transaction, so another session can take the same locks in the opposite
/// order and PostgreSQL breaks the deadlock by rolling the writer's statement back. The piece it chose runs again,
/// alone, and its caller never sees the deadlock; a piece that ran in a transaction the deadlock aborted runs again in
/// a new one. The writer's session checks for a deadlock after 3 s of waiting and the other session after 20 s, so the
/// writer's is the one PostgreSQL rolls back: the other joins the cycle at once.
/// </summary>
public sealed class WriterDeadlockTests : OwnSchemaStoreTests
{
    private const long ParkKey = 7_340_033;

    protected override PostgresEventStoreOptions Configure(PostgresEventStoreOptions options) =>
        options with { ConnectionString = new NpgsqlConnectionStringBuilder(options.ConnectionString) { Options = "-c deadlock_timeout=3s" }.ConnectionString };

    private static EventData Event() => new("test.appended", Encoding.UTF8.GetBytes("{}")) { Id = MessageId.New() };

    private sealed class Plain(string name) : Projection(name);

    [Fact]
    public async Task an_append_rolled_back_to_break_a_deadlock_runs_again_and_succeeds()
    {
        // An attached inline projection gives each append of a shared transaction its own savepoint.
        await using var projections = new PostgresProjectionStore(Store);
        projections.AttachInline(new Plain("attached"), (_, _) => { });
        var outcome = await DeadlockAsync(projections);

        Assert.Equal("deadlocked", Assert.Single(outcome.Append.Streams).Stream.Value);
        Assert.Single(outcome.Transactions);
        Assert.Equal(outcome.Position, outcome.Batch.Position);
    }

    [Fact]
    public async Task a_batch_in_a_transaction_a_deadlock_broke_runs_again_in_a_new_one()
    {
        // No inline projection: appends share the transaction without savepoints, so the deadlock aborts all of it.
        await using var projections = new PostgresProjectionStore(Store);
        var outcome = await DeadlockAsync(projections);

        Assert.Equal("deadlocked", Assert.Single(outcome.Append.Streams).Stream.Value);
        Assert.Equal(2, outcome.Transactions.Distinct().Count());
        Assert.Equal(outcome.Position, outcome.Batch.Position);
    }

    private sealed record Outcome(AppendResult Append, ProjectionBatchResult Batch, GlobalPosition Position, List<IReadModelTransaction> Transactions);

    /// <summary>
    /// Lines up one writer batch of a projection batch (which locks its build's row) and then an append (which waits
    /// for the append lock another session holds); that session then waits for the build's row.
    /// </summary>
    private async Task<Outcome> DeadlockAsync(PostgresProjectionStore projections)
    {
        var projection = new Plain("deadlocked");
        var builds = await projections.OpenAsync(projection, default);
        var first = await Store.AppendToStreamAsync("s", ExpectedVersion.Any, [Event()]);
        var events = await Store.ReadAllAsync().ToListAsync();

        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await ExecuteAsync(holder, null, "SET deadlock_timeout = '20s'");
        await using var holding = await holder.BeginTransactionAsync();
        await ExecuteAsync(holder, holding, $"SELECT pg_advisory_xact_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(Schema)})");

        // The writer is parked on a lock of its own while the batch's two pieces queue behind it.
        await using var parker = new NpgsqlConnection(PostgresServer.ConnectionString);
        await parker.OpenAsync();
        await ExecuteAsync(parker, null, $"SELECT pg_advisory_lock({ParkKey})");
        var parked = Store.WriteAsync(async context =>
        {
            await using var park = context.Command($"SELECT pg_advisory_xact_lock({ParkKey})");
            await park.ExecuteNonQueryAsync();
            return true;
        }, default);
        await WaitForWaiterAsync(ParkLock);

        var transactions = new List<IReadModelTransaction>();
        var applying = projections.ApplyAsync(new ProjectionBatch(projection.Name, builds.Serving.Id, GlobalPosition.Start, first.LastPosition, events, (transaction, _) => transactions.Add(transaction)), default);
        var appending = Store.AppendToStreamAsync("deadlocked", ExpectedVersion.Any, [Event()]);
        await Wait.UntilAsync(() => Store.Writer.Queued == 2, "the projection batch and the append queued behind the parked work");
        await ExecuteAsync(parker, null, $"SELECT pg_advisory_unlock({ParkKey})");
        Assert.True(await parked);

        // The batch holds the build's row and its append waits for the append lock: the holder closes the cycle.
        await WaitForWaiterAsync(AppendLock);
        await ExecuteAsync(holder, holding, $"SELECT 1 FROM \"{Schema}\".projection_builds WHERE id = {builds.Serving.Id} FOR UPDATE");
        await holding.RollbackAsync();

        var batch = await applying;
        var append = await appending;
        var stored = await projections.OpenAsync(projection, default);
        return new Outcome(append, batch, stored.Serving.Position, transactions);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>The parking lock in <c>pg_locks</c>: a one-key advisory lock.</summary>
    private static readonly string ParkLock = $"classid = 0 AND objid = {ParkKey} AND objsubid = 1";

    /// <summary>This store's append lock in <c>pg_locks</c>: a two-key advisory lock.</summary>
    private string AppendLock => $"classid = {PostgresSchema.AppendLockClass} AND objid = {(uint)PostgresSchema.SchemaKey(Schema)} AND objsubid = 2";

    /// <summary>Waits until a session waits for the advisory lock <paramref name="which"/> names.</summary>
    private static async Task WaitForWaiterAsync(string which)
    {
        await using var watcher = new NpgsqlConnection(PostgresServer.ConnectionString);
        await watcher.OpenAsync();
        await using var waiting = new NpgsqlCommand($"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND {which}", watcher);
        await Wait.UntilAsync(async () => (long)(await waiting.ExecuteScalarAsync())! > 0, $"a session waiting for the lock {which}");
    }
}
