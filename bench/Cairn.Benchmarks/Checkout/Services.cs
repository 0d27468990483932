using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Workflows;

namespace Cairn.Benchmarks.Checkout;

/// <summary>
/// The inventory, payment and shipping services a coordinator talks to (the workflow or the hand-written one): each a
/// consumer of its queue that answers a command with <see cref="WorkflowReplies.Reply"/>, to the queue the command
/// names. Their work is nothing but the answer; the inbox makes a repeat harmless.
/// </summary>
internal static class CheckoutServices
{
    public static void AddTo(CairnBuilder cairn, int concurrency)
    {
        foreach (var queue in new[] { CheckoutWorkflow.Inventory, CheckoutWorkflow.Payments, CheckoutWorkflow.Shipping })
        {
            cairn.AddQueue(queue).AddConsumer(queue, HandleAsync, o => o with { Concurrency = concurrency });
        }
    }

    private static ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ReserveStock r:
                context.Reply(new StockReserved(r.OrderId));
                break;
            case ChargePayment c when c.Amount > CheckoutOrders.DeclineAbove:
                context.Reply(new PaymentDeclined(c.OrderId, "insufficient funds"));
                break;
            case ChargePayment c:
                context.Reply(new PaymentCharged(c.OrderId, "pay-" + c.OrderId));
                break;
            case ArrangeShipping a:
                context.Reply(new ShippingArranged(a.OrderId, "track-" + a.OrderId));
                break;
            case ReleaseStock or RefundPayment or CancelShipment:
                // Compensations: done, nothing to answer (the workflow does not wait for a confirmation).
                break;
            default:
                throw new NonRetryableMessageException($"The checkout services take no {context.Message.Type}.");
        }

        return ValueTask.CompletedTask;
    }
}
