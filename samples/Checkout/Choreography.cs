using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Microsoft.Extensions.DependencyInjection;

namespace Checkout;

/// <summary>
/// The checkout as a choreography: no one is in charge. Each service listens for the facts it cares about on the topic
/// "shop" and publishes what it did; the flow is the sum of the subscriptions' rules below.
/// </summary>
public static class Choreography
{
    public static readonly TopicName Shop = "shop";

    public static CairnBuilder AddCheckoutChoreography(this CairnBuilder cairn) => cairn
        .AddTopic(Shop)
        // The orders service appends to its order streams; the route publishes them (the log is the outbox).
        .AddEventRoute("orders-out", EventFilter.ForCategory("order"), Shop)
        .AddService("inventory", ["order.placed", "payment.declined"], InventoryAsync)
        .AddService("payments", ["stock.reserved"], PaymentsAsync)
        .AddService("shipping", ["payment.charged"], ShippingAsync)
        .AddService("orders", ["shipping.arranged", "payment.declined", "stock.unavailable"], OrdersAsync);

    // order.placed → reserve → stock.reserved or stock.unavailable; payment.declined → release → stock.released
    private static ValueTask InventoryAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var inventory = context.Services.GetRequiredService<Inventory>();
        switch (context.Read<object>())
        {
            case OrderPlaced placed:
                context.Publish(Shop, inventory.Reserve(placed.Order, out var unavailable) ? new StockReserved(placed.Order) : new StockUnavailable(placed.Order, unavailable!));
                break;
            case PaymentDeclined declined:
                inventory.Release(declined.Order);
                context.Publish(Shop, new StockReleased(declined.Order));
                break;
        }

        return ValueTask.CompletedTask;
    }

    // stock.reserved → charge → payment.charged or payment.declined
    private static ValueTask PaymentsAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var order = context.Read<StockReserved>().Order;
        var paymentId = context.Services.GetRequiredService<Payments>().Charge(order, out var declined);
        context.Publish(Shop, paymentId is not null ? new PaymentCharged(order, paymentId) : new PaymentDeclined(order, declined!));
        return ValueTask.CompletedTask;
    }

    // payment.charged → ship → shipping.arranged
    private static ValueTask ShippingAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var order = context.Read<PaymentCharged>().Order;
        context.Publish(Shop, new ShippingArranged(order, context.Services.GetRequiredService<Shipping>().Arrange(order)!)); // never cancelled here
        return ValueTask.CompletedTask;
    }

    // shipping.arranged → order.completed; payment.declined or stock.unavailable → order.cancelled
    private static ValueTask OrdersAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ShippingArranged shipped:
                context.AppendEvents(OrderStream(shipped.Order.Id), ExpectedVersion.StreamExists, new OrderCompleted(shipped.Order.Id, shipped.Tracking));
                break;
            case PaymentDeclined declined:
                context.AppendEvents(OrderStream(declined.Order.Id), ExpectedVersion.StreamExists, new OrderCancelled(declined.Order.Id, "payment declined: " + declined.Reason));
                break;
            case StockUnavailable unavailable:
                context.AppendEvents(OrderStream(unavailable.Order.Id), ExpectedVersion.StreamExists, new OrderCancelled(unavailable.Order.Id, "out of stock: " + unavailable.Reason));
                break;
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>The orders service's stream of one order.</summary>
    public static StreamName OrderStream(string orderId) => StreamName.For("order", orderId);

    /// <summary>A service: its queue, subscribed to the topic for the event types it reacts to, and its consumer.</summary>
    private static CairnBuilder AddService(this CairnBuilder cairn, string name, string[] reactsTo, Func<MessageHandlerContext, CancellationToken, ValueTask> handler) => cairn
        .AddQueue(name)
        .AddTopicSubscription(Shop, name, name, $$"""{"type": [{{string.Join(", ", reactsTo.Select(t => $"\"{t}\""))}}]}""")
        .AddConsumer(name, handler);
}
