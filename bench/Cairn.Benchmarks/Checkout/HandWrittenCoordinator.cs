using System.Collections.Concurrent;
using System.Diagnostics;
using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Serialization;

namespace Cairn.Benchmarks.Checkout;

/// <summary>
/// O1's baseline: the same three request/reply hops to the same services over the same broker, coordinated by hand
/// with no event-sourced history. A consumer of its own queue takes each reply and sends the next command in the same
/// transaction as the reply's acknowledgement and inbox record (so the messaging is as durable as the workflow's), but
/// it keeps each order's state and step in a dictionary in memory: nothing is appended, no stream is read, and a
/// crash would lose every order in flight. The difference to the workflow is what the durable history costs.
/// </summary>
internal sealed class HandWrittenCoordinator(InFlight flight)
{
    public static readonly QueueName Queue = "o1-coordinator";

    // The attributes the workflow's commands carry (WorkflowDecider's), so the services answer both alike.
    private static readonly Dictionary<string, string> ReplyTo = new(StringComparer.Ordinal) { ["replyto"] = Queue.Value };

    private readonly ConcurrentDictionary<string, Order> _orders = new(StringComparer.Ordinal);

    public void AddTo(CairnBuilder cairn, int concurrency) =>
        cairn.AddQueue(Queue).AddConsumer(Queue, HandleAsync, o => o with { Concurrency = concurrency });

    /// <summary>Starts an order: its state in memory, its first command sent.</summary>
    public Task StartAsync(IMessageSender sender, EventSerializer serializer, CheckoutState state)
    {
        var order = new Order(state) { StepStarted = Stopwatch.GetTimestamp() };
        _orders[state.OrderId] = order;
        return sender.SendAsync(CheckoutWorkflow.Inventory, Command(serializer, state.OrderId, "reserve-stock", new ReserveStock(state.OrderId, state.Sku, state.Quantity)));
    }

    private ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var reply = context.Read<object>();
        var decided = Stopwatch.GetTimestamp();
        var serializer = Serializer(context);
        switch (reply)
        {
            case StockReserved r:
                Next(context, r.OrderId, decided, o => (CheckoutWorkflow.Payments, "charge-payment", new ChargePayment(o.OrderId, o.Amount)), serializer);
                break;
            case PaymentCharged p:
                Next(context, p.OrderId, decided, o => (CheckoutWorkflow.Shipping, "arrange-shipping", new ArrangeShipping(o.OrderId)), serializer, s => s with { PaymentId = p.PaymentId });
                break;
            case ShippingArranged s:
                End(context, s.OrderId, decided, completed: true);
                break;
            case StockUnavailable u:
                End(context, u.OrderId, decided, completed: false);
                break;
            case PaymentDeclined d:
                // Compensate the one completed step with an effect: release the stock.
                var state = Get(d.OrderId).State;
                context.Send(CheckoutWorkflow.Inventory, Command(serializer, d.OrderId, "compensate/reserve-stock", new ReleaseStock(state.OrderId, state.Sku, state.Quantity)));
                End(context, d.OrderId, decided, completed: false);
                break;
            default:
                throw new NonRetryableMessageException($"The hand-written coordinator takes no {context.Message.Type}.");
        }

        return ValueTask.CompletedTask;
    }

    private void Next(MessageHandlerContext context, string orderId, long decided, Func<CheckoutState, (QueueName Queue, string Step, object Command)> next, EventSerializer serializer, Func<CheckoutState, CheckoutState>? evolve = null)
    {
        var order = Get(orderId);
        var state = evolve is null ? order.State : evolve(order.State);
        var (queue, step, command) = next(state);
        context.Send(queue, Command(serializer, orderId, step, command));
        context.OnCommitted(() =>
        {
            flight.StepTook(Milliseconds(decided - order.StepStarted));
            order.State = state;
            order.StepStarted = decided;
        });
    }

    private void End(MessageHandlerContext context, string orderId, long decided, bool completed)
    {
        var order = Get(orderId);
        context.OnCommitted(() =>
        {
            if (_orders.TryRemove(orderId, out _))
            {
                if (completed)
                {
                    flight.StepTook(Milliseconds(decided - order.StepStarted));
                }

                flight.Finished(completed);
            }
        });
    }

    private Order Get(string orderId) =>
        _orders.TryGetValue(orderId, out var order) ? order : throw new NonRetryableMessageException($"No order {orderId} is in flight.");

    private static OutgoingMessage Command(EventSerializer serializer, string orderId, string step, object command) =>
        serializer.ToOutgoingMessage(command) with
        {
            CorrelationId = orderId,
            Metadata = new Dictionary<string, string>(ReplyTo, StringComparer.Ordinal) { ["idempotencykey"] = $"{orderId}/{step}" },
        };

    private static EventSerializer Serializer(MessageHandlerContext context) =>
        (EventSerializer)context.Services.GetService(typeof(EventSerializer))!;

    private static double Milliseconds(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private sealed class Order(CheckoutState state)
    {
        public CheckoutState State { get; set; } = state;

        public long StepStarted { get; set; }
    }
}
