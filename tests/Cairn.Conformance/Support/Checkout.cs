using System.Collections.Concurrent;
using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Projections;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Conformance.Support;

// The order checkout of the worked example: reserve stock, charge the payment, arrange shipping; a failure releases
// what was done, in reverse.
[EventType("checkout.requested")] public sealed record CheckoutRequested(string OrderId, string Sku, int Quantity, decimal Amount);
[EventType("inventory.reserve-stock")] public sealed record ReserveStock(string OrderId, string Sku, int Quantity);
[EventType("inventory.release-stock")] public sealed record ReleaseStock(string OrderId, string Sku, int Quantity);
[EventType("inventory.stock-reserved")] public sealed record StockReserved(string OrderId);
[EventType("inventory.stock-released")] public sealed record StockReleased(string OrderId);
[EventType("inventory.stock-unavailable")] public sealed record StockUnavailable(string OrderId, string Sku);
[EventType("payments.charge")] public sealed record ChargePayment(string OrderId, decimal Amount);
[EventType("payments.refund")] public sealed record RefundPayment(string OrderId, string? PaymentId);
[EventType("payments.charged")] public sealed record PaymentCharged(string OrderId, string PaymentId);
[EventType("payments.declined")] public sealed record PaymentDeclined(string OrderId, string Reason);
[EventType("payments.refunded")] public sealed record PaymentRefunded(string OrderId);
[EventType("shipping.arrange")] public sealed record ArrangeShipping(string OrderId);
[EventType("shipping.cancel")] public sealed record CancelShipment(string OrderId);
[EventType("shipping.arranged")] public sealed record ShippingArranged(string OrderId, string Tracking);
[EventType("shipping.refused")] public sealed record ShippingRefused(string OrderId, string Reason);

/// <summary>The checkout workflow's state.</summary>
public sealed record CheckoutState(string OrderId, string Sku, int Quantity, decimal Amount, string? PaymentId = null, string? Tracking = null);

/// <summary>The checkout as an orchestrated workflow; the knobs make the fault cases.</summary>
public sealed class CheckoutWorkflow : Workflow<CheckoutState>
{
    public static readonly QueueName Inventory = "inventory";
    public static readonly QueueName Payments = "payments";
    public static readonly QueueName Shipping = "shipping";

    public CheckoutWorkflow(
        string name = "checkout",
        TimeSpan? shippingTimeout = null,
        int shippingAttempts = 1,
        StepFailureAction shippingFailure = StepFailureAction.Compensate,
        bool confirmStockRelease = false,
        int releaseAttempts = 5,
        TimeSpan? releaseTimeout = null,
        bool shippingCorrelatedByOrder = false)
        : base(name)
    {
        StartWhen<CheckoutRequested>(r => new CheckoutState(r.OrderId, r.Sku, r.Quantity, r.Amount), r => r.OrderId);
        if (shippingCorrelatedByOrder)
        {
            // A carrier that knows the order but not the workflow's correlation id.
            CorrelateBy<ShippingArranged>(r => r.OrderId);
        }

        var reserve = Step("reserve-stock")
            .Send(Inventory, s => new ReserveStock(s.OrderId, s.Sku, s.Quantity))
            .On<StockReserved>().Then("charge-payment")
            .On<StockUnavailable>().Fail(r => $"out of stock: {r.Sku}")
            .CompensateWith(Inventory, s => new ReleaseStock(s.OrderId, s.Sku, s.Quantity));
        if (confirmStockRelease)
        {
            reserve.ConfirmCompensationBy<StockReleased>(releaseTimeout ?? TimeSpan.FromMilliseconds(200), releaseAttempts);
        }

        Step("charge-payment")
            .Send(Payments, s => new ChargePayment(s.OrderId, s.Amount))
            .On<PaymentCharged>((s, r) => s with { PaymentId = r.PaymentId }).Then("arrange-shipping")
            .On<PaymentDeclined>().Fail(r => $"payment declined: {r.Reason}")
            .CompensateWith(Payments, s => new RefundPayment(s.OrderId, s.PaymentId));

        var ship = Step("arrange-shipping")
            .Send(Shipping, s => new ArrangeShipping(s.OrderId))
            .On<ShippingArranged>((s, r) => s with { Tracking = r.Tracking }).Complete()
            .On<ShippingRefused>().Fail(r => $"shipping refused: {r.Reason}")
            .Retry(shippingAttempts, TimeSpan.FromMilliseconds(20))
            .OnFailure(shippingFailure)
            .CompensateWith(Shipping, s => new CancelShipment(s.OrderId));
        if (shippingTimeout is { } timeout)
        {
            ship.Timeout(timeout);
        }
    }

    public static void Register(EventTypeRegistry types) =>
        types.Register<CheckoutRequested>().Register<ReserveStock>().Register<ReleaseStock>().Register<StockReserved>()
            .Register<StockReleased>().Register<StockUnavailable>().Register<ChargePayment>().Register<RefundPayment>()
            .Register<PaymentCharged>().Register<PaymentDeclined>().Register<PaymentRefunded>().Register<ArrangeShipping>()
            .Register<CancelShipment>().Register<ShippingArranged>().Register<ShippingRefused>();
}

/// <summary>
/// The inventory, payment and shipping services the checkout talks to, as consumers. Each does its work once per
/// idempotency key and answers every attempt; what it did is recorded for the tests.
/// </summary>
public sealed class CheckoutServices
{
    /// <summary>Every effect done, in order: "reserve:order-1", "refund:order-1" and so on.</summary>
    public ConcurrentQueue<string> Effects { get; } = new();

    /// <summary>Commands received, attempts included.</summary>
    public ConcurrentQueue<string> Received { get; } = new();

    private readonly ConcurrentDictionary<string, bool> _done = new();

    /// <summary>Payments above this are declined.</summary>
    public decimal DeclineAbove { get; set; } = decimal.MaxValue;

    /// <summary>When false, shipping takes its commands but never answers.</summary>
    public bool ShippingAnswers { get; set; } = true;

    /// <summary>When true, shipping refuses to ship (a failure reply).</summary>
    public bool ShippingRefuses { get; set; }

    /// <summary>When false, the inventory does not confirm releases.</summary>
    public bool ConfirmReleases { get; set; } = true;

    /// <summary>Skus out of stock.</summary>
    public HashSet<string> OutOfStock { get; } = [];

    public void AddTo(CairnBuilder cairn)
    {
        cairn.AddQueue(CheckoutWorkflow.Inventory).AddQueue(CheckoutWorkflow.Payments).AddQueue(CheckoutWorkflow.Shipping)
            .AddConsumer(CheckoutWorkflow.Inventory, Inventory, o => o with { Concurrency = 2 })
            .AddConsumer(CheckoutWorkflow.Payments, Payments, o => o with { Concurrency = 2 })
            .AddConsumer(CheckoutWorkflow.Shipping, Shipping, o => o with { Concurrency = 2 });
    }

    public IReadOnlyList<string> EffectsOf(string orderId) => [.. Effects.Where(e => e.EndsWith(":" + orderId, StringComparison.Ordinal))];

    private void Once(MessageHandlerContext context, string effect)
    {
        Received.Enqueue(effect);
        if (_done.TryAdd(context.Message.IdempotencyKey() ?? context.Message.Id.ToString(), true))
        {
            Effects.Enqueue(effect);
        }
    }

    private ValueTask Inventory(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ReserveStock r when OutOfStock.Contains(r.Sku):
                context.Reply(new StockUnavailable(r.OrderId, r.Sku));
                break;
            case ReserveStock r:
                Once(context, "reserve:" + r.OrderId);
                context.Reply(new StockReserved(r.OrderId));
                break;
            case ReleaseStock r:
                Once(context, "release:" + r.OrderId);
                if (ConfirmReleases)
                {
                    context.Reply(new StockReleased(r.OrderId));
                }

                break;
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask Payments(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ChargePayment c when c.Amount > DeclineAbove:
                context.Reply(new PaymentDeclined(c.OrderId, "insufficient funds"));
                break;
            case ChargePayment c:
                Once(context, "charge:" + c.OrderId);
                context.Reply(new PaymentCharged(c.OrderId, "pay-" + c.OrderId));
                break;
            case RefundPayment r:
                Once(context, "refund:" + r.OrderId);
                break;
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask Shipping(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ArrangeShipping a when ShippingRefuses:
                Received.Enqueue("ship:" + a.OrderId);
                context.Reply(new ShippingRefused(a.OrderId, "no courier"));
                break;
            case ArrangeShipping a:
                Once(context, "ship:" + a.OrderId);
                if (ShippingAnswers)
                {
                    context.Reply(new ShippingArranged(a.OrderId, "track-" + a.OrderId));
                }

                break;
            case CancelShipment c:
                Once(context, "cancel-shipment:" + c.OrderId);
                break;
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>A Cairn host over a conformance backend, started without a generic host: its hosted services run in order.</summary>
public sealed class CairnTestHost : IAsyncDisposable
{
    private readonly ServiceProvider _provider;
    private readonly List<IHostedService> _started = [];

    private CairnTestHost(ServiceProvider provider) => _provider = provider;

    public IServiceProvider Services => _provider;

    public WorkflowClient Workflows => _provider.GetRequiredService<WorkflowClient>();

    public static async Task<CairnTestHost> StartAsync(StoreUnderTest sut, Action<CairnOptions> options, Action<CairnBuilder> configure)
    {
        var services = new ServiceCollection();
        var cairn = services.AddCairn(o =>
        {
            o.UseBackend("conformance", (_, _) => sut.Store, _ => sut.Checkpoints, _ => sut.Broker)
                .UseBackendPart<IProjectionStore>(_ => sut.Projections)
                .UseBackendPart<Cairn.Schemas.ISchemaStore>(_ => new Cairn.Schemas.InMemorySchemaStore());
            options(o);
        });
        configure(cairn);
        var host = new CairnTestHost(services.BuildServiceProvider());
        foreach (var hosted in host._provider.GetServices<IHostedService>())
        {
            await hosted.StartAsync(CancellationToken.None);
            host._started.Add(hosted);
        }

        return host;
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _started.Count - 1; i >= 0; i--)
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _started[i].StopAsync(stop.Token);
        }

        await _provider.DisposeAsync();
    }
}

// The same checkout as a choreography: no coordinator; each service reacts to the previous one's event.
[EventType("shop.order-placed")] public sealed record OrderPlacedForCheckout(string OrderId, string Sku, int Quantity, decimal Amount);
[EventType("shop.order-completed")] public sealed record CheckoutCompleted(string OrderId);
[EventType("shop.order-cancelled")] public sealed record CheckoutCancelled(string OrderId, string Reason);

/// <summary>
/// The checkout as a choreography over one topic: inventory reacts to an order placed (and to a declined payment),
/// payments to reserved stock, shipping to a charged payment, and the orders service to the end of either path.
/// </summary>
public sealed class CheckoutChoreography
{
    public static readonly TopicName Shop = "shop";

    public decimal DeclineAbove { get; set; } = decimal.MaxValue;

    public ConcurrentQueue<string> Effects { get; } = new();

    public static void Register(EventTypeRegistry types)
    {
        CheckoutWorkflow.Register(types);
        types.Register<OrderPlacedForCheckout>().Register<CheckoutCompleted>().Register<CheckoutCancelled>();
    }

    public void AddTo(CairnBuilder cairn)
    {
        cairn.AddTopic(Shop)
            .AddQueue("c-inventory").AddQueue("c-payments").AddQueue("c-shipping").AddQueue("c-orders")
            .AddTopicSubscription(Shop, "inventory", "c-inventory", """{"type":["shop.order-placed","payments.declined"]}""")
            .AddTopicSubscription(Shop, "payments", "c-payments", """{"type":["inventory.stock-reserved"]}""")
            .AddTopicSubscription(Shop, "shipping", "c-shipping", """{"type":["payments.charged"]}""")
            .AddTopicSubscription(Shop, "orders", "c-orders", """{"type":["shipping.arranged","inventory.stock-released"]}""")
            .AddConsumer("c-inventory", Inventory)
            .AddConsumer("c-payments", Payments)
            .AddConsumer("c-shipping", Shipping)
            .AddConsumer("c-orders", Orders);
    }

    private ValueTask Inventory(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case OrderPlacedForCheckout o:
                Effects.Enqueue("reserve:" + o.OrderId);
                context.Publish(Shop, new StockReserved(o.OrderId));
                break;
            case PaymentDeclined d:
                Effects.Enqueue("release:" + d.OrderId);
                context.Publish(Shop, new StockReleased(d.OrderId));
                break;
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask Payments(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var reserved = context.Read<StockReserved>();
        // The amount travels in the order's stream in a real shop; here the order id carries it.
        var amount = decimal.Parse(reserved.OrderId.Split('-')[^1], System.Globalization.CultureInfo.InvariantCulture);
        if (amount > DeclineAbove)
        {
            context.Publish(Shop, new PaymentDeclined(reserved.OrderId, "insufficient funds"));
        }
        else
        {
            Effects.Enqueue("charge:" + reserved.OrderId);
            context.Publish(Shop, new PaymentCharged(reserved.OrderId, "pay-" + reserved.OrderId));
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask Shipping(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var charged = context.Read<PaymentCharged>();
        Effects.Enqueue("ship:" + charged.OrderId);
        context.Publish(Shop, new ShippingArranged(charged.OrderId, "track-" + charged.OrderId));
        return ValueTask.CompletedTask;
    }

    private ValueTask Orders(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ShippingArranged s:
                context.AppendEvents("order-" + s.OrderId, Cairn.EventStore.ExpectedVersion.Any, new CheckoutCompleted(s.OrderId));
                break;
            case StockReleased r:
                context.AppendEvents("order-" + r.OrderId, Cairn.EventStore.ExpectedVersion.Any, new CheckoutCancelled(r.OrderId, "payment declined"));
                break;
        }

        return ValueTask.CompletedTask;
    }
}
