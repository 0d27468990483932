using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Serialization;

namespace Cairn.Benchmarks.Checkout;

/// <summary>
/// O2: the same checkout as a choreography. No coordinator: every service publishes what it did to one topic, and each
/// service's queue subscribes (by event type) to what it reacts to. The order service owns the order's stream: placing
/// an order appends <see cref="OrderPlaced"/> and publishes it in one transaction; the inventory reserves on it; the
/// payment service charges on <see cref="StockReserved"/>; shipping arranges on <see cref="PaymentCharged"/>; the order
/// service appends <see cref="OrderCompleted"/> on <see cref="ShippingArranged"/>. A declined payment makes the
/// inventory release the stock, and the release makes the order service cancel the order. Each event carries what the
/// next service needs (the amount, the sku), so no service reads another's state.
/// </summary>
internal sealed class Choreography(InFlight flight)
{
    public static readonly TopicName Topic = "o2-checkout";
    public static readonly QueueName Inventory = "o2-inventory";
    public static readonly QueueName Payments = "o2-payments";
    public static readonly QueueName Shipping = "o2-shipping";
    public static readonly QueueName Orders = "o2-orders";

    [EventType("bench.shop.order-placed")] internal sealed record OrderPlaced(string OrderId, string Sku, int Quantity, decimal Amount);
    [EventType("bench.shop.stock-reserved")] internal sealed record StockReserved(string OrderId, string Sku, int Quantity, decimal Amount);
    [EventType("bench.shop.stock-unavailable")] internal sealed record StockUnavailable(string OrderId, string Sku);
    [EventType("bench.shop.payment-charged")] internal sealed record PaymentCharged(string OrderId, string PaymentId);
    [EventType("bench.shop.payment-declined")] internal sealed record PaymentDeclined(string OrderId, string Sku, int Quantity, string Reason);
    [EventType("bench.shop.stock-released")] internal sealed record StockReleased(string OrderId);
    [EventType("bench.shop.shipping-arranged")] internal sealed record ShippingArranged(string OrderId, string Tracking);
    [EventType("bench.shop.order-completed")] internal sealed record OrderCompleted(string OrderId, string Tracking);
    [EventType("bench.shop.order-cancelled")] internal sealed record OrderCancelled(string OrderId, string Reason);

    public static void Register(EventTypeRegistry types) =>
        types.Register<OrderPlaced>().Register<StockReserved>().Register<StockUnavailable>().Register<PaymentCharged>()
            .Register<PaymentDeclined>().Register<StockReleased>().Register<ShippingArranged>().Register<OrderCompleted>()
            .Register<OrderCancelled>();

    public void AddTo(CairnBuilder cairn, int concurrency)
    {
        cairn.AddTopic(Topic);
        Service(cairn, Inventory, concurrency, HandleInventory, "bench.shop.order-placed", "bench.shop.payment-declined");
        Service(cairn, Payments, concurrency, HandlePayments, "bench.shop.stock-reserved");
        Service(cairn, Shipping, concurrency, HandleShipping, "bench.shop.payment-charged");
        Service(cairn, Orders, concurrency, HandleOrders, "bench.shop.shipping-arranged", "bench.shop.stock-unavailable", "bench.shop.stock-released");
    }

    /// <summary>Places an order: its first event appended to its stream and published, in one transaction.</summary>
    public static Task PlaceAsync(IMessageSender sender, EventSerializer serializer, CheckoutState order)
    {
        var placed = new OrderPlaced(order.OrderId, order.Sku, order.Quantity, order.Amount);
        var transaction = new MessageTransaction()
            .Append(new AppendRequest(new StreamName(order.OrderId), ExpectedVersion.NoStream, [serializer.ToEventData(placed)]))
            .Publish(Topic, serializer.ToOutgoingMessage(placed) with { CorrelationId = order.OrderId });
        return sender.CommitAsync(transaction, CancellationToken.None);
    }

    private static void Service(CairnBuilder cairn, QueueName queue, int concurrency, Action<MessageHandlerContext> handle, params string[] types) =>
        cairn.AddQueue(queue)
            .AddTopicSubscription(Topic, queue.Value, queue, $$"""{"type":[{{string.Join(",", types.Select(t => $"\"{t}\""))}}]}""")
            .AddConsumer(queue, (context, _) =>
            {
                handle(context);
                return ValueTask.CompletedTask;
            }, o => o with { Concurrency = concurrency });

    private static void HandleInventory(MessageHandlerContext context)
    {
        switch (context.Read<object>())
        {
            case OrderPlaced o:
                context.Publish(Topic, new StockReserved(o.OrderId, o.Sku, o.Quantity, o.Amount));
                break;
            case PaymentDeclined d:
                context.Publish(Topic, new StockReleased(d.OrderId));
                break;
            default:
                throw new NonRetryableMessageException($"The inventory takes no {context.Message.Type}.");
        }
    }

    private static void HandlePayments(MessageHandlerContext context)
    {
        var reserved = context.Read<StockReserved>();
        context.Publish(Topic, reserved.Amount > CheckoutOrders.DeclineAbove
            ? new PaymentDeclined(reserved.OrderId, reserved.Sku, reserved.Quantity, "insufficient funds")
            : new PaymentCharged(reserved.OrderId, "pay-" + reserved.OrderId));
    }

    private static void HandleShipping(MessageHandlerContext context)
    {
        var charged = context.Read<PaymentCharged>();
        context.Publish(Topic, new ShippingArranged(charged.OrderId, "track-" + charged.OrderId));
    }

    private void HandleOrders(MessageHandlerContext context)
    {
        var (orderId, outcome) = context.Read<object>() switch
        {
            ShippingArranged s => (s.OrderId, (object)new OrderCompleted(s.OrderId, s.Tracking)),
            StockUnavailable u => (u.OrderId, new OrderCancelled(u.OrderId, $"out of stock: {u.Sku}")),
            StockReleased r => (r.OrderId, new OrderCancelled(r.OrderId, "payment declined")),
            _ => throw new NonRetryableMessageException($"The order service takes no {context.Message.Type}."),
        };
        context.AppendEvents(new StreamName(orderId), ExpectedVersion.StreamExists, outcome);
        context.OnCommitted(() => flight.Finished(outcome is OrderCompleted));
    }
}
