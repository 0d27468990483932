using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;
using Cairn.Workflows;

namespace Cairn.Tests.Workflows;

[EventType("reasons.do-a")] public sealed record RsDoA(string Id);
[EventType("reasons.undo-a")] public sealed record RsUndoA(string Id);
[EventType("reasons.undone-a")] public sealed record RsUndoneA(string Id);
[EventType("reasons.do-b")] public sealed record RsDoB(string Id);
[EventType("reasons.done")] public sealed record RsDone(string Id);
[EventType("reasons.declined")] public sealed record RsDeclined(string Id);

public sealed record RsState(string Id);

/// <summary>
/// What an instance says about why it ended (a compensation suspended on the way does not replace the step's or the
/// operator's reason; an instance resumed and completed carries none), and the client's refusals coming through its tasks.
/// </summary>
public sealed class WorkflowReasonAndRefusalTests
{
    private static readonly QueueName Work = "reasons-work";
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static void Register(EventTypeRegistry types) =>
        types.Register<RsDoA>().Register<RsUndoA>().Register<RsUndoneA>().Register<RsDoB>().Register<RsDone>().Register<RsDeclined>();

    private static EventSerializer Serializer()
    {
        var types = new EventTypeRegistry();
        Register(types);
        WorkflowEventTypes.Register(types);
        return new EventSerializer(types);
    }

    /// <summary>
    /// Step a is undone by a confirmed compensation with one attempt; step b is declined (failing the workflow) or,
    /// when asked, suspends for an operator.
    /// </summary>
    private sealed class ConfirmedUndo : Workflow<RsState>
    {
        public ConfirmedUndo(string name, bool suspendB = false)
            : base(name)
        {
            Step("a").Send(Work, s => new RsDoA(s.Id)).On<RsDone>().Then("b")
                .CompensateWith(Work, s => new RsUndoA(s.Id)).ConfirmCompensationBy<RsUndoneA>(TimeSpan.FromMinutes(1), 1);
            var b = Step("b").Send(Work, s => new RsDoB(s.Id)).On<RsDone>().Complete().On<RsDeclined>().Fail(_ => "payment declined")
                .NoCompensation("a declined step took nothing");
            if (suspendB)
            {
                b.OnFailure(StepFailureAction.Suspend);
            }
        }
    }

    private static WorkflowModel Compile(Workflow<RsState> workflow, EventSerializer serializer) =>
        ((IWorkflowDefinition)workflow).Compile(serializer);

    private static WorkflowDecider Next(WorkflowModel model, EventSerializer serializer, WorkflowDecider previous, int seconds) =>
        new(model, serializer, previous.Instance, "o-1", T0.AddSeconds(seconds));

    /// <summary>Starts an instance, completes step a, and returns the decider with step b running.</summary>
    private static WorkflowDecider AtStepB(WorkflowModel model, EventSerializer serializer)
    {
        var d = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", T0);
        d.Start(new RsState("o-1"), null);
        d = Next(model, serializer, d, 1);
        d.Reply("reasons.done", "r-a", new RsDone("o-1"), d.Instance.CurrentMessageId);
        Assert.Equal("b", d.Instance.CurrentStep);
        return d;
    }

    // docs/workflows.md, "Failures and compensation": "otherwise (the default) it compensates: ... each compensation's
    // message is sent in that order; the instance ends Failed with the step's reason." A confirmed compensation that is
    // not confirmed after its last attempt suspends the instance (WorkflowSuspended overwrites Reason with "the
    // compensation of 'a' was not confirmed after 1 attempts"); when the operator skips it, NextCompensation ends the
    // instance with WorkflowFailed(instance.Reason), i.e. with the suspension's reason instead of the step's.
    [Fact]
    public void a_failed_instance_whose_suspended_compensation_an_operator_skipped_ends_with_the_steps_reason()
    {
        var serializer = Serializer();
        var model = Compile(new ConfirmedUndo("reasons_fail"), serializer);
        var d = AtStepB(model, serializer);

        d = Next(model, serializer, d, 2);
        d.Reply("reasons.declined", "r-b", new RsDeclined("o-1"), d.Instance.CurrentMessageId);
        Assert.Equal(WorkflowStatus.Compensating, d.Instance.Status);
        Assert.Equal("payment declined", d.Instance.Reason);

        d = Next(model, serializer, d, 62);
        d.Timer(d.Instance.ArmedTimer!, d.Instance.Run);
        Assert.Equal(WorkflowStatus.Suspended, d.Instance.Status);

        d = Next(model, serializer, d, 63);
        d.Skip("released by hand");

        Assert.Equal(WorkflowStatus.Failed, d.Instance.Status);
        Assert.Equal("payment declined", Assert.IsType<WorkflowFailed>(d.Events[^1]).Reason);
        Assert.Equal("payment declined", d.Instance.Reason);
    }

    // docs/workflows.md: after a compensation's last attempt "the instance is Suspended at the compensation until an
    // operator retries or skips it, or its confirmation comes late, which goes on with the next compensation as an
    // answer in time would"; a cancelled instance ends Cancelled with the operator's reason (WorkflowInstance.Reason:
    // "why it is ... cancelled"). With a late confirmation, the instance ends Cancelled with the reason of the
    // compensation's suspension instead of "the customer gave up".
    [Fact]
    public void a_cancelled_instance_whose_suspended_compensation_is_confirmed_late_ends_with_the_cancel_reason()
    {
        var serializer = Serializer();
        var model = Compile(new ConfirmedUndo("reasons_cancel"), serializer);
        var d = AtStepB(model, serializer);

        d = Next(model, serializer, d, 2);
        d.Cancel("the customer gave up");
        Assert.Equal("a", d.Instance.CurrentCompensation);
        var undo = d.Instance.CurrentMessageId;

        d = Next(model, serializer, d, 62);
        d.Timer(d.Instance.ArmedTimer!, d.Instance.Run);
        Assert.Equal(WorkflowStatus.Suspended, d.Instance.Status);

        d = Next(model, serializer, d, 63);
        d.Reply("reasons.undone-a", "r-undone", new RsUndoneA("o-1"), undo);

        Assert.Equal(WorkflowStatus.Cancelled, d.Instance.Status);
        Assert.Equal("the customer gave up", Assert.IsType<WorkflowCancelled>(d.Events[^1]).Reason);
    }

    // WorkflowInstance.Reason is documented as "why it is compensating, suspended, failed or cancelled" (and the
    // summary's Reason the same). A step that suspended after a decline, retried by an operator and then answered,
    // completes the workflow, yet the completed instance still carries the old suspension's reason: nothing that
    // resumes the instance (StepRetryRequested/StepStarted) or completes it (WorkflowCompleted) clears it.
    [Fact]
    public void an_instance_completed_after_an_operator_retried_its_suspended_step_carries_no_failure_reason()
    {
        var serializer = Serializer();
        var model = Compile(new ConfirmedUndo("reasons_resume", suspendB: true), serializer);
        var d = AtStepB(model, serializer);

        d = Next(model, serializer, d, 2);
        d.Reply("reasons.declined", "r-b1", new RsDeclined("o-1"), d.Instance.CurrentMessageId);
        Assert.Equal(WorkflowStatus.Suspended, d.Instance.Status);

        d = Next(model, serializer, d, 3);
        d.Retry("the card was topped up");
        d = Next(model, serializer, d, 4);
        d.Reply("reasons.done", "r-b2", new RsDone("o-1"), d.Instance.CurrentMessageId);

        Assert.Equal(WorkflowStatus.Completed, d.Instance.Status);
        Assert.Null(d.Instance.Reason);
    }

    // The summaries kept the decline's reason on the instance the operator's retry let complete, as the fold did.
    [Fact]
    public async Task the_summary_of_an_instance_completed_after_an_operator_retried_its_suspended_step_carries_no_reason()
    {
        var serializer = Serializer();
        var model = Compile(new ConfirmedUndo("reasons_summary", suspendB: true), serializer);
        var history = Replayed(model, serializer).ToList();
        var d = AtStepB(model, serializer);
        d = Next(model, serializer, d, 2);
        d.Reply("reasons.declined", "r-b1", new RsDeclined("o-1"), d.Instance.CurrentMessageId);
        history.AddRange(d.Events);
        d = Next(model, serializer, d, 3);
        d.Retry("the card was topped up");
        history.AddRange(d.Events);
        d = Next(model, serializer, d, 4);
        d.Reply("reasons.done", "r-b2", new RsDone("o-1"), d.Instance.CurrentMessageId);
        history.AddRange(d.Events);
        Assert.IsType<WorkflowCompleted>(history[^1]);

        var summary = await SummaryOfAsync("reasons_summary", history, serializer);
        Assert.Equal(WorkflowStatus.Completed, summary!.Status);
        Assert.Null(summary.Reason);
    }

    // The fold put the compensation's reason back when an operator retried a suspended compensation, and the summaries
    // kept the suspension's: the client's GetAsync and its Query said different things.
    [Fact]
    public async Task a_compensation_retried_from_its_suspension_reads_the_same_in_the_fold_and_the_summaries()
    {
        var serializer = Serializer();
        var model = Compile(new ConfirmedUndo("reasons_retried"), serializer);
        var history = Replayed(model, serializer).ToList();
        var d = AtStepB(model, serializer);
        d = Next(model, serializer, d, 2);
        d.Reply("reasons.declined", "r-b", new RsDeclined("o-1"), d.Instance.CurrentMessageId);
        history.AddRange(d.Events);
        d = Next(model, serializer, d, 62);
        d.Timer(d.Instance.ArmedTimer!, d.Instance.Run);
        history.AddRange(d.Events);
        d = Next(model, serializer, d, 63);
        d.Retry("the undo service is back");
        history.AddRange(d.Events);
        Assert.Equal(WorkflowStatus.Compensating, d.Instance.Status);

        var summary = await SummaryOfAsync("reasons_retried", history, serializer);

        Assert.Equal(WorkflowStatus.Compensating, summary!.Status);
        Assert.Equal(d.Instance.Reason, summary.Reason);
        Assert.Equal("the compensation of 'a' was not confirmed after 1 attempts", summary.Reason);

        // And it still ends with the step's reason.
        d = Next(model, serializer, d, 64);
        d.Reply("reasons.undone-a", "r-undone", new RsUndoneA("o-1"), d.Instance.CurrentMessageId);
        Assert.Equal("payment declined", Assert.IsType<WorkflowFailed>(d.Events[^1]).Reason);
    }

    /// <summary>The summary the <see cref="WorkflowSummaries"/> projection makes of an instance with this history.</summary>
    private static async Task<WorkflowSummary?> SummaryOfAsync(string workflow, IEnumerable<WorkflowEvent> history, EventSerializer serializer)
    {
        var store = new InMemoryEventStore();
        var stream = new StreamName($"wf:{workflow}-o-1");
        await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, [.. history.Select(e => serializer.ToEventData(e))]);
        var projections = new InMemoryProjectionStore(store);
        var summaries = new WorkflowSummaries();
        await using var runner = new ProjectionRunner(summaries, store, projections, serializer);
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Wait.Timeout);
        return await new ReadModels(projections, serializer, [summaries]).LoadAsync<WorkflowSummary>(stream.Value);
    }

    /// <summary>The events of <see cref="AtStepB"/>: the start and step a's completion.</summary>
    private static IEnumerable<WorkflowEvent> Replayed(WorkflowModel model, EventSerializer serializer)
    {
        var d = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", T0);
        d.Start(new RsState("o-1"), null);
        var events = d.Events.ToList();
        d = Next(model, serializer, d, 1);
        d.Reply("reasons.done", "r-a", new RsDone("o-1"), d.Instance.CurrentMessageId);
        events.AddRange(d.Events);
        return events;
    }

    /// <summary>One step whose only reply fails it: nothing leads on from it.</summary>
    private sealed class DeadEnd : Workflow<RsState>
    {
        public DeadEnd()
            : base("reasons_dead_end") =>
            Step("a").Send(Work, s => new RsDoA(s.Id)).On<RsDeclined>().Fail(_ => "declined").NoCompensation("nothing done");
    }

    // The refusal said "its replies lead to different steps" of a step whose replies lead nowhere.
    [Fact]
    public void skipping_a_step_none_of_whose_replies_leads_on_says_so()
    {
        var serializer = Serializer();
        var model = Compile(new DeadEnd(), serializer);
        var d = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", T0);
        d.Start(new RsState("o-1"), null);
        d = Next(model, serializer, d, 1);

        var refused = Assert.Throws<WorkflowStateException>(() => d.Skip("by hand"));

        Assert.Equal("Step 'a' of workflow 'reasons_dead_end' cannot be skipped: none of its replies leads on and it names no next step (Then or Complete).", refused.Message);
    }

    private static readonly Dictionary<string, (Type Expected, Func<WorkflowClient, Task> Call)> ClientRefusals = new()
    {
        ["start-unknown-workflow"] = (typeof(WorkflowNotFoundException), c => c.StartAsync("nope", "o-1", new RsState("o-1"))),
        ["start-invalid-id"] = (typeof(ArgumentException), c => c.StartAsync("reasons_client", " padded ", new RsState("o-1"))),
        ["start-wrong-state-type"] = (typeof(ArgumentException), c => c.StartAsync("reasons_client", "o-1", "not a state")),
        ["get-invalid-id"] = (typeof(ArgumentException), c => c.GetAsync("reasons_client", "")),
        ["get-as-of-unknown-workflow"] = (typeof(WorkflowNotFoundException), c => c.GetAsOfAsync("nope", "o-1", T0)),
        ["cancel-empty-reason"] = (typeof(ArgumentException), c => c.CancelAsync("reasons_client", "o-1", " ")),
        ["retry-unknown-workflow"] = (typeof(WorkflowNotFoundException), c => c.RetryAsync("nope", "o-1")),
        ["skip-invalid-id"] = (typeof(ArgumentException), c => c.SkipAsync("reasons_client", "", "why")),
    };

    public static TheoryData<string> ClientRefusalCases => new(ClientRefusals.Keys);

    // The project's rule for bad input (tests/Cairn.Conformance/BadInputParityTests.cs): "the same typed error, through
    // the returned task rather than thrown by the call (so a caller who starts several calls and awaits them later, or
    // with Task.WhenAll, sees the same thing everywhere)". WorkflowClient's Task-returning calls are not async methods:
    // they validate the workflow name, the instance id, the state and the reason before returning a task, and throw
    // from the call itself. (GetHistoryAsync, an async method, already refuses an invalid id through its task.)
    [Theory]
    [MemberData(nameof(ClientRefusalCases))]
    public async Task a_workflow_client_refusal_is_reported_through_the_returned_task_not_thrown_by_the_call(string @case)
    {
        var (expected, call) = ClientRefusals[@case];
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Work).AddWorkflow(new ConfirmedUndo("reasons_client")));

        await ThroughTask.RefusedAsync(() => call(host.Workflows), expected);
    }
}
