using Cairn.Serialization;

namespace Cairn.Benchmarks.Checkout;

// The checkout of the worked example (docs/workflows.md), the bench's own copy: reserve stock, charge the payment,
// arrange shipping; a declined payment releases the stock.
[EventType("bench.inventory.reserve-stock")] internal sealed record ReserveStock(string OrderId, string Sku, int Quantity);
[EventType("bench.inventory.release-stock")] internal sealed record ReleaseStock(string OrderId, string Sku, int Quantity);
[EventType("bench.inventory.stock-reserved")] internal sealed record StockReserved(string OrderId);
[EventType("bench.inventory.stock-unavailable")] internal sealed record StockUnavailable(string OrderId, string Sku);
[EventType("bench.payments.charge")] internal sealed record ChargePayment(string OrderId, decimal Amount);
[EventType("bench.payments.refund")] internal sealed record RefundPayment(string OrderId, string? PaymentId);
[EventType("bench.payments.charged")] internal sealed record PaymentCharged(string OrderId, string PaymentId);
[EventType("bench.payments.declined")] internal sealed record PaymentDeclined(string OrderId, string Reason);
[EventType("bench.shipping.arrange")] internal sealed record ArrangeShipping(string OrderId);
[EventType("bench.shipping.cancel")] internal sealed record CancelShipment(string OrderId);
[EventType("bench.shipping.arranged")] internal sealed record ShippingArranged(string OrderId, string Tracking);

/// <summary>The checkout's state: what the workflow keeps in its history, and the hand-written coordinator in memory.</summary>
internal sealed record CheckoutState(string OrderId, string Sku, int Quantity, decimal Amount, string? PaymentId = null, string? Tracking = null);

/// <summary>What every side of O1 and O2 shares: the orders, and which of them the payment service declines.</summary>
internal static class CheckoutOrders
{
    /// <summary>Payments above this are declined.</summary>
    public const decimal DeclineAbove = 1_000m;

    /// <summary>
    /// Order <paramref name="n"/>: order 0 (in the warm-up) is declined, so every round also runs the failure path
    /// once and checks it; the others go through.
    /// </summary>
    public static CheckoutState Order(long n) =>
        new($"order-{n}", $"sku-{n % 1_000}", 1 + (int)(n % 3), n == 0 ? 5_000m : 10m + (n % 50));

    public static void Register(EventTypeRegistry types) =>
        types.Register<ReserveStock>().Register<ReleaseStock>().Register<StockReserved>().Register<StockUnavailable>()
            .Register<ChargePayment>().Register<RefundPayment>().Register<PaymentCharged>().Register<PaymentDeclined>()
            .Register<ArrangeShipping>().Register<CancelShipment>().Register<ShippingArranged>();
}
