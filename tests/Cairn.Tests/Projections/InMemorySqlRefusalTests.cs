using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;

namespace Cairn.Tests.Projections;

/// <summary>
/// The in-memory backend has no SQL: a projection that declares SQL tables is refused there, by name, rather than
/// failing later inside a handler.
/// </summary>
public sealed class InMemorySqlRefusalTests
{
    [Fact]
    public async Task A_projection_with_sql_tables_is_refused_by_the_in_memory_backend_naming_the_projection()
    {
        var store = new InMemoryProjectionStore(new InMemoryEventStore());
        var projection = new OrdersPerCustomer();

        var open = await Assert.ThrowsAsync<NotSupportedException>(() => store.OpenAsync(projection, default));
        Assert.Contains("'orders-per-customer'", open.Message);
        Assert.Contains("orders_per_customer", open.Message);
        var shadow = await Assert.ThrowsAsync<NotSupportedException>(() => store.StartShadowAsync(projection, default));
        Assert.Contains("'orders-per-customer'", shadow.Message);
    }

    [Fact]
    public async Task A_runner_of_such_a_projection_reports_the_refusal_and_writes_nothing()
    {
        var events = new InMemoryEventStore();
        await events.AppendToStreamAsync(Orders.Stream("1"), ExpectedVersion.Any, [Orders.Placed("1", "c-1", 1m)], default);
        var store = new InMemoryProjectionStore(events);
        await using var runner = new ProjectionRunner(new OrdersPerCustomer(), events, store, Orders.Serializer());
        await runner.StartAsync(default);

        await Wait.UntilAsync(() => runner.Status.LastError is not null, "the runner reports the refusal");
        Assert.Contains(nameof(NotSupportedException), runner.Status.LastError);
        Assert.Contains("'orders-per-customer'", runner.Status.LastError);
        Assert.Equal(GlobalPosition.Start, runner.Status.Position);
    }

    [Fact]
    public async Task Views_of_such_a_projection_are_refused_too_since_they_are_folded_in_memory()
    {
        var events = new InMemoryEventStore();
        var error = await Assert.ThrowsAsync<NotSupportedException>(() => events.BuildLiveAsync(new OrdersPerCustomer(), Orders.Serializer()));
        Assert.Contains("'orders-per-customer'", error.Message);
    }

    private sealed class OrdersPerCustomer : Projection
    {
        public OrdersPerCustomer()
            : base("orders-per-customer")
        {
            SqlTable("orders_per_customer", "CREATE TABLE {table} (customer TEXT PRIMARY KEY, orders INTEGER NOT NULL)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute(
                $"INSERT INTO {ctx.Sql.Table("orders_per_customer")} (customer, orders) VALUES ($customer, 1) ON CONFLICT (customer) DO UPDATE SET orders = orders + 1",
                ("$customer", e.Customer)));
        }
    }
}
