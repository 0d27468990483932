using Cairn.Conformance.Support;
using Cairn.Workflows;

namespace Cairn.Tests.Workflows;

public sealed class WorkflowMetricsTests
{
    [Fact]
    public async Task instances_started_completed_failed_cancelled_and_compensated_are_counted_with_step_durations_and_retries()
    {
        // A workflow name of its own: the meter is process-wide and other tests run at the same time.
        const string name = "metered_checkout";
        using var telemetry = new TelemetryRecorder(n => n == WorkflowMetrics.MeterName);
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var services = new CheckoutServices { DeclineAbove = 100m };
        var host = await CairnTestHost.StartAsync(sut, o => CheckoutWorkflow.Register(o.EventTypes), cairn =>
        {
            services.AddTo(cairn);
            cairn.AddWorkflow(new CheckoutWorkflow(name));
        });
        await using var _ = host;

        await host.Workflows.StartAsync(name, "ok", new CheckoutState("ok", "sku", 1, 10m));
        await host.Workflows.StartAsync(name, "declined", new CheckoutState("declined", "sku", 1, 500m));
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync(name, "ok"))!.IsFinished && (await host.Workflows.GetAsync(name, "declined"))!.IsFinished, "both finish");

        services.ShippingAnswers = false;
        await host.Workflows.StartAsync(name, "cancelled", new CheckoutState("cancelled", "sku", 1, 10m));
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync(name, "cancelled"))!.CurrentStep == "arrange-shipping", "the third waits for shipping");
        await host.Workflows.RetryAsync(name, "cancelled", "nudge");
        await host.Workflows.CancelAsync(name, "cancelled", "changed their mind");

        var tag = "|workflow=" + name;
        Assert.Equal(3, telemetry.Total("cairn.workflow.started" + tag));
        Assert.Equal(1, telemetry.Total("cairn.workflow.completed" + tag));
        Assert.Equal(1, telemetry.Total("cairn.workflow.failed" + tag));
        Assert.Equal(1, telemetry.Total("cairn.workflow.cancelled" + tag));
        Assert.Equal(2, telemetry.Total("cairn.workflow.compensated" + tag));
        Assert.Equal(1, telemetry.Total("cairn.workflow.step.retries" + tag));
        Assert.Equal(3, telemetry.Total("cairn.workflow.step.duration" + tag + "|step=reserve-stock"));
        Assert.Equal(1, telemetry.Total("cairn.workflow.step.duration" + tag + "|step=arrange-shipping"));
    }
}
