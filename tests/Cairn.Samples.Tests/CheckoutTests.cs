using Checkout;

namespace Cairn.Samples.Tests;

public sealed class CheckoutTests : IDisposable
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

        // The workflow: every service answers the coordinator, which sends the next command.
        Assert.Contains(workflow, l => l.Contains("-->|\"3 sent to payments\"|", StringComparison.Ordinal));
        Assert.Contains(workflow, l => l.Contains("-->|\"3 sent to workflow-checkout\"|", StringComparison.Ordinal));
        Assert.Contains("stateDiagram-v2", workflow);
        Assert.Contains("    s_charge_payment --> failed : payment.declined", workflow);

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
}
