using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Postgres.Tests;

/// <summary>A statement PostgreSQL cannot parse: the error names the projection, the event and the statement.</summary>
public sealed partial class SqlReadModelTests
{
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
        Assert.Equal(["o1", "o2"], await QueryAsync($"SELECT order_id FROM \"{_schema}\".shipments ORDER BY order_id", r => r.GetString(0)));
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
