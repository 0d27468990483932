using System.Collections.Concurrent;
using Cairn.Conformance;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Projections.InMemory;
using Cairn.Serialization;
using Cairn.Subscriptions;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Workflows;

[EventType("race.hold")] public sealed record HoldSeat(string Id);
[EventType("race.free")] public sealed record FreeSeat(string Id);
[EventType("race.held")] public sealed record SeatHeld(string Id);
[EventType("race.busy")] public sealed record SeatBusy(string Id);
[EventType("race.do-a")] public sealed record DoA(string Id);
[EventType("race.do-b")] public sealed record DoB(string Id);
[EventType("race.do-c")] public sealed record DoC(string Id);
[EventType("race.undo-a")] public sealed record UndoA(string Id);
[EventType("race.undo-b")] public sealed record UndoB(string Id);
[EventType("race.done")] public sealed record Done(string Id);
[EventType("race.declined")] public sealed record Declined(string Id);
[EventType("race.undone")] public sealed record Undone(string Id);
[EventType("race.place")] public sealed record PlaceOrder(string Id);
[EventType("race.placed")] public sealed record OrderPlaced(string Id);
[EventType("race.shipped")] public sealed record OrderShipped(string Id);

public sealed record SeatState(string Id);

/// <summary>
/// Workflows meeting races and repeats: an operator's action decided again after a conflict, a cancel during a
/// retry's backoff, confirmations two compensations share, a confirmation after its compensation suspended, and
/// instance ids of a workflow with a long name.
/// </summary>
public sealed class WorkflowRaceTests
{
    private static void Register(EventTypeRegistry types) =>
        types.Register<HoldSeat>().Register<FreeSeat>().Register<SeatHeld>().Register<SeatBusy>()
            .Register<DoA>().Register<DoB>().Register<DoC>().Register<UndoA>().Register<UndoB>()
            .Register<Done>().Register<Declined>().Register<Undone>()
            .Register<PlaceOrder>().Register<OrderPlaced>().Register<OrderShipped>();

    /// <summary>One command with two consequences, awaited by two steps in turn.</summary>
    private sealed class PlaceAndShip : Workflow<SeatState>
    {
        public static readonly QueueName Orders = "race-orders";

        public PlaceAndShip()
            : base("race_place")
        {
            Step("place").Send(Orders, s => new PlaceOrder(s.Id)).On<OrderPlaced>().Then("await-shipment").NoCompensation("nothing to undo");
            Step("await-shipment").On<OrderShipped>().Complete().Timeout(TimeSpan.FromMinutes(10)).NoCompensation("nothing to undo");
        }
    }

    /// <summary>A step nobody answers, suspended when it times out.</summary>
    private sealed class Unanswered : Workflow<SeatState>
    {
        public static readonly QueueName Silent = "race-silent";

        public Unanswered()
            : base("race_unanswered") =>
            Step("place").Send(Silent, s => new PlaceOrder(s.Id)).On<OrderPlaced>().Complete()
                .Timeout(TimeSpan.FromHours(1)).OnFailure(StepFailureAction.Suspend).NoCompensation("nothing to undo");
    }

    /// <summary>Holds a seat: busy on the first attempt, retried after a backoff, released as its compensation.</summary>
    private sealed class HoldWorkflow : Workflow<SeatState>
    {
        public static readonly QueueName Seats = "race-seats";

        public HoldWorkflow()
            : base("race_hold") =>
            Step("hold").Send(Seats, s => new HoldSeat(s.Id))
                .On<SeatHeld>().Complete()
                .On<SeatBusy>().Retry(_ => "busy")
                .Retry(3, TimeSpan.FromSeconds(1))
                .CompensateWith(Seats, s => new FreeSeat(s.Id));
    }

    /// <summary>Two compensations confirmed by the same reply type; the last step declines, so both run.</summary>
    private sealed class TwoUndoWorkflow : Workflow<SeatState>
    {
        public static readonly QueueName Work = "race-work";

        public TwoUndoWorkflow()
            : base("race_two_undo")
        {
            Step("a").Send(Work, s => new DoA(s.Id)).On<Done>().Then("b")
                .CompensateWith(Work, s => new UndoA(s.Id)).ConfirmCompensationBy<Undone>(TimeSpan.FromMinutes(5), 2);
            Step("b").Send(Work, s => new DoB(s.Id)).On<Done>().Then("c")
                .CompensateWith(Work, s => new UndoB(s.Id)).ConfirmCompensationBy<Undone>(TimeSpan.FromMilliseconds(300), 2);
            Step("c").Send(Work, s => new DoC(s.Id)).On<Declined>().Fail(_ => "declined").On<Done>().Complete()
                .NoCompensation("the last step");
        }
    }

    /// <summary>A hold retried when busy, up to three attempts, answered by nobody unless a test sends the answer.</summary>
    private sealed class RetriedHold : Workflow<SeatState>
    {
        public static readonly QueueName Silent = "race-retried";

        public RetriedHold()
            : base("race_retried") =>
            Step("hold").Send(Silent, s => new HoldSeat(s.Id)).On<SeatHeld>().Complete().On<SeatBusy>().Retry(_ => "busy")
                .Retry(3, TimeSpan.Zero).Timeout(TimeSpan.FromHours(1)).NoCompensation("nothing held");
    }

    /// <summary>A hold whose release is confirmed by the reply type the hold itself is answered with; b declines.</summary>
    private sealed class SharedReplyWorkflow : Workflow<SeatState>
    {
        public static readonly QueueName Work = "race-shared";

        public SharedReplyWorkflow()
            : base("race_shared")
        {
            Step("hold").Send(Work, s => new HoldSeat(s.Id)).On<Done>().Then("b")
                .CompensateWith(Work, s => new FreeSeat(s.Id)).ConfirmCompensationBy<Done>(TimeSpan.FromMinutes(5), 1);
            Step("b").Send(Work, s => new DoB(s.Id)).On<Declined>().Fail(_ => "declined").On<Done>().Complete()
                .NoCompensation("the last step");
        }
    }

    /// <summary>Step a suspends on a busy reply, and still takes a late success; step b never hears back.</summary>
    private sealed class SuspendingWorkflow : Workflow<SeatState>
    {
        public static readonly QueueName Jobs = "race-suspend";

        public SuspendingWorkflow()
            : base("race_suspend")
        {
            Step("a").Send(Jobs, s => new HoldSeat(s.Id)).On<SeatHeld>().Then("b").On<SeatBusy>().Fail(_ => "busy")
                .OnFailure(StepFailureAction.Suspend).NoCompensation("nothing to undo");
            Step("b").Send(Jobs, s => new DoB(s.Id)).On<Done>().Complete().NoCompensation("nothing to undo");
        }
    }

    private sealed class LongNamed(string name) : Workflow<SeatState>(name)
    {
        public LongNamed Build()
        {
            Step("wait").Wait(TimeSpan.FromHours(1)).Complete();
            return this;
        }
    }

    /// <summary>Runs <see cref="Before"/> once, just before the first commit that <see cref="When"/> picks.</summary>
    private sealed class HookedBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public Func<MessageTransaction, bool>? When { get; set; }

        public Func<Task>? Before { get; set; }

        public override async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
        {
            if (When is { } when && when(transaction))
            {
                When = null;
                await Before!();
            }

            return await base.CommitAsync(transaction, cancellationToken);
        }
    }

    private static async Task<WorkflowInstance> UntilAsync(CairnTestHost host, string workflow, string id, Func<WorkflowInstance, bool> condition, string what)
    {
        WorkflowInstance? instance = null;
        await Wait.UntilAsync(async () => (instance = await host.Workflows.GetAsync(workflow, id)) is { } i && condition(i), what);
        return instance!;
    }

    [Fact]
    public async Task an_operators_skip_is_refused_when_a_late_reply_moved_the_instance_on_while_it_was_decided()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new HookedBroker(new InMemoryMessageBroker(store, checkpoints));
        await using var sut = new StoreUnderTest(store, checkpoints, broker: broker, projections: new InMemoryProjectionStore(store));
        var received = new ConcurrentQueue<string>();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(SuspendingWorkflow.Jobs).AddConsumer(SuspendingWorkflow.Jobs, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case HoldSeat h:
                        received.Enqueue("a");
                        context.Reply(new SeatBusy(h.Id));
                        break;
                    case DoB:
                        received.Enqueue("b");
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new SuspendingWorkflow());
        });
        await host.Workflows.StartAsync("race_suspend", "x", new SeatState("x"));
        await UntilAsync(host, "race_suspend", "x", i => i.Status == WorkflowStatus.Suspended, "a fails and suspends");

        // The skip's first commit waits while a late success of a moves the instance on to b.
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        broker.When = t => t.Appends.SelectMany(a => a.Streams).SelectMany(s => s.Events).Any(e => e.Type == "cairn.workflow.step-skipped");
        broker.Before = async () =>
        {
            await broker.Inner.SendAsync("workflow-race_suspend", serializer.ToOutgoingMessage(new SeatHeld("x")) with { CorrelationId = "x" });
            await UntilAsync(host, "race_suspend", "x", i => i.CurrentStep == "b", "the late reply moves the instance to b");
        };

        var refused = await Assert.ThrowsAsync<WorkflowStateException>(() => host.Workflows.SkipAsync("race_suspend", "x", "a was done by hand"));

        Assert.Contains("moved on while the skip was decided", refused.Message, StringComparison.Ordinal);
        Assert.Contains("step 'a'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("step 'b'", refused.Message, StringComparison.Ordinal);
        var instance = await host.Workflows.GetAsync("race_suspend", "x");
        Assert.Equal(("b", WorkflowStatus.Running), (instance!.CurrentStep, instance.Status));
        Assert.DoesNotContain((await host.Workflows.GetHistoryAsync("race_suspend", "x")).Select(e => e.Event), e => e is StepSkipped);
    }

    [Fact]
    public async Task a_step_takes_a_reply_that_the_previous_steps_command_caused()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        string? command = null;
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(PlaceAndShip.Orders).AddConsumer(PlaceAndShip.Orders, (context, _) =>
            {
                command = context.Message.Id.ToString();
                context.Reply(new OrderPlaced(context.Read<PlaceOrder>().Id));
                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new PlaceAndShip());
        });
        await host.Workflows.StartAsync("race_place", "o-1", new SeatState("o-1"));
        await UntilAsync(host, "race_place", "o-1", i => i.CurrentStep == "await-shipment", "the order is placed");

        // The orders service ships the order later, as a consequence of the same command.
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var shipped = serializer.ToOutgoingMessage(new OrderShipped("o-1")) with { CorrelationId = "o-1", CausationId = command };
        await sut.Broker.SendAsync("workflow-race_place", shipped);

        var ended = await UntilAsync(host, "race_place", "o-1", i => i.IsFinished, "the shipment completes the instance");
        Assert.Equal(WorkflowStatus.Completed, ended.Status);
    }

    [Fact]
    public async Task an_operators_retry_is_decided_on_the_stored_instance_not_on_a_fold_another_process_moved_on_from()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        void Configure(CairnBuilder cairn) => cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered());
        await using var one = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), Configure);
        await using var two = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), Configure);

        // The first process keeps the fold of its start; the second retries the step meanwhile.
        await one.Workflows.StartAsync("race_unanswered", "o-1", new SeatState("o-1"));
        await two.Workflows.RetryAsync("race_unanswered", "o-1", "the first operator retries");
        Assert.Equal(2, (await one.Workflows.GetAsync("race_unanswered", "o-1"))!.Attempt);

        var retried = await one.Workflows.RetryAsync("race_unanswered", "o-1", "the second operator retries what they saw");
        Assert.Equal(3, retried.Attempt);
    }

    [Fact]
    public async Task a_cancel_during_a_retrys_backoff_sends_the_compensation_after_the_delayed_attempt()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var effects = new ConcurrentQueue<string>();
        var holds = 0;
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(HoldWorkflow.Seats).AddConsumer(
                HoldWorkflow.Seats,
                (context, _) =>
                {
                    switch (context.Read<object>())
                    {
                        case HoldSeat h when Interlocked.Increment(ref holds) == 1:
                            effects.Enqueue("busy");
                            context.Reply(new SeatBusy(h.Id));
                            break;
                        case HoldSeat h:
                            effects.Enqueue("hold");
                            context.Reply(new SeatHeld(h.Id));
                            break;
                        case FreeSeat:
                            effects.Enqueue("free");
                            break;
                    }

                    return ValueTask.CompletedTask;
                },
                c => c with { Concurrency = 1 });
            cairn.AddWorkflow(new HoldWorkflow());
        });
        await host.Workflows.StartAsync("race_hold", "seat-1", new SeatState("seat-1"));
        await UntilAsync(host, "race_hold", "seat-1", i => i.Attempt == 2, "the second attempt is sent for after its backoff");

        var cancelled = await host.Workflows.CancelAsync("race_hold", "seat-1", "customer left");
        Assert.Equal(WorkflowStatus.Cancelled, cancelled.Status);
        var history = await host.Workflows.GetHistoryAsync("race_hold", "seat-1");
        var retry = history.Select(e => e.Event).OfType<StepStarted>().Single(s => s.Attempt == 2);
        var compensation = history.Select(e => e.Event).OfType<CompensationStarted>().Single();
        Assert.Equal(retry.SendAt, compensation.SendAt);

        // The delayed attempt still goes out (a queued message cannot be recalled); its release comes after it.
        await Wait.UntilAsync(() => effects.Count == 3, "the delayed attempt and the release are handled");
        Assert.Equal(["busy", "hold", "free"], effects);
    }

    [Fact]
    public async Task a_second_confirmation_of_one_compensation_does_not_confirm_the_next_that_shares_its_type()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var received = new ConcurrentQueue<string>();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(TwoUndoWorkflow.Work).AddConsumer(TwoUndoWorkflow.Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case DoA a:
                        context.Reply(new Done(a.Id));
                        break;
                    case DoB b:
                        context.Reply(new Done(b.Id));
                        break;
                    case DoC c:
                        context.Reply(new Declined(c.Id));
                        break;
                    case UndoA:
                        received.Enqueue("undo-a");
                        break;
                    case UndoB:
                        received.Enqueue("undo-b");
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new TwoUndoWorkflow());
        });
        const string Workflow = "race_two_undo";
        await host.Workflows.StartAsync(Workflow, "x", new SeatState("x"));
        await UntilAsync(host, Workflow, "x", i => i is { CurrentCompensation: "b", CompensationAttempt: 2 }, "b's compensation is on its second attempt");
        await Wait.UntilAsync(() => received.Count(r => r == "undo-b") == 2, "both attempts of undo-b are received");

        // The service answers both attempts of b's compensation: the first confirms b, the second must not confirm a.
        var attempts = (await host.Workflows.GetHistoryAsync(Workflow, "x")).Select(e => e.Event).OfType<CompensationStarted>().Where(c => c.Step == "b").Select(c => c.MessageId).ToList();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        OutgoingMessage? last = null;
        foreach (var attempt in attempts)
        {
            var reply = serializer.ToOutgoingMessage(new Undone("x")) with { CorrelationId = "x", CausationId = attempt };
            await sut.Broker.SendAsync("workflow-race_two_undo", reply);
            await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(Workflow, "x")).Any(e => e.CausationId == reply.Id.ToString()), "the answer is handled");
            last = reply;
        }

        var instance = await host.Workflows.GetAsync(Workflow, "x");
        Assert.Equal(("a", WorkflowStatus.Compensating), (instance!.CurrentCompensation, instance.Status));
        Assert.Equal(["b"], instance.CompensatedSteps);
        // The event the second answer caused, not the last one: b's 300 ms timer, still queued, may be ignored after it.
        var ignored = Assert.IsType<ReplyIgnored>((await host.Workflows.GetHistoryAsync(Workflow, "x")).Single(e => e.CausationId == last!.Id.ToString()).Event);
        Assert.Contains("the compensation of 'b', which is over", ignored.Reason, StringComparison.Ordinal);
    }

    // The first attempt's "busy" comes after an operator's retry sent the second: it asks for what is under way, and
    // must not spend the third attempt. The second attempt's own "busy" still does.
    [Fact]
    public async Task a_retryable_failure_of_an_attempt_a_later_one_replaced_does_not_spend_an_attempt()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(RetriedHold.Silent).AddWorkflow(new RetriedHold()));
        const string Workflow = "race_retried";
        await host.Workflows.StartAsync(Workflow, "x", new SeatState("x"));
        await host.Workflows.RetryAsync(Workflow, "x", "nudge");
        var attempts = (await host.Workflows.GetHistoryAsync(Workflow, "x")).Select(e => e.Event).OfType<StepStarted>().Select(s => s.MessageId).ToList();
        Assert.Equal(2, attempts.Count);
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        var stale = serializer.ToOutgoingMessage(new SeatBusy("x")) with { CorrelationId = "x", CausationId = attempts[0] };
        await sut.Broker.SendAsync("workflow-" + Workflow, stale);
        await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(Workflow, "x")).Any(e => e.CausationId == stale.Id.ToString()), "the first attempt's answer is handled");

        Assert.Equal(2, (await host.Workflows.GetAsync(Workflow, "x"))!.Attempt);
        var ignored = Assert.IsType<ReplyIgnored>((await host.Workflows.GetHistoryAsync(Workflow, "x")).Last().Event);
        Assert.Equal("a retryable failure of an earlier attempt of step 'hold', which attempt 2 has replaced", ignored.Reason);

        var current = serializer.ToOutgoingMessage(new SeatBusy("x")) with { CorrelationId = "x", CausationId = attempts[1] };
        await sut.Broker.SendAsync("workflow-" + Workflow, current);
        await UntilAsync(host, Workflow, "x", i => i.Attempt == 3, "the second attempt's answer starts the third");
    }

    // A service that answers its command twice (say, once for each delivery of it): the second answer comes while the
    // step's compensation waits for its confirmation, which has the same type. Its causation says it answers the hold,
    // not the release; it must not confirm a release that has not happened.
    [Fact]
    public async Task a_late_answer_to_a_steps_command_does_not_confirm_its_compensation_that_waits_for_the_same_type()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var released = 0;
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(SharedReplyWorkflow.Work).AddConsumer(SharedReplyWorkflow.Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case HoldSeat h:
                        context.Reply(new Done(h.Id));
                        break;
                    case DoB b:
                        context.Reply(new Declined(b.Id));
                        break;
                    case FreeSeat:
                        Interlocked.Increment(ref released);
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new SharedReplyWorkflow());
        });
        const string Workflow = "race_shared";
        await host.Workflows.StartAsync(Workflow, "x", new SeatState("x"));
        await UntilAsync(host, Workflow, "x", i => i.CurrentCompensation == "hold", "b is declined and the hold's release waits for its confirmation");
        await Wait.UntilAsync(() => Volatile.Read(ref released) == 1, "the release is received");

        var hold = (await host.Workflows.GetHistoryAsync(Workflow, "x")).Select(e => e.Event).OfType<StepStarted>().Single(s => s.Step == "hold").MessageId;
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var late = serializer.ToOutgoingMessage(new Done("x")) with { CorrelationId = "x", CausationId = hold };
        await sut.Broker.SendAsync("workflow-race_shared", late);
        await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(Workflow, "x")).Any(e => e.CausationId == late.Id.ToString()), "the late answer is handled");

        var instance = await host.Workflows.GetAsync(Workflow, "x");
        Assert.Equal(("hold", WorkflowStatus.Compensating), (instance!.CurrentCompensation, instance.Status));
        Assert.Empty(instance.CompensatedSteps);
        var ignored = Assert.IsType<ReplyIgnored>((await host.Workflows.GetHistoryAsync(Workflow, "x")).Last().Event);
        Assert.Matches("^an answer to the visit of step 'hold' that began at version [0-9]+, which is over$", ignored.Reason);
    }

    [Fact]
    public async Task a_confirmation_after_its_compensation_suspended_ends_the_compensation()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var services = new CheckoutServices { DeclineAbove = 0m, ConfirmReleases = false };
        await using var host = await CairnTestHost.StartAsync(sut, o => CheckoutWorkflow.Register(o.EventTypes), cairn =>
        {
            services.AddTo(cairn);
            cairn.AddWorkflow(new CheckoutWorkflow(confirmStockRelease: true, releaseAttempts: 1, releaseTimeout: TimeSpan.FromMilliseconds(100)));
        });
        await host.Workflows.StartAsync("checkout", "order-1", new CheckoutState("order-1", "sku-1", 1, 10m));
        await UntilAsync(host, "checkout", "order-1", i => i.Status == WorkflowStatus.Suspended, "the release is not confirmed in time");

        // The inventory confirms the release late.
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        await sut.Broker.SendAsync("workflow-checkout", serializer.ToOutgoingMessage(new StockReleased("order-1")) with { CorrelationId = "order-1" });

        var ended = await UntilAsync(host, "checkout", "order-1", i => i.IsFinished, "the confirmation ends the compensation");
        Assert.Equal(WorkflowStatus.Failed, ended.Status);
        Assert.Equal(["reserve-stock"], ended.CompensatedSteps);
    }

    [Fact]
    public async Task a_workflow_with_a_long_name_refuses_an_instance_id_its_stream_name_could_not_hold_saying_how_long_one_may_be()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var name = new string('w', 100);
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn => cairn.AddWorkflow(new LongNamed(name).Build()));

        var refused = await Assert.ThrowsAsync<ArgumentException>(() => host.Workflows.StartAsync(name, new string('i', 153), new SeatState("x")));
        Assert.Contains("use 1 to 152 characters", refused.Message, StringComparison.Ordinal);

        var started = await host.Workflows.StartAsync(name, new string('i', 152), new SeatState("x"));
        Assert.Equal(WorkflowStatus.Running, started.Status);
    }
}
