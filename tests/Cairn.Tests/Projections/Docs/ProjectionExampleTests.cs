using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Projections.Docs;

// --- docs/projections.md: the example's events, document and projection ---
[EventType("order.placed")]
public sealed record OrderPlaced(string OrderId, string Customer, decimal Total, string? Coupon = null);

[EventType("order.shipped")]
public sealed record OrderShipped(string OrderId);

[EventType("order.cancelled")]
public sealed record OrderCancelled(string OrderId);

public sealed record OrderSummary(string Id, string Customer, decimal Total, string Status, DateTimeOffset PlacedAt, string? Coupon);

public sealed class OrderSummaries : Projection
{
    public OrderSummaries()
        : base("order-summaries")
    {
        Document<OrderSummary>(o => o.Id)              // the collection "order_summary"; the id comes from the document
            .Index("customer", o => o.Customer)
            .Index("total", o => o.Total)
            .Index("status", o => o.Status)
            .Index("placed_at", o => o.PlacedAt)
            .Index("coupon", o => o.Coupon);

        On<OrderPlaced>((ctx, e) =>
            ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", ctx.Event.Time, e.Coupon)));
        On<OrderShipped>((ctx, e) =>
        {
            var order = ctx.Documents.Load<OrderSummary>(e.OrderId);
            if (order is not null)
            {
                ctx.Documents.Store(order with { Status = "shipped" });
            }
        });
        On<OrderCancelled>((ctx, e) => ctx.Documents.Delete<OrderSummary>(e.OrderId));
    }
}
// --- end of the example ---

/// <summary>The examples of docs/projections.md, run as written (on the in-memory backend instead of a file).</summary>
public sealed class ProjectionExampleTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task the_documented_projection_is_hosted_written_and_queried()
    {
        // --- docs/projections.md: registering, writing, reading your write ---
        var builder = Host.CreateApplicationBuilder();
        builder.Services
            .AddCairn(o =>
            {
                o.UseInMemory();   // the page: o.UseSqlite("Data Source=shop.db")
                o.EventTypes.Register<OrderPlaced>().Register<OrderShipped>().Register<OrderCancelled>();
            })
            .AddProjection<OrderSummaries>();
        using var host = builder.Build();
        await host.StartAsync();

        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var projections = host.Services.GetRequiredService<ProjectionMonitor>();
        var readModels = host.Services.GetRequiredService<ReadModels>();

        var placed = await store.AppendToStreamAsync(
            StreamName.For("order", "42"), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced("42", "alice", 120m))]);
        await projections.WaitForAsync("order-summaries", placed.LastPosition, TimeSpan.FromSeconds(5));
        var order = await readModels.LoadAsync<OrderSummary>("42");   // status "placed", total 120
        // --- end of the example ---

        Assert.Equal("placed", order!.Status);
        Assert.Equal(120m, order.Total);

        await store.AppendToStreamAsync(StreamName.For("order", "43"), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced("43", "alice", 80m, "SPRING"))]);
        await store.AppendToStreamAsync(StreamName.For("order", "44"), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced("44", "bob", 300m))]);
        await store.AppendToStreamAsync(StreamName.For("order", "42"), ExpectedVersion.Any, [serializer.ToEventData(new OrderShipped("42"))]);
        var last = await store.AppendToStreamAsync(StreamName.For("order", "44"), ExpectedVersion.Any, [serializer.ToEventData(new OrderCancelled("44"))]);
        await projections.WaitForAllAsync(last.LastPosition, Patience);

        // --- docs/projections.md: queries ---
        var large = await readModels.Query<OrderSummary>()
            .Where("customer", "alice")
            .Where("total", QueryOperator.GreaterThanOrEqual, 100m)
            .ToListAsync();                                                           // order 42
        var newestFirst = await readModels.Query<OrderSummary>()
            .Where("customer", "alice")
            .OrderByDescending("placed_at")
            .Skip(0)
            .Take(20)
            .ToListAsync();                                                           // 43, then 42
        var shipped = await readModels.Query<OrderSummary>().Where("status", "shipped").CountAsync();   // 1
        var open = await readModels.Query<OrderSummary>()
            .Where("status", QueryOperator.In, new[] { "placed", "shipped" })
            .CountAsync();                                                            // 2: order 44 was deleted
        var withoutCoupon = await readModels.Query<OrderSummary>().Where("coupon", null).CountAsync();            // 1
        var withCoupon = await readModels.Query<OrderSummary>().Where("coupon", QueryOperator.NotEqual, null).CountAsync();   // 1
        // --- end of the example ---

        Assert.Equal(["42"], large.Select(o => o.Id));
        Assert.Equal(["43", "42"], newestFirst.Select(o => o.Id));
        Assert.Equal(1, shipped);
        Assert.Equal(2, open);
        Assert.Equal(1, withoutCoupon);
        Assert.Equal(1, withCoupon);
        Assert.Equal(0, await readModels.Query<OrderSummary>().Where("coupon", QueryOperator.NotEqual, "SPRING").CountAsync());
        Assert.Null(await readModels.LoadAsync<OrderSummary>("44"));

        // --- docs/projections.md: statuses ---
        foreach (var status in projections.Statuses)
        {
            Console.WriteLine($"{status.Name}: {status.State} at {status.Position}, {status.LagEvents} events behind");
        }
        // --- end of the example ---

        var only = Assert.Single(projections.Statuses);
        Assert.Equal(ProjectionState.Live, only.State);
        Assert.Equal(last.LastPosition, only.Position);
        await host.StopAsync();
    }

    [Fact]
    public async Task the_documented_rebuild_switches_to_a_new_read_model()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services
            .AddCairn(o =>
            {
                o.UseInMemory();
                o.EventTypes.Register<OrderPlaced>().Register<OrderShipped>().Register<OrderCancelled>();
            })
            .AddProjection<OrderSummaries>();
        using var host = builder.Build();
        await host.StartAsync();
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        for (var i = 0; i < 50; i++)
        {
            await store.AppendToStreamAsync(StreamName.For("order", $"{i}"), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced($"{i}", "alice", i))]);
        }

        // --- docs/projections.md: a rebuild ---
        var projections = host.Services.GetRequiredService<ProjectionMonitor>();
        var rebuild = projections.RebuildAsync("order-summaries");          // completes at the switch
        var progress = projections.Find("order-summaries")!.Status.Rebuild;    // null before it starts and after the switch
        if (progress is not null)
        {
            Console.WriteLine($"{progress.Fraction:P0} done, {progress.EventsPerSecond:N0}/s, {progress.EstimatedRemaining} left");
        }

        await rebuild;
        // --- end of the example ---

        await rebuild.WaitAsync(Patience);
        Assert.Null(projections.Find("order-summaries")!.Status.Rebuild);
        Assert.Equal(50, await host.Services.GetRequiredService<ReadModels>().Query<OrderSummary>().CountAsync());
        await host.StopAsync();
    }

    [Fact]
    public async Task the_documented_views_show_the_read_model_as_it_was()
    {
        var services = new ServiceCollection();
        services.AddCairn(o =>
        {
            o.UseInMemory();
            o.EventTypes.Register<OrderPlaced>().Register<OrderShipped>().Register<OrderCancelled>();
        });
        await using var provider = services.BuildServiceProvider();
        var store = provider.GetRequiredService<IEventStore>();
        var serializer = provider.GetRequiredService<EventSerializer>();
        var first = await store.AppendToStreamAsync(StreamName.For("order", "42"), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced("42", "alice", 120m))]);
        await store.AppendToStreamAsync(StreamName.For("order", "42"), ExpectedVersion.Any, [serializer.ToEventData(new OrderShipped("42"))]);
        await store.AppendToStreamAsync(StreamName.For("order", "43"), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced("43", "bob", 10m))]);
        var position = first.LastPosition;
        var october = DateTimeOffset.UtcNow.AddMinutes(1);

        // --- docs/projections.md: views of the past and live projections ---
        var atPosition = await store.BuildAsOfAsync(new OrderSummaries(), serializer, position);
        var atTime = await store.BuildAsOfAsync(new OrderSummaries(), serializer, october);
        var now = await store.BuildLiveAsync(new OrderSummaries(), serializer);
        var placedThen = await atPosition.ReadModels.Query<OrderSummary>().Where("status", "placed").CountAsync();

        var order = await store.AggregateStreamAsync<OrderSummary>(new OrderSummaries(), serializer, StreamName.For("order", "42"), id: "42");
        var asFirstPlaced = await store.AggregateStreamAsync<OrderSummary>(new OrderSummaries(), serializer, StreamName.For("order", "42"), id: "42", asOfVersion: 0);
        // --- end of the example ---

        Assert.Equal(1, placedThen);
        Assert.Equal(position, atPosition.Position);
        Assert.Equal(1, atPosition.EventsApplied);
        Assert.Equal(2, await atTime.ReadModels.Query<OrderSummary>().CountAsync());
        Assert.Equal(3, now.EventsApplied);
        Assert.Equal("shipped", order!.Status);
        Assert.Equal("placed", asFirstPlaced!.Status);
    }
}
