using System.Globalization;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Serialization;

namespace Cairn.Benchmarks;

[EventType("bench.order-placed")]
internal sealed record OrderPlaced(string OrderId, string Customer, string Region, DateTimeOffset PlacedAt);

[EventType("bench.order-line-added")]
internal sealed record OrderLineAdded(string OrderId, string Sku, int Quantity, decimal UnitPrice);

[EventType("bench.order-shipped")]
internal sealed record OrderShipped(string OrderId, string Carrier, DateTimeOffset ShippedAt);

/// <summary>The read model P1 and P2 build: one document per order, indexed by customer, status and total.</summary>
internal sealed record OrderSummary(string Id, string Customer, string Region, string Status, int Lines, decimal Total, DateTimeOffset PlacedAt, DateTimeOffset? ShippedAt);

/// <summary>
/// The fold of an order's events into its summary, shared by Cairn's projection and the hand-written baseline so both
/// sides do exactly the same work per event.
/// </summary>
internal static class OrderFold
{
    public static OrderSummary Placed(OrderPlaced e) => new(e.OrderId, e.Customer, e.Region, "placed", 0, 0m, e.PlacedAt, null);

    public static OrderSummary Line(OrderSummary order, OrderLineAdded e) =>
        order with { Lines = order.Lines + 1, Total = order.Total + e.Quantity * e.UnitPrice, Status = "open" };

    public static OrderSummary Shipped(OrderSummary order, OrderShipped e) => order with { Status = "shipped", ShippedAt = e.ShippedAt };
}

/// <summary>The projection of P1 and P2: order summaries in documents with three indexed fields.</summary>
internal sealed class OrderSummaries : Projection
{
    public OrderSummaries(string name)
        : base(name)
    {
        Document<OrderSummary>(o => o.Id)
            .Index("customer", o => o.Customer)
            .Index("status", o => o.Status)
            .Index("total", o => o.Total);
        On<OrderPlaced>((ctx, e) => ctx.Documents.Store(OrderFold.Placed(e)));
        On<OrderLineAdded>((ctx, e) => ctx.Documents.Store(OrderFold.Line(Existing(ctx, e.OrderId), e)));
        On<OrderShipped>((ctx, e) => ctx.Documents.Store(OrderFold.Shipped(Existing(ctx, e.OrderId), e)));
    }

    private static OrderSummary Existing(IProjectionContext ctx, string orderId) =>
        ctx.Documents.Load<OrderSummary>(orderId) ?? throw new InvalidOperationException($"Order {orderId} has an event before it was placed.");
}

/// <summary>
/// A log of orders: each order is placed, gets <see cref="LinesPerOrder"/> lines and is shipped (20 events). Orders
/// run <see cref="Concurrent"/> at a time, their events interleaved round by round, as in a shop where many orders are
/// open at once: a batch of 1,000 events in log order touches up to 1,000 different orders.
/// </summary>
internal sealed class OrderLog(int orders, int concurrent, string prefix)
{
    public const int LinesPerOrder = 18;
    public const int EventsPerOrder = LinesPerOrder + 2;
    public const int Customers = 5_000;

    private static readonly string[] Regions = ["north", "south", "east", "west", "centre", "islands", "overseas", "online"];
    private static readonly string[] Carriers = ["post", "courier", "pickup"];
    private static readonly DateTimeOffset Epoch = new(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);

    public static EventSerializer Serializer { get; } = new(new EventTypeRegistry()
        .Register<OrderPlaced>()
        .Register<OrderLineAdded>()
        .Register<OrderShipped>());

    public int Orders { get; } = orders;

    /// <summary>Orders open at the same time; a multiple of every pacer count used with it.</summary>
    public int Concurrent { get; } = concurrent;

    public long Events => (long)Orders * EventsPerOrder;

    public string OrderId(int order) => string.Create(CultureInfo.InvariantCulture, $"{prefix}{order:D6}");

    public StreamName Stream(int order) => new("order-" + OrderId(order));

    /// <summary>The order and its event number (0 placed, 1–18 lines, 19 shipped) of the <paramref name="n"/>th event of the log.</summary>
    public (int Order, int Step) At(long n)
    {
        var perWave = (long)Concurrent * EventsPerOrder;
        var wave = (int)(n / perWave);
        var inWave = n % perWave;
        var step = (int)(inWave / Concurrent);
        var order = wave * Concurrent + (int)(inWave % Concurrent);
        return (order, step);
    }

    /// <summary>The event itself: deterministic, so either side's fold can be checked.</summary>
    public static object Event(string orderId, int order, int step) => step switch
    {
        0 => new OrderPlaced(
            orderId,
            string.Create(CultureInfo.InvariantCulture, $"customer-{order * 7919 % Customers:D4}"),
            Regions[order % Regions.Length],
            Epoch.AddSeconds(order)),
        EventsPerOrder - 1 => new OrderShipped(orderId, Carriers[order % Carriers.Length], Epoch.AddSeconds(order).AddHours(6)),
        _ => new OrderLineAdded(
            orderId,
            string.Create(CultureInfo.InvariantCulture, $"SKU-{(order * 31 + step * 7) % 5000:D5}"),
            1 + (order + step) % 5,
            1m + (order * 13 + step) % 9999 / 100m),
    };

    public EventData EventData(int order, int step) => Serializer.ToEventData(Event(OrderId(order), order, step));

    /// <summary>
    /// Writes the whole log with the store's fastest path: appends of <see cref="Concurrent"/> streams, one event each
    /// (one round of the open orders per append), so every append is one group commit of many events.
    /// </summary>
    public async Task WriteAsync(IEventStore store)
    {
        for (long n = 0; n < Events; n += Concurrent)
        {
            var parts = new StreamAppend[Concurrent];
            for (var i = 0; i < Concurrent; i++)
            {
                var (order, step) = At(n + i);
                parts[i] = new StreamAppend(Stream(order), step == 0 ? ExpectedVersion.NoStream : ExpectedVersion.Any, [EventData(order, step)]);
            }

            await store.AppendToStreamsAsync(parts);
        }
    }

    /// <summary>The summary every order ends with, folded without any store: what both sides must produce.</summary>
    public OrderSummary Expected(int order)
    {
        var id = OrderId(order);
        var summary = OrderFold.Placed((OrderPlaced)Event(id, order, 0));
        for (var step = 1; step < EventsPerOrder - 1; step++)
        {
            summary = OrderFold.Line(summary, (OrderLineAdded)Event(id, order, step));
        }

        return OrderFold.Shipped(summary, (OrderShipped)Event(id, order, EventsPerOrder - 1));
    }

    /// <summary>The JSON options both sides serialize and deserialize with.</summary>
    public static JsonSerializerOptions Json => Serializer.Options;
}
