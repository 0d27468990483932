using System.Globalization;
using Cairn.Benchmarks.Checkout;
using Cairn.Messaging;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// O2: the checkout of O1 as a choreography (<see cref="Choreography"/>): no coordinator, each service reacting to the
/// previous one's event through one topic and a queue per service, with <see cref="O1Workflows.InFlightOrders"/>
/// orders in flight (a new order placed as the order service's handler of the last event commits). Reported: orders
/// completed per second. Baseline: O1's workflow, measured again in alternate rounds of this workload, so the ratio is
/// choreography over orchestration in the same minutes.
/// </summary>
internal static class O2Choreography
{
    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        // A round per side first, not counted, as O1 has: each round starts a fresh host, and the JIT's work on the first
        // one would otherwise run through the counted rounds.
        await ChoreographyAsync(scale, "O2 warm-up");
        if (!scale.CairnOnly)
        {
            await O1Workflows.WorkflowAsync(scale, "O2 warm-up");
        }

        var (choreography, workflow) = await MessageBench.CompareAsync(scale.WorkflowRounds, scale.CairnOnly, () => ChoreographyAsync(scale, "O2"), () => O1Workflows.WorkflowAsync(scale, "O2"), r => r.PerSecond);
        var note = string.Create(CultureInfo.InvariantCulture,
            $"{choreography.Completed:#,0} orders in {choreography.Seconds:0.0} s; CPU per order {choreography.CpuMsPerOrder:0.00} ms, workflow {(workflow is null ? "-" : workflow.CpuMsPerOrder.ToString("0.00", CultureInfo.InvariantCulture))} ms; baseline: O1's workflow in alternate rounds (ratio: choreography / orchestration)");
        return
        [
            new Figure("O2", string.Create(CultureInfo.InvariantCulture, $"checkout as a choreography, {O1Workflows.InFlightOrders} in flight, SQLite"), choreography.PerSecond, "orders/s", workflow?.PerSecond, Note: note),
        ];
    }

    private static async Task<CheckoutRate> ChoreographyAsync(Scale scale, string id)
    {
        using var db = new TempDatabase("o2-choreography");
        var flight = new InFlight(O1Workflows.InFlightOrders);
        await using var host = await CheckoutHost.StartAsync(db, cairn => new Choreography(flight).AddTo(cairn, O1Workflows.Concurrency));
        var sender = host.Services.GetRequiredService<IMessageSender>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var rate = await flight.RunAsync(n => Choreography.PlaceAsync(sender, serializer, CheckoutOrders.Order(n)), scale.WorkflowWarmup, scale.WorkflowDuration);
        if (rate.Failed != 1)
        {
            throw new InvalidOperationException($"{id}: {rate.Failed} orders were cancelled; 1 (order 0, declined) should have been.");
        }

        return O1Workflows.Report(id, "choreography", rate);
    }
}
