using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>A projection handler's statement that runs past the command time-out is its event's failure, not the store's.</summary>
public sealed class ProjectionCommandTimeoutTests : OwnSchemaStoreTests
{
    // Every command of this store gives up after three seconds (Npgsql's Command Timeout): long enough for each of its
    // ordinary commands (the migration's, the appends', the runner's commits) on a loaded machine, where one second may
    // not be, and a timed-out ordinary command would fault the runner; o2's statement sleeps well past it.
    protected override PostgresEventStoreOptions Configure(PostgresEventStoreOptions options) =>
        options with { ConnectionString = PostgresServer.ConnectionString + ";Command Timeout=3" };

    /// <summary>A projection whose handler runs a statement that outlasts the command timeout for order o2 only.</summary>
    private sealed class SlowForOne : Projection
    {
        public SlowForOne()
            : base("slow-for-one")
        {
            MaxRetries = 0;
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter;
            SqlTable("placed", "CREATE TABLE {table} (id text PRIMARY KEY)");
            On<OrderPlaced>((ctx, e) =>
            {
                if (e.OrderId == "o2")
                {
                    ctx.Sql.Execute("SELECT pg_sleep(15)");
                }

                ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("placed")} (id) VALUES ($id)", ("$id", e.OrderId));
            });
        }
    }

    // A connection that breaks under a handler is the store's failure (Faulted, resumed from the stored position). A
    // statement that times out throws an NpgsqlException too (over a TimeoutException), on a connection still open: it
    // was taken for a broken connection, so the event's failure never met MaxRetries and OnFailure, and under
    // SkipAndDeadLetter the projection never got past it.
    [Fact]
    public async Task A_handler_statement_that_times_out_is_the_events_failure_and_meets_the_failure_policy()
    {
        // What such a statement throws, and that its connection is still open (Npgsql cancelled the statement).
        await using (var connection = new NpgsqlConnection(PostgresServer.ConnectionString + ";Command Timeout=1"))
        {
            await connection.OpenAsync();
            await using var sleep = new NpgsqlCommand("SELECT pg_sleep(5)", connection);
            var timedOut = await Assert.ThrowsAsync<NpgsqlException>(() => sleep.ExecuteNonQueryAsync());
            Assert.IsType<TimeoutException>(timedOut.InnerException);
            Assert.Equal(System.Data.ConnectionState.Open, connection.State);
            await using var alive = new NpgsqlCommand("SELECT 1", connection);
            Assert.Equal(1, await alive.ExecuteScalarAsync());
        }

        await using var projections = new PostgresProjectionStore(Store);
        GlobalPosition last = default;
        foreach (var id in new[] { "o1", "o2", "o3" })
        {
            last = (await Store.AppendToStreamAsync(Orders.Stream(id), ExpectedVersion.Any, [Orders.Placed(id, "c", 1m)], default)).LastPosition;
        }

        await using var runner = new ProjectionRunner(new SlowForOne(), Store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.Position >= last || runner.Status.State is ProjectionState.Faulted or ProjectionState.Failed, "the projection gets past o2, or fails");

        var status = runner.Status;
        Assert.True(status.Position >= last, $"{status.State} at {status.Position}: {status.LastError}");
        var deadLetters = await runner.ListDeadLettersAsync();
        Assert.Single(deadLetters);
    }
}
