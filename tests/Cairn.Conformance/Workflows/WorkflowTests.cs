using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Conformance.Workflows;

/// <summary>Durable workflows: the checkout orchestrated, its failure paths, replies, timers and operators' actions.</summary>
public abstract class WorkflowTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private const string Checkout = "checkout";

    private static async Task<(CairnTestHost Host, CheckoutServices Services)> StartAsync(StoreUnderTest sut, CheckoutWorkflow? workflow = null, Action<CheckoutServices>? configure = null)
    {
        var services = new CheckoutServices();
        configure?.Invoke(services);
        var host = await CairnTestHost.StartAsync(sut, o => CheckoutWorkflow.Register(o.EventTypes), cairn =>
        {
            services.AddTo(cairn);
            cairn.AddWorkflow(workflow ?? new CheckoutWorkflow());
        });
        return (host, services);
    }

    private static Task<WorkflowInstance> UntilAsync(CairnTestHost host, string id, Func<WorkflowInstance, bool> condition, string what, string workflow = Checkout) =>
        UntilInstanceAsync(host, workflow, id, condition, what);

    private static async Task<WorkflowInstance> UntilInstanceAsync(CairnTestHost host, string workflow, string id, Func<WorkflowInstance, bool> condition, string what)
    {
        WorkflowInstance? instance = null;
        await Wait.UntilAsync(async () => (instance = await host.Workflows.GetAsync(workflow, id)) is { } i && condition(i), what);
        return instance!;
    }

    private static async Task<IReadOnlyList<string>> HistoryAsync(CairnTestHost host, string id, string workflow = Checkout) =>
        [.. (await host.Workflows.GetHistoryAsync(workflow, id)).Select(e => e.Event switch
        {
            StepStarted s => $"started {s.Step} #{s.Attempt}",
            StepCompleted s => $"completed {s.Step}",
            StepFailed s => $"failed {s.Step}",
            StepTimedOut s => $"timed out {s.Step} #{s.Attempt}",
            CompensationStarted s => $"compensating {s.Step}",
            CompensationCompleted s => $"compensated {s.Step}",
            _ => e.Type.Replace("cairn.workflow.", "", StringComparison.Ordinal),
        })];

    [Fact]
    public async Task a_checkout_runs_its_three_steps_and_completes_with_the_replies_folded_into_its_state()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut);
        await using var _ = host;

        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var started = await host.Workflows.StartAsync(Checkout, "order-1", new CheckoutState("order-1", "sku-1", 2, 30m));
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.Equal(WorkflowStatus.Running, started.Status);
        Assert.Equal("reserve-stock", started.CurrentStep);

        var done = await UntilAsync(host, "order-1", i => i.IsFinished, "the checkout finishes");
        Assert.Equal(WorkflowStatus.Completed, done.Status);
        Assert.Equal(["reserve-stock", "charge-payment", "arrange-shipping"], done.CompletedSteps);
        var state = host.Workflows.GetState<CheckoutState>(done);
        Assert.Equal("pay-order-1", state.PaymentId);
        Assert.Equal("track-order-1", state.Tracking);
        Assert.Equal(["reserve:order-1", "charge:order-1", "ship:order-1"], services.EffectsOf("order-1"));
        Assert.Equal(
            ["started", "started reserve-stock #1", "completed reserve-stock", "started charge-payment #1", "completed charge-payment", "started arrange-shipping #1", "completed arrange-shipping", "completed"],
            await HistoryAsync(host, "order-1"));

        // The client's start has no cause and causes the rest of its decision; each later event names the reply that
        // caused it.
        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-1");
        Assert.Null(history[0].CausationId);
        Assert.All(history.Skip(1), e => Assert.NotNull(e.CausationId));
        var first = await Cairn.EventStore.EventStoreExtensions.ReadStreamAsync(sut.Store, "wf:checkout-order-1").FirstAsync();
        Assert.Equal(first.Id.ToString(), history[1].CausationId);
        await foreach (var recorded in Cairn.EventStore.EventStoreExtensions.ReadStreamAsync(sut.Store, "wf:checkout-order-1"))
        {
            Assert.Equal("order-1", recorded.CorrelationId);
        }

        // Each step's command has an id derived from what it is for and laid out with the instance's start first
        // (version 8), so the commands of the instances in flight sort together in the indexes keyed by message id.
        // The start time comes from the start event's payload, so an instance read back from its history derives the
        // ids the one kept in memory did.
        var startedAt = Assert.IsType<WorkflowStarted>(history[0].Event).StartedAt!.Value.ToUnixTimeMilliseconds();
        Assert.InRange(startedAt, before, after);
        var commands = history.Select(e => e.Event).OfType<StepStarted>().Select(s => Guid.Parse(s.MessageId!)).ToList();
        Assert.Equal(3, commands.Count);
        Assert.Equal(3, commands.Distinct().Count());
        Assert.All(commands, id =>
        {
            Assert.Equal(8, id.Version);
            Assert.Equal(startedAt, (long)(System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(id.ToByteArray(bigEndian: true)) >> 16));
        });
    }

    [Fact]
    public async Task a_declined_payment_releases_the_stock_and_the_checkout_ends_failed()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, configure: s => s.DeclineAbove = 100m);
        await using var _ = host;

        await host.Workflows.StartAsync(Checkout, "order-2", new CheckoutState("order-2", "sku-1", 1, 500m));
        var done = await UntilAsync(host, "order-2", i => i.IsFinished, "the checkout finishes");

        Assert.Equal(WorkflowStatus.Failed, done.Status);
        Assert.Equal("payment declined: insufficient funds", done.Reason);
        Assert.Equal(["reserve-stock"], done.CompensatedSteps);
        await Wait.UntilAsync(() => services.EffectsOf("order-2").Count == 2, "the release is handled");
        Assert.Equal(["reserve:order-2", "release:order-2"], services.EffectsOf("order-2"));
        Assert.Equal(
            ["started", "started reserve-stock #1", "completed reserve-stock", "started charge-payment #1", "failed charge-payment", "compensation-began", "compensating reserve-stock", "compensated reserve-stock", "failed"],
            await HistoryAsync(host, "order-2"));
    }

    [Fact]
    public async Task a_step_that_always_times_out_is_retried_then_every_effect_is_compensated_in_reverse_order()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, new CheckoutWorkflow(shippingTimeout: TimeSpan.FromMilliseconds(150), shippingAttempts: 3), s => s.ShippingAnswers = false);
        await using var _ = host;

        await host.Workflows.StartAsync(Checkout, "order-3", new CheckoutState("order-3", "sku-1", 1, 10m));
        var done = await UntilAsync(host, "order-3", i => i.IsFinished, "the checkout finishes");

        Assert.Equal(WorkflowStatus.Failed, done.Status);
        Assert.Contains("timed out after 3 attempt(s)", done.Reason, StringComparison.Ordinal);
        // The timed-out step's effect may have happened, so it is undone too, first.
        Assert.Equal(["arrange-shipping", "charge-payment", "reserve-stock"], done.CompensatedSteps);
        var history = await HistoryAsync(host, "order-3");
        Assert.Equal(3, history.Count(h => h.StartsWith("timed out arrange-shipping", StringComparison.Ordinal)));
        Assert.Equal(["compensating arrange-shipping", "compensated arrange-shipping", "compensating charge-payment", "compensated charge-payment", "compensating reserve-stock", "compensated reserve-stock", "failed"], history.SkipWhile(h => h != "compensation-began").Skip(1));

        await Wait.UntilAsync(() => services.EffectsOf("order-3").Count == 6 && services.Received.Count(r => r == "ship:order-3") >= 3, "the compensations and every attempt are handled");
        // Three attempts reached shipping, sharing one idempotency key: the shipment was arranged once.
        Assert.Equal(3, services.Received.Count(r => r == "ship:order-3"));
        Assert.Equal(["reserve:order-3", "charge:order-3", "ship:order-3"], services.EffectsOf("order-3").Take(3));
        Assert.Equal(["cancel-shipment:order-3", "refund:order-3", "release:order-3"], services.EffectsOf("order-3").Skip(3).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task a_failure_reply_fails_the_first_step_and_there_is_nothing_to_compensate()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, configure: s => s.OutOfStock.Add("sku-x"));
        await using var _ = host;

        await host.Workflows.StartAsync(Checkout, "order-4", new CheckoutState("order-4", "sku-x", 1, 10m));
        var done = await UntilAsync(host, "order-4", i => i.IsFinished, "the checkout finishes");

        Assert.Equal(WorkflowStatus.Failed, done.Status);
        Assert.Equal("out of stock: sku-x", done.Reason);
        Assert.Empty(done.CompensatedSteps);
        Assert.Empty(services.EffectsOf("order-4"));
    }

    [Fact]
    public async Task a_start_message_on_the_workflow_queue_starts_one_instance_and_a_repeat_is_recorded()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut);
        await using var __ = host;
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        await sut.Broker.SendAsync("workflow-checkout", serializer.ToOutgoingMessage(new CheckoutRequested("order-5", "sku-1", 1, 10m)));
        await UntilAsync(host, "order-5", i => i.IsFinished, "the checkout finishes");
        await sut.Broker.SendAsync("workflow-checkout", serializer.ToOutgoingMessage(new CheckoutRequested("order-5", "sku-1", 1, 10m)));

        await Wait.UntilAsync(async () => (await HistoryAsync(host, "order-5")).Contains("reply-ignored"), "the second start is recorded");
        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-5");
        var ignored = Assert.IsType<ReplyIgnored>(history[^1].Event);
        Assert.Equal("the instance was already started", ignored.Reason);
        Assert.Equal(1, history.Count(e => e.Event is WorkflowStarted));
    }

    [Fact]
    public async Task duplicate_and_late_replies_change_nothing_and_the_late_one_is_recorded()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut, configure: s => s.ShippingAnswers = false);
        await using var __ = host;
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        await host.Workflows.StartAsync(Checkout, "order-6", new CheckoutState("order-6", "sku-1", 1, 10m));
        await UntilAsync(host, "order-6", i => i.CurrentStep == "arrange-shipping", "the checkout waits for shipping");

        // The same reply twice (one id), as a redelivery would bring it: applied once.
        var reply = serializer.ToOutgoingMessage(new ShippingArranged("order-6", "track-a")) with { CorrelationId = "order-6" };
        await sut.Broker.SendAsync("workflow-checkout", reply);
        await sut.Broker.SendAsync("workflow-checkout", reply);
        var done = await UntilAsync(host, "order-6", i => i.IsFinished, "the checkout completes");
        Assert.Equal("track-a", host.Workflows.GetState<CheckoutState>(done).Tracking);

        // A late reply for a step long done, with its own id: recorded, and the state keeps the first answer.
        await sut.Broker.SendAsync("workflow-checkout", serializer.ToOutgoingMessage(new StockReserved("order-6")) with { CorrelationId = "order-6" });
        await sut.Broker.SendAsync("workflow-checkout", serializer.ToOutgoingMessage(new ShippingArranged("order-6", "track-b")) with { CorrelationId = "order-6" });
        await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(Checkout, "order-6")).Count(e => e.Event is ReplyIgnored) == 2, "the late replies are recorded");

        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-6");
        Assert.Equal(1, history.Count(e => e.Event is StepCompleted { Step: "arrange-shipping" }));
        Assert.All(history.Select(e => e.Event).OfType<ReplyIgnored>(), r => Assert.Equal("the instance had already completed", r.Reason));
        var final = await host.Workflows.GetAsync(Checkout, "order-6");
        Assert.Equal("track-a", host.Workflows.GetState<CheckoutState>(final!).Tracking);
    }

    [Fact]
    public async Task a_reply_for_an_unknown_instance_is_dead_lettered_with_the_reason_and_the_coordinator_goes_on()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut);
        await using var __ = host;
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        var stray = serializer.ToOutgoingMessage(new PaymentCharged("nobody", "pay-x")) with { CorrelationId = "nobody" };
        await sut.Broker.SendAsync("workflow-checkout", stray);
        await Wait.UntilAsync(async () => (await sut.Broker.GetDeadLetterAsync("workflow-checkout", stray.Id, default)) is not null, "the stray reply is dead-lettered");
        var dead = await sut.Broker.GetDeadLetterAsync("workflow-checkout", stray.Id, default);
        Assert.Contains("instance 'nobody'", dead!.Reason, StringComparison.Ordinal);

        await host.Workflows.StartAsync(Checkout, "order-7", new CheckoutState("order-7", "sku-1", 1, 10m));
        Assert.Equal(WorkflowStatus.Completed, (await UntilAsync(host, "order-7", i => i.IsFinished, "the next checkout finishes")).Status);
    }

    [Fact]
    public async Task a_timeout_that_fires_after_its_step_completed_is_ignored_and_recorded()
    {
        await using var sut = await CreateAsync();
        // A timeout far away; the test delivers the timer itself, after the step completed, rather than race a clock.
        var (host, _) = await StartAsync(sut, new CheckoutWorkflow(shippingTimeout: TimeSpan.FromHours(1)));
        await using var __ = host;
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        await host.Workflows.StartAsync(Checkout, "order-8", new CheckoutState("order-8", "sku-1", 1, 10m));
        await UntilAsync(host, "order-8", i => i.IsFinished, "the checkout finishes");
        var armed = (await host.Workflows.GetHistoryAsync(Checkout, "order-8")).Single(e => e.Event is StepStarted { Step: "arrange-shipping" });
        var timer = new WorkflowTimer(Checkout, "order-8", $"step:arrange-shipping@{armed.Version}");
        await sut.Broker.SendAsync("workflow-checkout", serializer.ToOutgoingMessage(timer) with { CorrelationId = "order-8" });
        await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(Checkout, "order-8")).Any(e => e.Event is TimerIgnored), "the late timer is recorded");

        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-8");
        var ignored = history.Select(e => e.Event).OfType<TimerIgnored>().Single();
        Assert.Equal(timer.Timer, ignored.Timer);
        Assert.Equal("the instance had already completed", ignored.Reason);
        Assert.Equal(WorkflowStatus.Completed, (await host.Workflows.GetAsync(Checkout, "order-8"))!.Status);

        // The queue keeps the real timer for its hour; the gauge of pending timers counts it.
        var stats = await sut.Broker.GetStatsAsync("workflow-checkout", default);
        Assert.Equal(1, stats.Delayed);
    }

    [Fact]
    public async Task cancelling_a_waiting_instance_compensates_what_was_done_and_records_the_reason()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, configure: s => s.ShippingAnswers = false);
        await using var _ = host;

        await host.Workflows.StartAsync(Checkout, "order-9", new CheckoutState("order-9", "sku-1", 1, 10m));
        await UntilAsync(host, "order-9", i => i.CurrentStep == "arrange-shipping", "the checkout waits for shipping");
        await host.Workflows.CancelAsync(Checkout, "order-9", "the customer changed their mind");

        var done = await UntilAsync(host, "order-9", i => i.IsFinished, "the cancellation finishes");
        Assert.Equal(WorkflowStatus.Cancelled, done.Status);
        Assert.Equal("the customer changed their mind", done.Reason);
        Assert.Equal(["arrange-shipping", "charge-payment", "reserve-stock"], done.CompensatedSteps);
        Assert.Contains("cancel-requested", await HistoryAsync(host, "order-9"));
        await Assert.ThrowsAsync<WorkflowStateException>(() => host.Workflows.CancelAsync(Checkout, "order-9", "again"));
        await Assert.ThrowsAsync<WorkflowStateException>(() => host.Workflows.RetryAsync(Checkout, "order-9"));
        await Assert.ThrowsAsync<WorkflowInstanceNotFoundException>(() => host.Workflows.CancelAsync(Checkout, "order-none", "why"));
        await Wait.UntilAsync(() => services.EffectsOf("order-9").Count == 6, "the compensations are handled");
    }

    [Fact]
    public async Task a_suspended_step_is_retried_by_an_operator_and_completes()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, new CheckoutWorkflow(shippingFailure: StepFailureAction.Suspend), s => s.ShippingRefuses = true);
        await using var _ = host;

        await host.Workflows.StartAsync(Checkout, "order-10", new CheckoutState("order-10", "sku-1", 1, 10m));
        var suspended = await UntilAsync(host, "order-10", i => i.Status == WorkflowStatus.Suspended, "the checkout is suspended");
        Assert.Equal("arrange-shipping", suspended.CurrentStep);

        Assert.Equal("shipping refused: no courier", suspended.Reason);
        services.ShippingRefuses = false;
        var retried = await host.Workflows.RetryAsync(Checkout, "order-10", "shipping is back");
        Assert.Equal(WorkflowStatus.Running, retried.Status);
        Assert.Equal(2, retried.Attempt);
        var done = await UntilAsync(host, "order-10", i => i.IsFinished, "the checkout finishes");
        Assert.Equal(WorkflowStatus.Completed, done.Status);
        Assert.Contains("step-retry-requested", await HistoryAsync(host, "order-10"));
        Assert.Single(services.EffectsOf("order-10"), "ship:order-10");
    }

    [Fact]
    public async Task a_suspended_step_is_skipped_with_a_reason_and_the_workflow_moves_on()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut, new CheckoutWorkflow(shippingFailure: StepFailureAction.Suspend), s => s.ShippingRefuses = true);
        await using var __ = host;

        await host.Workflows.StartAsync(Checkout, "order-11", new CheckoutState("order-11", "sku-1", 1, 10m));
        await UntilAsync(host, "order-11", i => i.Status == WorkflowStatus.Suspended, "the checkout is suspended");
        var skipped = await host.Workflows.SkipAsync(Checkout, "order-11", "shipped by hand");

        Assert.Equal(WorkflowStatus.Completed, skipped.Status);
        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-11");
        Assert.Equal("shipped by hand", history.Select(e => e.Event).OfType<StepSkipped>().Single().Reason);
        await Assert.ThrowsAsync<WorkflowStateException>(() => host.Workflows.SkipAsync(Checkout, "order-11", "again"));
    }

    [Fact]
    public async Task an_unconfirmed_compensation_is_retried_then_suspends_until_an_operator_skips_it()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, new CheckoutWorkflow(confirmStockRelease: true, releaseAttempts: 2, releaseTimeout: TimeSpan.FromMilliseconds(100)), s =>
        {
            s.DeclineAbove = 0m;
            s.ConfirmReleases = false;
        });
        await using var _ = host;

        await host.Workflows.StartAsync(Checkout, "order-12", new CheckoutState("order-12", "sku-1", 1, 10m));
        var suspended = await UntilAsync(host, "order-12", i => i.Status == WorkflowStatus.Suspended, "the compensation is suspended");
        Assert.Equal("reserve-stock", suspended.CurrentCompensation);
        Assert.Equal(2, suspended.CompensationAttempt);
        Assert.Contains("not confirmed after 2 attempts", suspended.Reason, StringComparison.Ordinal);

        // Cancelling cannot start a second compensation; skipping this one lets the failure path end.
        await Assert.ThrowsAsync<WorkflowStateException>(() => host.Workflows.CancelAsync(Checkout, "order-12", "stop"));
        var done = await host.Workflows.SkipAsync(Checkout, "order-12", "released by hand");
        Assert.Equal(WorkflowStatus.Failed, done.Status);
        Assert.Equal(["reserve-stock"], done.CompensatedSteps);
        // The second release is sent before the attempt times out, but its handling may come after the suspension.
        await Wait.UntilAsync(() => services.Received.Count(r => r == "release:order-12") >= 2, "both releases are handled");
        Assert.Equal(2, services.Received.Count(r => r == "release:order-12"));
    }

    [Fact]
    public async Task a_confirmed_compensation_completes_when_its_confirmation_arrives()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut, new CheckoutWorkflow(confirmStockRelease: true, releaseTimeout: TimeSpan.FromSeconds(30)), s => s.DeclineAbove = 0m);
        await using var __ = host;

        await host.Workflows.StartAsync(Checkout, "order-13", new CheckoutState("order-13", "sku-1", 1, 10m));
        var done = await UntilAsync(host, "order-13", i => i.IsFinished, "the checkout finishes");
        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-13");
        var compensated = history.Select(e => e.Event).OfType<CompensationCompleted>().Single();
        Assert.Equal("inventory.stock-released", compensated.ReplyType);
        Assert.Equal(WorkflowStatus.Failed, done.Status);
    }

    [Fact]
    public async Task instances_are_found_by_workflow_status_and_progress_and_shown_as_they_were()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut, configure: s => s.ShippingAnswers = false);
        await using var __ = host;

        await host.Workflows.StartAsync(Checkout, "order-14", new CheckoutState("order-14", "sku-1", 1, 10m));
        var waiting = await UntilAsync(host, "order-14", i => i.CurrentStep == "arrange-shipping", "the checkout waits for shipping");
        await host.Workflows.StartAsync(Checkout, "order-15", new CheckoutState("order-15", "sku-1", 1, 10m));
        await UntilAsync(host, "order-15", i => i.CurrentStep == "arrange-shipping", "the second waits too");
        await host.Workflows.CancelAsync(Checkout, "order-15", "no longer wanted");
        await UntilAsync(host, "order-15", i => i.IsFinished, "the second is cancelled");
        await host.Workflows.WaitForSummariesAsync(Wait.Timeout);

        var running = await host.Workflows.Query().Where("workflow", Checkout).Where("status", nameof(WorkflowStatus.Running)).ToListAsync();
        var summary = Assert.Single(running);
        Assert.Equal("order-14", summary.InstanceId);
        Assert.Equal("arrange-shipping", summary.Step);
        Assert.Equal("order-15", Assert.Single(await host.Workflows.Query().Where("status", nameof(WorkflowStatus.Cancelled)).ToListAsync()).InstanceId);
        Assert.Equal("order-14", Assert.Single(await host.Workflows.FindStuckAsync(TimeSpan.Zero, Checkout)).InstanceId);
        Assert.Empty(await host.Workflows.FindStuckAsync(TimeSpan.FromHours(1)));

        // The instance as it stood when its first step started: nothing completed yet.
        var history = await host.Workflows.GetHistoryAsync(Checkout, "order-14");
        var early = await host.Workflows.GetAsOfAsync(Checkout, "order-14", history[1].Time);
        Assert.NotNull(early);
        Assert.True(early.StreamVersion < waiting.StreamVersion);
        Assert.Null(await host.Workflows.GetAsOfAsync(Checkout, "order-14", history[0].Time.AddTicks(-1)));
    }

    [Fact]
    public async Task bad_requests_are_refused_with_typed_errors_and_write_nothing()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut);
        await using var __ = host;

        await Assert.ThrowsAsync<WorkflowNotFoundException>(() => host.Workflows.StartAsync("no-such", "x", new CheckoutState("x", "s", 1, 1m)));
        await Assert.ThrowsAsync<ArgumentException>(() => host.Workflows.StartAsync(Checkout, "", new CheckoutState("x", "s", 1, 1m)));
        await Assert.ThrowsAsync<ArgumentException>(() => host.Workflows.StartAsync(Checkout, " padded", new CheckoutState("x", "s", 1, 1m)));
        await Assert.ThrowsAsync<ArgumentException>(() => host.Workflows.StartAsync(Checkout, new string('x', 201), new CheckoutState("x", "s", 1, 1m)));
        await Assert.ThrowsAsync<ArgumentException>(() => host.Workflows.StartAsync(Checkout, "x", "not a state"));
        Assert.Equal(default, await sut.Store.GetHeadPositionAsync(default));

        await host.Workflows.StartAsync(Checkout, "order-16", new CheckoutState("order-16", "sku-1", 1, 10m));
        await Assert.ThrowsAsync<WorkflowAlreadyStartedException>(() => host.Workflows.StartAsync(Checkout, "order-16", new CheckoutState("order-16", "sku-1", 1, 10m)));
        await Assert.ThrowsAsync<ArgumentException>(() => host.Workflows.CancelAsync(Checkout, "order-16", " "));
        Assert.Null(await host.Workflows.GetAsync(Checkout, "order-none"));
        Assert.Empty(await host.Workflows.GetHistoryAsync(Checkout, "order-none"));
    }

    [Fact]
    public async Task a_message_of_a_type_the_workflow_does_not_know_is_dead_lettered_naming_the_type()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut);
        await using var __ = host;

        var unknown = new OutgoingMessage(MessageId.New(), "shipping.lost", "{}"u8.ToArray()) { CorrelationId = "order-17" };
        await sut.Broker.SendAsync("workflow-checkout", unknown);
        await Wait.UntilAsync(async () => (await sut.Broker.GetDeadLetterAsync("workflow-checkout", unknown.Id, default)) is not null, "the message is dead-lettered");
        Assert.Contains("'shipping.lost'", (await sut.Broker.GetDeadLetterAsync("workflow-checkout", unknown.Id, default))!.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task many_instances_run_concurrently_and_each_effect_happens_once()
    {
        await using var sut = await CreateAsync();
        var (host, services) = await StartAsync(sut, configure: s => s.DeclineAbove = 50m);
        await using var _ = host;

        var ids = Enumerable.Range(0, 40).Select(i => $"bulk-{i}").ToList();
        await Task.WhenAll(ids.Select((id, i) => host.Workflows.StartAsync(Checkout, id, new CheckoutState(id, "sku-1", 1, i % 4 == 0 ? 80m : 20m))));
        foreach (var id in ids)
        {
            await UntilAsync(host, id, i => i.IsFinished, $"{id} finishes");
        }

        for (var i = 0; i < ids.Count; i++)
        {
            var instance = await host.Workflows.GetAsync(Checkout, ids[i]);
            Assert.Equal(i % 4 == 0 ? WorkflowStatus.Failed : WorkflowStatus.Completed, instance!.Status);
        }

        await Wait.UntilAsync(() => services.Effects.Count(e => e.StartsWith("release:", StringComparison.Ordinal)) == 10, "the releases are handled");
        Assert.Equal(services.Effects.Count, services.Effects.Distinct().Count());
        Assert.Equal(30, services.Effects.Count(e => e.StartsWith("ship:", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task two_coordinators_sharing_one_backend_run_the_instances_between_them_with_each_effect_once()
    {
        await using var sut = await CreateAsync();
        var (first, services) = await StartAsync(sut);
        await using var _ = first;
        // A second process: its own coordinator and services, competing for the same queues.
        var (second, otherServices) = await StartAsync(sut);
        await using var __ = second;

        var ids = Enumerable.Range(0, 30).Select(i => $"shared-{i}").ToList();
        await Task.WhenAll(ids.Select((id, i) => (i % 2 == 0 ? first : second).Workflows.StartAsync(Checkout, id, new CheckoutState(id, "sku-1", 1, 10m))));
        foreach (var id in ids)
        {
            Assert.Equal(WorkflowStatus.Completed, (await UntilAsync(first, id, i => i.IsFinished, $"{id} finishes")).Status);
        }

        // Each step ran once per instance: the histories show no step twice, whichever process decided.
        foreach (var id in ids)
        {
            var history = await first.Workflows.GetHistoryAsync(Checkout, id);
            Assert.Equal(3, history.Count(e => e.Event is StepCompleted));
            Assert.Equal(3, history.Count(e => e.Event is StepStarted));
        }

        Assert.Equal(90, services.Effects.Count + otherServices.Effects.Count);
    }

    [Fact]
    public async Task a_reply_without_the_correlation_id_finds_its_instance_by_a_field_of_its_own()
    {
        await using var sut = await CreateAsync();
        var (host, _) = await StartAsync(sut, new CheckoutWorkflow(shippingCorrelatedByOrder: true), s => s.ShippingAnswers = false);
        await using var __ = host;
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        await host.Workflows.StartAsync(Checkout, "order-18", new CheckoutState("order-18", "sku-1", 1, 10m));
        await UntilAsync(host, "order-18", i => i.CurrentStep == "arrange-shipping", "the checkout waits for shipping");
        var fromCarrier = serializer.ToOutgoingMessage(new ShippingArranged("order-18", "carrier-7")) with { CorrelationId = "carrier-batch-99" };
        await sut.Broker.SendAsync("workflow-checkout", fromCarrier);

        var done = await UntilAsync(host, "order-18", i => i.IsFinished, "the checkout completes");
        Assert.Equal("carrier-7", host.Workflows.GetState<CheckoutState>(done).Tracking);
        var completed = (await host.Workflows.GetHistoryAsync(Checkout, "order-18")).Last(e => e.Event is StepCompleted);
        Assert.Equal(fromCarrier.Id.ToString(), completed.CausationId);

        // A field naming no instance dead-letters the reply, as a missing correlation would.
        var stray = serializer.ToOutgoingMessage(new ShippingArranged("order-none", "carrier-8"));
        await sut.Broker.SendAsync("workflow-checkout", stray);
        await Wait.UntilAsync(async () => (await sut.Broker.GetDeadLetterAsync("workflow-checkout", stray.Id, default)) is not null, "the stray reply is dead-lettered");
    }
}
