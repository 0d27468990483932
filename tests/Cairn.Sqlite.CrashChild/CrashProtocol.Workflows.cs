using System.Globalization;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Sqlite.CrashChild;

/// <summary>What an order of the crash checkouts is set up to meet on its way.</summary>
public enum CheckoutCase
{
    /// <summary>Every service answers at once: completed.</summary>
    Ok,

    /// <summary>
    /// Shipping arranges the shipment on the first attempt but answers only a retry: completed after a timeout (or, when
    /// kills use up every attempt before a retry's reply is taken, failed as <see cref="Never"/>).
    /// </summary>
    Late,

    /// <summary>The payment is declined: the stock is released, and the checkout fails.</summary>
    Declined,

    /// <summary>Shipping never answers: every attempt times out, then all three steps are undone in reverse, and the checkout fails.</summary>
    Never,

    /// <summary>The stock is unavailable: the checkout fails with nothing to undo.</summary>
    NoStock,
}

/// <summary>
/// The workflow side of the crash child: the checkout of the worked example hosted on one SQLite file with its three
/// services, each recording its effects durably, and the lines printed about them. An effect is an event in the stream
/// <c>effect-&lt;kind&gt;-&lt;order&gt;</c>, appended through the handler's transaction after the service looked for
/// the command's idempotency key there; a second effect for one order, under any key, would show as a second event.
/// </summary>
public static partial class CrashProtocol
{
    /// <summary>Hosts the checkout workflow and its services until killed; the test starts the instances.</summary>
    public const string WorkflowMode = "workflow";

    /// <summary>The workflow's name.</summary>
    public const string Checkout = "checkout";

    /// <summary>The type of the event a service's effect leaves behind.</summary>
    public const string EffectType = "crash.effect";

    /// <summary>The category of the effect streams.</summary>
    public const string EffectCategory = "effect";

    /// <summary>The sku the inventory never has.</summary>
    public const string OutOfStockSku = "sku-none";

    /// <summary>Payments above this are declined.</summary>
    public const decimal DeclineAbove = 100m;

    /// <summary>How many times shipping is tried.</summary>
    public const int ShippingAttempts = 4;

    /// <summary>
    /// Each shipping attempt, and each attempt to release the stock, times out after this. A child killed while it
    /// handled a command answers only after the command's lease and a new process's start; on a loaded machine that
    /// took more than one attempt of 500 ms, and a few such kills could use up all four, failing an order that should
    /// complete. One second per attempt, like the lease, leaves four seconds for it.
    /// </summary>
    public static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(1);

    /// <summary>The lease of every queue: short, so what a killed child held comes back soon after the restart.</summary>
    public static readonly TimeSpan WorkflowLease = TimeSpan.FromSeconds(1);

    /// <summary>The queues of the three services.</summary>
    public static IReadOnlyList<QueueName> ServiceQueues { get; } = [CheckoutWorkflow.Inventory, CheckoutWorkflow.Payments, CheckoutWorkflow.Shipping];

    /// <summary>
    /// The checkout as the crash tests run it: shipping times out and is tried four times, and a release of the stock
    /// is done only when the inventory confirms it.
    /// </summary>
    public static CheckoutWorkflow CheckoutDefinition() => new(
        shippingTimeout: StepTimeout,
        shippingAttempts: ShippingAttempts,
        confirmStockRelease: true,
        releaseAttempts: 5,
        releaseTimeout: StepTimeout);

    /// <summary>
    /// Adds Cairn over <paramref name="store"/> and <paramref name="broker"/> with the checkout workflow and the queues
    /// of its services, every queue with a short lease. The same in the child, which adds the services and runs it, and
    /// in the test, which starts instances and reads them.
    /// </summary>
    public static CairnBuilder AddCheckout(IServiceCollection services, SqliteEventStore store, IMessageBroker broker)
    {
        var cairn = services.AddCairn(o =>
        {
            o.UseBackend("sqlite", (_, _) => store, _ => new SqliteCheckpointStore(store), _ => broker)
                .UseBackendPart<IProjectionStore>(_ => new SqliteProjectionStore(store))
                .UseBackendPart<Cairn.Schemas.ISchemaStore>(_ => new SqliteSchemaStore(store));
            CheckoutWorkflow.Register(o.EventTypes);
        });
        cairn.AddWorkflow(CheckoutDefinition());

        // Declared after the workflow's own declaration of its queue, so these settings win.
        foreach (var queue in Queues())
        {
            cairn.AddQueue(queue);
        }

        return cairn;
    }

    /// <summary>The workflow's queue and the services' queues, each with a short lease.</summary>
    public static IReadOnlyList<QueueDefinition> Queues() =>
    [
        new QueueDefinition(CheckoutDefinition().Queue) { Retention = TimeSpan.FromDays(400), MaxReceiveCount = 10, Lease = WorkflowLease },
        .. ServiceQueues.Select(queue => new QueueDefinition(queue) { MaxReceiveCount = 10, Lease = WorkflowLease }),
    ];

    /// <summary>The id of order <paramref name="index"/>, which names its case so the services know how to treat it.</summary>
    public static string OrderId(int index, CheckoutCase @case) =>
        FormattableString.Invariant($"order-{index:D3}-{@case.ToString().ToLowerInvariant()}");

    /// <summary>The case an order id names.</summary>
    public static CheckoutCase CaseOf(string orderId)
    {
        ArgumentNullException.ThrowIfNull(orderId);
        return Enum.Parse<CheckoutCase>(orderId[(orderId.LastIndexOf('-') + 1)..], ignoreCase: true);
    }

    /// <summary>The state a checkout of order <paramref name="index"/> starts with.</summary>
    public static CheckoutState Order(int index, CheckoutCase @case) =>
        new(OrderId(index, @case), @case == CheckoutCase.NoStock ? OutOfStockSku : "sku-1", 1, @case == CheckoutCase.Declined ? 10 * DeclineAbove : DeclineAbove / 5);

    /// <summary>The stream of the effects of one kind on one order.</summary>
    public static StreamName EffectStream(string kind, string orderId) => new($"{EffectCategory}-{kind}-{orderId}");

    /// <summary>An effect: its kind, its order, the idempotency key of the command that caused it, and the command's id.</summary>
    public static EventData EffectEvent(Effect effect, MessageId message) => new(MessageId.New(), EffectType, Json(json =>
    {
        json.WriteString("kind", effect.Kind);
        json.WriteString("order", effect.Order);
        json.WriteString("key", effect.Key);
        json.WriteString("message", message.Value.ToString("N"));
    }));

    /// <summary>Reads back what <see cref="EffectEvent"/> wrote.</summary>
    public static (Effect Effect, MessageId Message) ReadEffectEvent(ReadOnlyMemory<byte> data)
    {
        using var json = JsonDocument.Parse(data);
        var root = json.RootElement;
        return (new Effect(root.GetProperty("kind").GetString()!, root.GetProperty("order").GetString()!, root.GetProperty("key").GetString()!),
            new MessageId(Guid.ParseExact(root.GetProperty("message").GetString()!, "N")));
    }

    /// <summary>The line printed, before the host starts, for an instance already in the file.</summary>
    public static string InstanceLine(string orderId, WorkflowStatus status, long version) =>
        FormattableString.Invariant($"instance {orderId} {status} {version}{LineEnd}");

    /// <summary>The line printed once events of an instance's history are committed: their last version and their types.</summary>
    public static string HistoryLine(string orderId, long lastVersion, IEnumerable<string> types) =>
        FormattableString.Invariant($"history {orderId} {lastVersion} {string.Join(',', types.Select(t => t.Replace("cairn.workflow.", "", StringComparison.Ordinal)))}{LineEnd}");

    /// <summary>
    /// The line printed about an effect: <paramref name="what"/> is <c>had</c> (in the file before the host started),
    /// <c>invoked</c> (a service's handler started on a command, attempt and receive count given), <c>effect</c> (the
    /// effect committed), or <c>dedup</c> (a handling that found its key done committed without an effect).
    /// </summary>
    public static string EffectLine(string what, Effect effect, MessageId? message = null, int receiveCount = 0) =>
        FormattableString.Invariant($"{what} {effect.Kind} {effect.Order} {effect.Key}{(message is { } id ? $" {id.Value:N} {receiveCount}" : "")}{LineEnd}");

    /// <summary>Reads a line of the workflow child; null for any other line, complete or not.</summary>
    public static WorkflowReport? ParseWorkflowLine(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        return line.Split(' ') switch
        {
            ["instance", var order, var status, var version, "."] when Enum.TryParse<WorkflowStatus>(status, out var s) =>
                new InstanceReport(order, s, long.Parse(version, CultureInfo.InvariantCulture)),
            ["history", var order, var version, var types, "."] =>
                new HistoryReport(order, long.Parse(version, CultureInfo.InvariantCulture), types.Split(',')),
            ["had" or "effect" or "dedup", var kind, var order, var key, "."] parts =>
                new EffectReport(parts[0], new Effect(kind, order, key), null, 0),
            ["invoked", var kind, var order, var key, var id, var receives, "."] =>
                new EffectReport("invoked", new Effect(kind, order, key), new MessageId(Guid.ParseExact(id, "N")), int.Parse(receives, CultureInfo.InvariantCulture)),
            _ => null,
        };
    }
}

/// <summary>An effect of a service: its kind (<c>reserve</c>, <c>charge</c>, <c>ship</c>, <c>release</c>, <c>refund</c>, <c>cancel-shipment</c>), its order, and the idempotency key of the command.</summary>
public sealed record Effect(string Kind, string Order, string Key);

/// <summary>A line of the workflow child.</summary>
public abstract record WorkflowReport;

/// <summary>An instance in the file when the child started, as its history showed it.</summary>
public sealed record InstanceReport(string Order, WorkflowStatus Status, long Version) : WorkflowReport;

/// <summary>Events of an instance's history, committed: the version of the last, and the types (without their prefix).</summary>
public sealed record HistoryReport(string Order, long LastVersion, IReadOnlyList<string> Types) : WorkflowReport;

/// <summary>An effect had, invoked, committed or deduplicated; an invocation names the command and its receive count.</summary>
public sealed record EffectReport(string What, Effect Effect, MessageId? Message, int ReceiveCount) : WorkflowReport;
