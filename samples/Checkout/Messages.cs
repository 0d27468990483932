using Cairn.Serialization;

namespace Checkout;

/// <summary>What the customer asked for.</summary>
public sealed record Order(string Id, string Sku, int Quantity, decimal Amount);

// The facts. In the choreography each service publishes them to every service that listens; in the workflow a service
// sends them back as its reply to the one command it was asked to carry out. Same records, delivered differently.
[EventType("order.placed")] public sealed record OrderPlaced(Order Order);
[EventType("stock.reserved")] public sealed record StockReserved(Order Order);
[EventType("stock.released")] public sealed record StockReleased(Order Order);
[EventType("stock.unavailable")] public sealed record StockUnavailable(Order Order, string Reason);
[EventType("payment.charged")] public sealed record PaymentCharged(Order Order, string PaymentId);
[EventType("payment.declined")] public sealed record PaymentDeclined(Order Order, string Reason);
[EventType("shipping.arranged")] public sealed record ShippingArranged(Order Order, string Tracking);
[EventType("order.completed")] public sealed record OrderCompleted(string OrderId, string Tracking);
[EventType("order.cancelled")] public sealed record OrderCancelled(string OrderId, string Reason);

// The commands: only the workflow has them. It tells each service what to do, and how to undo it.
[EventType("inventory.reserve")] public sealed record ReserveStock(Order Order);
[EventType("inventory.release")] public sealed record ReleaseStock(Order Order);
[EventType("payments.charge")] public sealed record ChargePayment(Order Order);
[EventType("payments.refund")] public sealed record RefundPayment(Order Order, string? PaymentId);
[EventType("shipping.arrange")] public sealed record ArrangeShipping(Order Order);
[EventType("shipping.cancel")] public sealed record CancelShipment(Order Order);
