using Cairn.Conformance.Support;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

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

    // "Finished after compensating at least one step": an instance whose only compensation was skipped by an operator
    // (it was never confirmed) undid nothing, and is counted failed, not compensated.
    [Fact]
    public async Task an_instance_whose_compensations_were_all_skipped_is_not_counted_compensated()
    {
        const string name = "metered_skipped";
        using var telemetry = new TelemetryRecorder(n => n == WorkflowMetrics.MeterName);
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var services = new CheckoutServices { DeclineAbove = 0m, ConfirmReleases = false };
        await using var host = await CairnTestHost.StartAsync(sut, o => CheckoutWorkflow.Register(o.EventTypes), cairn =>
        {
            services.AddTo(cairn);
            cairn.AddWorkflow(new CheckoutWorkflow(name, confirmStockRelease: true, releaseAttempts: 1, releaseTimeout: TimeSpan.FromMilliseconds(100)));
        });
        await host.Workflows.StartAsync(name, "o-1", new CheckoutState("o-1", "sku", 1, 10m));
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync(name, "o-1"))!.Status == WorkflowStatus.Suspended, "the release is not confirmed in time");

        var ended = await host.Workflows.SkipAsync(name, "o-1", "released by hand");

        Assert.Equal(WorkflowStatus.Failed, ended.Status);
        Assert.Equal(["reserve-stock"], ended.CompensatedSteps);
        var tag = "|workflow=" + name;
        Assert.Equal(1, telemetry.Total("cairn.workflow.failed" + tag));
        Assert.Equal(0, telemetry.Total("cairn.workflow.compensated" + tag));
    }

    // "Times a workflow instance stopped for an operator": a second refusal of a step that already stands suspended
    // (its service answering again) records the new reason, but the instance did not stop again.
    [Fact]
    public async Task a_second_refusal_of_a_suspended_step_is_not_counted_as_another_suspension()
    {
        const string name = "metered_suspended";
        using var telemetry = new TelemetryRecorder(n => n == WorkflowMetrics.MeterName);
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var services = new CheckoutServices { ShippingRefuses = true };
        await using var host = await CairnTestHost.StartAsync(sut, o => CheckoutWorkflow.Register(o.EventTypes), cairn =>
        {
            services.AddTo(cairn);
            cairn.AddWorkflow(new CheckoutWorkflow(name, shippingFailure: StepFailureAction.Suspend));
        });
        await host.Workflows.StartAsync(name, "o-1", new CheckoutState("o-1", "sku", 1, 10m));
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync(name, "o-1"))!.Status == WorkflowStatus.Suspended, "the refused shipping suspends");

        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var again = serializer.ToOutgoingMessage(new ShippingRefused("o-1", "still no trucks")) with { CorrelationId = "o-1" };
        await sut.Broker.SendAsync("workflow-" + name, again);
        await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(name, "o-1")).Any(e => e.CausationId == again.Id.ToString()), "the second refusal is handled");

        var instance = await host.Workflows.GetAsync(name, "o-1");
        Assert.Equal((WorkflowStatus.Suspended, "shipping refused: still no trucks"), (instance!.Status, instance.Reason));
        Assert.Equal(1, telemetry.Total("cairn.workflow.suspended|workflow=" + name));
    }
}
