using System.Globalization;
using Cairn.Benchmarks.Checkout;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// O1: the three-step checkout (reserve stock, charge payment, arrange shipping) as a durable workflow on the embedded
/// SQLite backend, hosted as an application hosts it (<c>AddCairn(o =&gt; o.UseSqlite(...)).AddWorkflow(...)</c>,
/// durability Full), with <see cref="InFlightOrders"/> instances in flight: a new one is started through
/// <see cref="WorkflowClient.StartAsync"/> as each finishes, which the bench learns from the workflow metrics
/// (<c>cairn.workflow.completed</c>, <c>cairn.workflow.failed</c>) recorded once the last decision has committed.
/// Reported: workflows completed per second over a window after a warm-up, and the step latency
/// (<c>cairn.workflow.step.duration</c>: from the decision that starts a step to the one that completes it, so one
/// command, one reply and the commits and deliveries between them).
/// <para>
/// Baseline: <see cref="HandWrittenCoordinator"/>, the same hops to the same services over the same broker with the
/// order's state in memory instead of an event-sourced history.
/// </para>
/// </summary>
internal static class O1Workflows
{
    /// <summary>Checkouts in flight, as the issue states it.</summary>
    public const int InFlightOrders = 100;

    /// <summary>
    /// Messages each consumer (each service, the workflow's coordinator, the hand-written one) handles at once; the same
    /// on every side: as many as there are checkouts in flight, so the in-flight count sets the load. At 16 a service
    /// whose queue held more of the 100 checkouts than it had slots made the rest wait, and the writer's group commits
    /// ran a third smaller: on a quiet machine O1 ran at 1,586–1,618 workflows/s with 16, 2,023–2,075 with 32, and
    /// 1,970–2,140 with 100, at a quarter less CPU per workflow.
    /// </summary>
    public const int Concurrency = InFlightOrders;

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        // A round per side first, not counted, as M1, R1 and R2 have one: every round starts a fresh host, and on two
        // cores the JIT's background compilation of the first one (about 14,000 methods) ran through the counted rounds.
        await WorkflowAsync(scale, "O1 warm-up");
        if (!scale.CairnOnly)
        {
            await HandWrittenAsync(scale, "O1 warm-up");
        }

        var (workflow, baseline) = await MessageBench.CompareAsync(scale.WorkflowRounds, scale.CairnOnly, () => WorkflowAsync(scale, "O1"), () => HandWrittenAsync(scale, "O1"), r => r.PerSecond);
        var how = string.Create(CultureInfo.InvariantCulture, $"{InFlightOrders} in flight, SQLite");
        var note = string.Create(CultureInfo.InvariantCulture,
            $"{workflow.Completed:#,0} workflows in {workflow.Seconds:0.0} s, {workflow.StepMs.Length:#,0} steps timed; CPU per workflow {workflow.CpuMsPerOrder:0.00} ms, baseline {(baseline is null ? "-" : baseline.CpuMsPerOrder.ToString("0.00", CultureInfo.InvariantCulture))} ms; baseline: the same hops coordinated by hand, state in memory, no history; consumers' concurrency {Concurrency}");
        return
        [
            new Figure("O1", $"three-step workflows completed, {how}", workflow.PerSecond, "workflows/s", baseline?.PerSecond, Figure.AtLeast(2_000, "workflows/s"), note),
            new Figure("O1-step-p50", $"workflow step latency p50, {how}", workflow.StepP50, "ms", baseline?.StepP50),
            new Figure("O1-step-p99", $"workflow step latency p99, {how}", workflow.StepP99, "ms", baseline?.StepP99, Figure.Below(20, "ms")),
        ];
    }

    /// <summary>One round of the workflow (also O2's baseline, logged under <paramref name="id"/>).</summary>
    public static async Task<CheckoutRate> WorkflowAsync(Scale scale, string id)
    {
        using var db = new TempDatabase("o1-workflow");
        var flight = new InFlight(InFlightOrders);
        using var listener = new WorkflowListener(CheckoutWorkflow.WorkflowName, flight);
        await using var host = await CheckoutHost.StartAsync(db, cairn =>
        {
            CheckoutServices.AddTo(cairn, Concurrency);
            cairn.AddWorkflow(new CheckoutWorkflow(Concurrency));
        });
        var client = host.Services.GetRequiredService<WorkflowClient>();
        var rate = await flight.RunAsync(
            n =>
            {
                var order = CheckoutOrders.Order(n);
                return client.StartAsync(CheckoutWorkflow.WorkflowName, order.OrderId, order);
            },
            scale.WorkflowWarmup,
            scale.WorkflowDuration);

        // The declined order compensated its reserved stock and failed; the last one completed with the replies folded in.
        var declined = await client.GetAsync(CheckoutWorkflow.WorkflowName, CheckoutOrders.Order(0).OrderId);
        var last = await client.GetAsync(CheckoutWorkflow.WorkflowName, CheckoutOrders.Order(rate.Started - 1).OrderId);
        if (rate.Failed != 1 || declined is not { Status: WorkflowStatus.Failed } || !declined.CompensatedSteps.SequenceEqual(["reserve-stock"])
            || last is not { Status: WorkflowStatus.Completed } || client.GetState<CheckoutState>(last).Tracking is null)
        {
            throw new InvalidOperationException($"{id}: the workflows did not end as they should: {rate.Failed} failed, order 0 {declined?.Status}, the last {last?.Status}.");
        }

        return Report(id, "workflow", rate);
    }

    private static async Task<CheckoutRate> HandWrittenAsync(Scale scale, string id)
    {
        using var db = new TempDatabase("o1-baseline");
        var flight = new InFlight(InFlightOrders);
        var coordinator = new HandWrittenCoordinator(flight);
        await using var host = await CheckoutHost.StartAsync(db, cairn =>
        {
            CheckoutServices.AddTo(cairn, Concurrency);
            coordinator.AddTo(cairn, Concurrency);
        });
        var sender = host.Services.GetRequiredService<IMessageSender>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var rate = await flight.RunAsync(n => coordinator.StartAsync(sender, serializer, CheckoutOrders.Order(n)), scale.WorkflowWarmup, scale.WorkflowDuration);
        if (rate.Failed != 1)
        {
            throw new InvalidOperationException($"{id}: {rate.Failed} orders of the hand-written coordinator failed; 1 (order 0) should have.");
        }

        return Report(id, "baseline", rate);
    }

    public static CheckoutRate Report(string id, string side, CheckoutRate r)
    {
        var steps = r.StepMs.Length == 0
            ? ""
            : string.Create(CultureInfo.InvariantCulture,
                $"; step p50 {Ms(r.StepP50)} ms, p90 {Ms(MessageBench.Percentile(r.StepMs, 90))} ms, p99 {Ms(r.StepP99)} ms, max {Ms(r.StepMs[^1])} ms");
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  {id,-6} {side,-12} {r.PerSecond,8:#,0} orders/s  ({r.Completed:#,0} in {r.Seconds:0.0} s{steps}; CPU {r.CpuMsPerOrder:0.00} ms and {r.KbPerOrder:#,0} KB allocated per order; {r.Started:#,0} started in all)"));
        return r;
    }

    private static string Ms(double ms) => ms.ToString(ms < 10 ? "0.00" : "#,0.0", CultureInfo.InvariantCulture);
}
