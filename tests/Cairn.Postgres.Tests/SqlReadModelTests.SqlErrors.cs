using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>A SQL error in a handler: the failed batch writes nothing, and the event meets the failure policy.</summary>
public sealed partial class SqlReadModelTests
{
    [Fact]
    public async Task A_sql_error_in_a_handler_is_dead_lettered_and_nothing_of_the_failed_attempts_is_written()
    {
        await PlaceDuplicateAsync();
        var projection = new OrdersPerCustomer { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 2, RetryDelay = TimeSpan.Zero, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);

        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(new GlobalPosition(3), deadLetter.Position);
        Assert.Equal(typeof(PostgresException).FullName, deadLetter.Failure.Type);
        Assert.Contains("duplicate key value violates unique constraint", deadLetter.Failure.Message);
        Assert.Equal(3, deadLetter.Attempts);

        // The three failed attempts at the batch wrote nothing, not even the statements that ran before the error.
        Assert.Equal([("c-1", 2L), ("c-2", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal([("o1", "c-1"), ("o2", "c-2"), ("o3", "c-1")], await LogAsync());
    }

    [Fact]
    public async Task A_sql_error_in_a_handler_stops_the_projection_at_the_event_with_nothing_of_the_failed_batch_written()
    {
        await PlaceDuplicateAsync();
        var projection = new OrdersPerCustomer { MaxRetries = 1, RetryDelay = TimeSpan.Zero, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        Assert.Equal(new GlobalPosition(3), runner.Status.FailedEvent);
        Assert.Equal(new GlobalPosition(2), runner.Status.Position);
        Assert.Contains("duplicate key value violates unique constraint", runner.Status.LastError);
        Assert.Equal([("c-1", 1L), ("c-2", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal([("o1", "c-1"), ("o2", "c-2")], await LogAsync());
    }

    [Fact]
    public async Task Bad_sql_in_a_handler_fails_with_an_error_naming_the_projection_and_the_event_and_writes_nothing()
    {
        await PlaceAsync("o1", "c-1");
        await PlaceAsync("o2", "c-2");
        await _store.AppendToStreamAsync(Orders.Stream("o2"), ExpectedVersion.Any, [Orders.Shipped("o2")], default);
        var projection = new BadSqlOnShipped { MaxRetries = 0, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        // The event that failed, and the statement PostgreSQL refused, named in the error.
        Assert.Equal(new GlobalPosition(3), runner.Status.FailedEvent);
        Assert.Contains(nameof(ProjectionStoppedException), runner.Status.LastError);
        Assert.Contains("'bad-sql'", runner.Status.LastError);
        Assert.Contains("order.shipped", runner.Status.LastError);
        Assert.Contains("syntax error", runner.Status.LastError);

        // The two events before it are written, in their own batch; nothing of the failed batch is.
        Assert.Equal(new GlobalPosition(2), runner.Status.Position);
        Assert.Equal(["o1", "o2"], await ReadAsync($"SELECT order_id FROM \"{_schema}\".shipments ORDER BY order_id", r => r.GetString(0)));
    }

    /// <summary>Orders o1 (c-1), o2 (c-2), o1 again (c-1, which breaks the order log's key) and o3 (c-1), at positions 1 to 4.</summary>
    private async Task PlaceDuplicateAsync()
    {
        await PlaceAsync("o1", "c-1");
        await PlaceAsync("o2", "c-2");
        await _store.AppendToStreamAsync(new StreamName("order-again"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default);
        await PlaceAsync("o3", "c-1");
    }

    /// <summary>Logs placed orders, and runs a statement PostgreSQL cannot parse for each shipped one.</summary>
    private sealed class BadSqlOnShipped : Projection
    {
        public BadSqlOnShipped()
            : base("bad-sql")
        {
            SqlTable("shipments", "CREATE TABLE {table} (order_id text PRIMARY KEY, shipped boolean NOT NULL DEFAULT false)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("shipments")} (order_id) VALUES ($order)", ("$order", e.OrderId)));
            On<OrderShipped>((ctx, e) => ctx.Sql.Execute($"UPDATE {ctx.Sql.Table("shipments")} SETT shipped = true WHERE order_id = $order", ("$order", e.OrderId)));
        }
    }
}
