using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Serialization;

namespace Cairn.Conformance.Support;

[EventType("order.placed")]
public sealed record OrderPlaced(string OrderId, string Customer, decimal Total, DateTimeOffset? PlacedAt = null);

[EventType("order.line-added")]
public sealed record OrderLineAdded(string OrderId, decimal Amount);

[EventType("order.shipped")]
public sealed record OrderShipped(string OrderId);

[EventType("order.cancelled")]
public sealed record OrderCancelled(string OrderId);

/// <summary>An event the order projections have no handler for.</summary>
[EventType("order.noted")]
public sealed record OrderNoted(string OrderId, string Note);

/// <summary>The read model of one order.</summary>
public sealed record OrderSummary(string Id, string Customer, decimal Total, string Status, int Lines, long? Priority = null);

/// <summary>A count of every event a projection applied, to prove each is applied exactly once.</summary>
public sealed record Tally(string Id, long Events, long LastPosition);

/// <summary>The events and serializer of the order tests.</summary>
public static class Orders
{
    public static EventSerializer Serializer() => new(new EventTypeRegistry()
        .Register<OrderPlaced>()
        .Register<OrderLineAdded>()
        .Register<OrderShipped>()
        .Register<OrderCancelled>()
        .Register<OrderNoted>());

    public static StreamName Stream(string orderId) => new("order-" + orderId);

    public static EventData Placed(string orderId, string customer, decimal total) =>
        Serializer().ToEventData(new OrderPlaced(orderId, customer, total));

    public static EventData Line(string orderId, decimal amount) => Serializer().ToEventData(new OrderLineAdded(orderId, amount));

    public static EventData Shipped(string orderId) => Serializer().ToEventData(new OrderShipped(orderId));

    public static EventData Cancelled(string orderId) => Serializer().ToEventData(new OrderCancelled(orderId));

    public static EventData Noted(string orderId) => Serializer().ToEventData(new OrderNoted(orderId, "note"));
}

/// <summary>
/// Order summaries by id, indexed by customer, total, status and priority. <see cref="FailWhen"/> makes the handler of
/// <see cref="OrderPlaced"/> throw for chosen orders; <see cref="Bonus"/> changes the fold, to tell versions apart.
/// </summary>
public sealed class OrderSummaries : Projection
{
    public OrderSummaries(string name = "order-summaries", bool indexPriority = true)
        : base(name)
    {
        var documents = Document<OrderSummary>(o => o.Id)
            .Index("customer", o => o.Customer)
            .Index("total", o => o.Total)
            .Index("status", o => o.Status);
        if (indexPriority)
        {
            documents.Index("priority", o => o.Priority);
        }

        On<OrderPlaced>((ctx, e) =>
        {
            if (FailWhen?.Invoke(e) == true)
            {
                throw new InvalidOperationException($"Refusing order {e.OrderId}.");
            }

            ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total + Bonus, "placed", 0, Priority: e.Total > 100 ? 1 : null));
        });
        On<OrderLineAdded>((ctx, e) =>
        {
            var order = ctx.Documents.Load<OrderSummary>(e.OrderId) ?? throw new InvalidOperationException($"No order {e.OrderId}.");
            ctx.Documents.Store(order with { Total = order.Total + e.Amount, Lines = order.Lines + 1 });
        });
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

    public Func<OrderPlaced, bool>? FailWhen { get; set; }

    public decimal Bonus { get; init; }
}

/// <summary>Counts every event it applies in one document, so a double or missed application shows.</summary>
public sealed class EventTally : Projection
{
    public EventTally(string name = "tally")
        : base(name)
    {
        Document<Tally>(t => t.Id);
        On<OrderPlaced>((ctx, _) => Count(ctx));
        On<OrderLineAdded>((ctx, _) => Count(ctx));
        On<OrderShipped>((ctx, _) => Count(ctx));
    }

    private static void Count(IProjectionContext ctx)
    {
        var tally = ctx.Documents.Load<Tally>("all") ?? new Tally("all", 0, 0);
        if (ctx.Event.Position.Value <= tally.LastPosition)
        {
            throw new InvalidOperationException($"Event {ctx.Event.Position} applied twice (tally at {tally.LastPosition}).");
        }

        ctx.Documents.Store(tally with { Events = tally.Events + 1, LastPosition = ctx.Event.Position.Value });
    }
}
