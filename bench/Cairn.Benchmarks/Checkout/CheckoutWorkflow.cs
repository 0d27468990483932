using Cairn.Messaging;
using Cairn.Workflows;

namespace Cairn.Benchmarks.Checkout;

/// <summary>The checkout as a durable workflow, as the worked example defines it (no timeouts: nothing is lost here).</summary>
internal sealed class CheckoutWorkflow : Workflow<CheckoutState>
{
    public const string WorkflowName = "o1checkout";

    public static readonly QueueName Inventory = "o1-inventory";
    public static readonly QueueName Payments = "o1-payments";
    public static readonly QueueName Shipping = "o1-shipping";

    public CheckoutWorkflow(int concurrency)
        : base(WorkflowName)
    {
        Concurrency = concurrency;
        Step("reserve-stock")
            .Send(Inventory, s => new ReserveStock(s.OrderId, s.Sku, s.Quantity))
            .On<StockReserved>().Then("charge-payment")
            .On<StockUnavailable>().Fail(r => $"out of stock: {r.Sku}")
            .CompensateWith(Inventory, s => new ReleaseStock(s.OrderId, s.Sku, s.Quantity));
        Step("charge-payment")
            .Send(Payments, s => new ChargePayment(s.OrderId, s.Amount))
            .On<PaymentCharged>((s, r) => s with { PaymentId = r.PaymentId }).Then("arrange-shipping")
            .On<PaymentDeclined>().Fail(r => $"payment declined: {r.Reason}")
            .CompensateWith(Payments, s => new RefundPayment(s.OrderId, s.PaymentId));
        Step("arrange-shipping")
            .Send(Shipping, s => new ArrangeShipping(s.OrderId))
            .On<ShippingArranged>((s, r) => s with { Tracking = r.Tracking }).Complete()
            .CompensateWith(Shipping, s => new CancelShipment(s.OrderId));
    }
}
