using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Checkout;

/// <summary>The workflow's state: the order, and what the steps' replies told it.</summary>
public sealed record CheckoutState(Order Order, string? PaymentId = null, string? Tracking = null);

/// <summary>
/// The checkout as an orchestrated workflow: the whole flow, its failure path and its undo steps, in one place. The
/// services know nothing of each other; each carries out the command it is sent and replies.
/// </summary>
public sealed class CheckoutWorkflow : Workflow<CheckoutState>
{
    public const string WorkflowName = "checkout";
    public static readonly QueueName Inventory = "inventory";
    public static readonly QueueName Payments = "payments";
    public static readonly QueueName Shipping = "shipping";

    public CheckoutWorkflow()
        : base(WorkflowName)
    {
        Step("reserve-stock")
            .Send(Inventory, s => new ReserveStock(s.Order))
            .On<StockReserved>().Then("charge-payment")
            .On<StockUnavailable>().Fail(r => "out of stock: " + r.Reason)
            .Timeout(TimeSpan.FromSeconds(30)).Retry(3)
            .CompensateWith(Inventory, s => new ReleaseStock(s.Order))
            .ConfirmCompensationBy<StockReleased>();
        Step("charge-payment")
            .Send(Payments, s => new ChargePayment(s.Order))
            .On<PaymentCharged>((s, r) => s with { PaymentId = r.PaymentId }).Then("arrange-shipping")
            .On<PaymentDeclined>().Fail(r => "payment declined: " + r.Reason)
            .Timeout(TimeSpan.FromSeconds(30))
            .CompensateWith(Payments, s => new RefundPayment(s.Order, s.PaymentId));
        Step("arrange-shipping")
            .Send(Shipping, s => new ArrangeShipping(s.Order))
            .On<ShippingArranged>((s, r) => s with { Tracking = r.Tracking }).Complete()
            .Timeout(TimeSpan.FromSeconds(30)).Retry(3, TimeSpan.FromSeconds(5))
            .CompensateWith(Shipping, s => new CancelShipment(s.Order));
    }
}

/// <summary>The services as the workflow sees them: a queue each, taking commands and answering with <c>context.Reply</c>.</summary>
public static class Orchestration
{
    public static CairnBuilder AddCheckoutWorkflow(this CairnBuilder cairn) => cairn
        .AddWorkflow(new CheckoutWorkflow())
        .AddQueue(CheckoutWorkflow.Inventory).AddConsumer(CheckoutWorkflow.Inventory, InventoryAsync)
        .AddQueue(CheckoutWorkflow.Payments).AddConsumer(CheckoutWorkflow.Payments, PaymentsAsync)
        .AddQueue(CheckoutWorkflow.Shipping).AddConsumer(CheckoutWorkflow.Shipping, ShippingAsync);

    private static ValueTask InventoryAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var inventory = context.Services.GetRequiredService<Inventory>();
        switch (context.Read<object>())
        {
            case ReserveStock reserve:
                context.Reply(inventory.Reserve(reserve.Order, out var unavailable) ? new StockReserved(reserve.Order) : new StockUnavailable(reserve.Order, unavailable!));
                break;
            case ReleaseStock release:
                inventory.Release(release.Order);
                context.Reply(new StockReleased(release.Order));
                break;
        }

        return ValueTask.CompletedTask;
    }

    private static ValueTask PaymentsAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var payments = context.Services.GetRequiredService<Payments>();
        switch (context.Read<object>())
        {
            case ChargePayment charge:
                var paymentId = payments.Charge(charge.Order, out var declined);
                context.Reply(paymentId is not null ? new PaymentCharged(charge.Order, paymentId) : new PaymentDeclined(charge.Order, declined!));
                break;
            case RefundPayment refund:
                payments.Refund(refund.Order);
                break;
        }

        return ValueTask.CompletedTask;
    }

    private static ValueTask ShippingAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var shipping = context.Services.GetRequiredService<Shipping>();
        switch (context.Read<object>())
        {
            case ArrangeShipping arrange:
                // A shipment already cancelled (this command arrived after its undo): the instance is over, no reply.
                if (shipping.Arrange(arrange.Order) is { } tracking)
                {
                    context.Reply(new ShippingArranged(arrange.Order, tracking));
                }

                break;
            case CancelShipment cancel:
                shipping.Cancel(cancel.Order);
                break;
        }

        return ValueTask.CompletedTask;
    }
}
