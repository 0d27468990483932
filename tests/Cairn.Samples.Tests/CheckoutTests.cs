using System.Text.RegularExpressions;
using Checkout;

namespace Cairn.Samples.Tests;

public sealed partial class CheckoutTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "cairn-checkout-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private async Task<(string[] Choreography, string[] Workflow)> RunAsync()
    {
        Directory.CreateDirectory(_directory);
        var output = new StringWriter();
        await CheckoutApp.RunAsync(_directory, output).WaitAsync(TimeSpan.FromSeconds(90));
        var lines = output.ToString().Split(Environment.NewLine);
        var split = Array.FindIndex(lines, l => l.StartsWith("== 2.", StringComparison.Ordinal));
        Assert.True(split > 0, "the workflow's section follows the choreography's");
        return (lines[..split], lines[split..]);
    }

    [Fact]
    public async Task both_ways_two_orders_complete_and_the_declined_one_gives_its_stock_back()
    {
        var (choreography, workflow) = await RunAsync();

        foreach (var section in new[] { choreography, workflow })
        {
            Assert.Contains("  order-1: completed, tracking trk-order-1; lamp on hand: 8", section);
            Assert.Contains("  order-3: completed, tracking trk-order-3; rug on hand: 4", section);
        }

        // The choreography's orders service cancels the order; the workflow fails, having undone the reservation.
        Assert.Contains("  order-2: cancelled (payment declined: 2400 is over the card limit of 1000); sofa on hand: 3", choreography);
        Assert.Contains("  order-2: failed (payment declined: 2400 is over the card limit of 1000), compensated: reserve-stock; sofa on hand: 3", workflow);
    }

    [Fact]
    public async Task the_flow_maps_show_who_reacted_to_what_and_the_workflow_shows_its_definition_and_timeline()
    {
        var (choreography, workflow) = await RunAsync();

        // The choreography: a chain of services, each publishing to the topic; the ends of the chain are consumed by no one.
        Assert.Contains(choreography, l => l.Contains("-->|\"3 handled", StringComparison.Ordinal));
        Assert.Contains(choreography, l => l.Contains("-->|\"3 published to shop\"|", StringComparison.Ordinal));
        Assert.Contains("Unconsumed types: order.cancelled, order.completed, stock.released", choreography);
        Assert.Contains("Cycles: none", choreography);

        // The workflow: every service answers the coordinator, which sends the next command. One edge per handler, type
        // and target (the coordinator's step-completed events, made while handling three reply types, are one edge), and
        // Cairn's own types (the history, the timers) are drawn but not flagged as unconsumed.
        Assert.Contains(workflow, l => l.Contains("-->|\"3 sent to payments\"|", StringComparison.Ordinal));
        Assert.Contains(workflow, l => l.Contains("-->|\"3 sent to workflow-checkout\"|", StringComparison.Ordinal));
        Assert.Contains(workflow, l => l.Contains("-->|\"7 appended to wf:checkout\"|", StringComparison.Ordinal));
        var edges = workflow.Where(l => l.Contains("-->|", StringComparison.Ordinal)).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Select(t => (t[0], t[^1])).ToList();
        Assert.Equal(edges.Count, edges.Distinct().Count());
        Assert.DoesNotContain(workflow, l => l.EndsWith(" unconsumed", StringComparison.Ordinal) && l.Contains("class ", StringComparison.Ordinal));
        Assert.Contains("Unconsumed types: none", workflow);
        Assert.Contains("Cycles: none", workflow);

        // The definition, drawn before anything runs, shows that the stock's release waits for its confirmation.
        Assert.Contains("stateDiagram-v2", workflow);
        Assert.Contains("    s_charge_payment --> failed : payment.declined", workflow);
        Assert.Contains("    note right of s_reserve_stock : compensate: send to inventory, confirmed by stock.released (00:00:30 × 5)", workflow);

        var timeline = workflow.SkipWhile(l => !l.StartsWith("The timeline of order-2", StringComparison.Ordinal)).Skip(1)
            .TakeWhile(l => l.StartsWith("  v", StringComparison.Ordinal))
            .Select(l => l[(l.IndexOf(" ms  ", StringComparison.Ordinal) + 5)..])
            .ToList();
        Assert.Equal(
        [
            "started (by the client)",
            "reserve-stock #1: sent inventory.reserve to inventory",
            "reserve-stock done by stock.reserved -> charge-payment",
            "charge-payment #1: sent payments.charge to payments",
            "charge-payment failed by payment.declined: payment declined: 2400 is over the card limit of 1000",
            "compensating reserve-stock",
            "undo reserve-stock: sent inventory.release to inventory",
            "reserve-stock undone (confirmed by stock.released)",
            "failed: payment declined: 2400 is over the card limit of 1000",
        ],
            timeline);
    }

    [Fact]
    public async Task the_declined_order_is_traced_by_its_correlation_id_both_ways()
    {
        var (choreography, workflow) = await RunAsync();

        // The choreography: one root, the order placed, and a chain of services each reacting to the last one's fact.
        // The routed event keeps its id, so appending it and handling it are one node. stock.released went to no
        // subscriber, so it is in no trace.
        Assert.Contains(choreography, l => l.StartsWith("Correlation order-2: 6 entries, 1 root, ", StringComparison.Ordinal));
        var timeline = TraceTimeline(choreography);
        Assert.Equal("event order.placed appended to order-order-2@0", timeline[0]);
        Assert.Equal(
        [
            "event order.cancelled appended to order-order-2@1",
            "event order.placed appended to order-order-2@0",
            "message order.placed handled by inventory from queue inventory",
            "message payment.declined handled by inventory from queue inventory",
            "message payment.declined handled by orders from queue orders",
            "message stock.reserved handled by payments from queue payments",
        ],
            timeline.Order(StringComparer.Ordinal));
        var tree = TraceTree(choreography);
        Assert.Equal(4, tree.Count);
        Assert.Equal("  order.placed <id>: appended to order-order-2@0; handled by inventory from queue inventory", tree[0]);
        Assert.Equal("  └── stock.reserved <id>: handled by payments from queue payments", tree[1]);
        Assert.StartsWith("      └── payment.declined <id>: handled by ", tree[2], StringComparison.Ordinal);
        Assert.Contains("handled by inventory from queue inventory", tree[2], StringComparison.Ordinal);
        Assert.Contains("handled by orders from queue orders", tree[2], StringComparison.Ordinal);
        Assert.Equal("          └── order.cancelled <id>: appended to order-order-2@1", tree[3]);

        // The workflow: the client's start is the one root; its first event causes the rest of the start (the first
        // step, its command and its timer), and every reply is handled by the coordinator, which appends the history
        // and sends the next command. The three timers (30 s) are still waiting.
        Assert.Contains(workflow, l => l.StartsWith("Correlation order-2: 18 entries, 1 root, ", StringComparison.Ordinal) && l.EndsWith(" (3 pending)", StringComparison.Ordinal));
        timeline = TraceTimeline(workflow);
        Assert.Equal("event cairn.workflow.started appended to wf:checkout-order-2@0", timeline[0]);
        Assert.Equal("event cairn.workflow.failed appended to wf:checkout-order-2@8", timeline[^1]);
        Assert.Equal(3, timeline.Count(l => l == "message cairn.workflow.timer waiting in queue workflow-checkout"));
        tree = TraceTree(workflow);
        Assert.Equal("  cairn.workflow.started <id>: appended to wf:checkout-order-2@0", Assert.Single(tree, l => char.IsLetter(l[2])));
        Assert.Contains(tree, l => l.EndsWith("cairn.workflow.step-started <id>: appended to wf:checkout-order-2@1", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("inventory.reserve <id>: handled by inventory from queue inventory", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("└── stock.reserved <id>: handled by workflow-checkout from queue workflow-checkout", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("└── payments.charge <id>: handled by payments from queue payments", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("└── payment.declined <id>: handled by workflow-checkout from queue workflow-checkout", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("├── cairn.workflow.step-failed <id>: appended to wf:checkout-order-2@4", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("└── inventory.release <id>: handled by inventory from queue inventory", StringComparison.Ordinal));
        Assert.Contains(tree, l => l.EndsWith("└── stock.released <id>: handled by workflow-checkout from queue workflow-checkout", StringComparison.Ordinal));
        Assert.EndsWith("├── cairn.workflow.compensation-completed <id>: appended to wf:checkout-order-2@7", tree[^2], StringComparison.Ordinal);
        Assert.EndsWith("└── cairn.workflow.failed <id>: appended to wf:checkout-order-2@8", tree[^1], StringComparison.Ordinal);
    }

    /// <summary>The trace's timeline in a section, each entry without its time and id, and events without their position.</summary>
    private static List<string> TraceTimeline(string[] section) =>
        [.. section.SkipWhile(l => l != "Timeline").Skip(1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal))
            .Select(l => Normalize(l[(l.IndexOf(" s  ", StringComparison.Ordinal) + 4)..l.LastIndexOf("  [", StringComparison.Ordinal)]))];

    /// <summary>The trace's causation tree in a section, ids replaced by <c>&lt;id&gt;</c>, events without their position.</summary>
    private static List<string> TraceTree(string[] section) =>
        [.. section.SkipWhile(l => l != "Causation tree").Skip(1).TakeWhile(l => l.StartsWith("  ", StringComparison.Ordinal)).Select(Normalize)];

    private static string Normalize(string line) => Position().Replace(Id().Replace(line, "<id>"), "");

    [GeneratedRegex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")]
    private static partial Regex Id();

    [GeneratedRegex(" at position [0-9]+")]
    private static partial Regex Position();
}
