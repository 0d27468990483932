using Cairn.Conformance.Support;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Workflows;

[EventType("attempt.do-a")] public sealed record AtDoA(string Id);
[EventType("attempt.do-b")] public sealed record AtDoB(string Id);
[EventType("attempt.do-c")] public sealed record AtDoC(string Id);
[EventType("attempt.undo-a")] public sealed record AtUndoA(string Id);
[EventType("attempt.undo-b")] public sealed record AtUndoB(string Id);
[EventType("attempt.done")] public sealed record AtDone(string Id);
[EventType("attempt.undone")] public sealed record AtUndone(string Id);
[EventType("attempt.declined")] public sealed record AtDeclined(string Id);

public sealed record AtState(string Id);

/// <summary>
/// Workflows whose steps are answered more than once (one answer per attempt, as the idempotency key's contract
/// invites), and in-flight instances meeting a changed definition.
/// </summary>
public sealed class WorkflowAttemptEdgeTests
{
    private static readonly QueueName Silent = "attempt-silent";

    private static void Register(EventTypeRegistry types) =>
        types.Register<AtDoA>().Register<AtDoB>().Register<AtDoC>().Register<AtUndoA>().Register<AtUndoB>()
            .Register<AtDone>().Register<AtUndone>().Register<AtDeclined>();

    private static EventSerializer Serializer()
    {
        var types = new EventTypeRegistry();
        Register(types);
        WorkflowEventTypes.Register(types);
        return new EventSerializer(types);
    }

    private sealed class Defined(string name, Action<Defined> define) : Workflow<AtState>(name)
    {
        public Defined Build()
        {
            define(this);
            return this;
        }

        public WorkflowStep<AtState> Add(string step) => Step(step);
    }

    /// <summary>Two steps answered by the same reply type; step a is retried after a timeout.</summary>
    private static Defined SharedDone(string name) => new Defined(name, w =>
    {
        w.Add("a").Send(Silent, s => new AtDoA(s.Id)).On<AtDone>().Then("b")
            .Timeout(TimeSpan.FromMinutes(1)).Retry(2, TimeSpan.Zero).NoCompensation("nothing to undo");
        w.Add("b").Send(Silent, s => new AtDoB(s.Id)).On<AtDone>().Complete().NoCompensation("the last step");
    }).Build();

    // WorkflowReplies.IdempotencyKey: "the same on every attempt of one step of one instance, so the service can do the
    // work once and answer each attempt". Step a timed out and was retried, and the service answered both attempts.
    // The first answer completes a; the second is a repeat answer to a's command (its causation id says so), not an
    // answer to b, whose command the service has not even received. It must be ignored, as a late answer to an
    // earlier visit of the same step is; taken by its type, it completes b (and here the whole workflow) unanswered.
    [Fact]
    public void a_second_answer_to_a_retried_step_does_not_complete_the_next_step_that_waits_for_the_same_reply_type()
    {
        var serializer = Serializer();
        var model = ((IWorkflowDefinition)SharedDone("attempt_shared")).Compile(serializer);
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        var start = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", t0);
        start.Start(new AtState("o-1"), null);
        var attempt1 = start.Instance.CurrentMessageId!;

        var timeout = new WorkflowDecider(model, serializer, start.Instance, "o-1", t0.AddMinutes(1));
        timeout.Timer(timeout.Instance.ArmedTimer!, timeout.Instance.Run);
        Assert.Equal(2, timeout.Instance.Attempt);
        var attempt2 = timeout.Instance.CurrentMessageId!;

        var first = new WorkflowDecider(model, serializer, timeout.Instance, "o-1", t0.AddMinutes(1).AddSeconds(1));
        first.Reply("attempt.done", "reply-1", new AtDone("o-1"), attempt1);
        Assert.Equal("b", first.Instance.CurrentStep);

        var second = new WorkflowDecider(model, serializer, first.Instance, "o-1", t0.AddMinutes(1).AddSeconds(2));
        second.Reply("attempt.done", "reply-2", new AtDone("o-1"), attempt2);

        Assert.Equal(WorkflowStatus.Running, second.Instance.Status);
        Assert.Equal("b", second.Instance.CurrentStep);
        Assert.IsType<ReplyIgnored>(Assert.Single(second.Events));
    }

    // The same through a host: an operator retries step a while its first attempt is still unanswered (RetryAsync:
    // "a new attempt of the current step ... keeping its idempotency key"); the service answers both attempts. Step b
    // must still be waiting for its own answer.
    [Fact]
    public async Task a_hosted_instance_whose_retried_step_is_answered_twice_still_waits_for_the_next_steps_answer()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Silent).AddWorkflow(SharedDone("attempt_hosted")));
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        const string Workflow = "attempt_hosted";

        await host.Workflows.StartAsync(Workflow, "x", new AtState("x"));
        await host.Workflows.RetryAsync(Workflow, "x", "the service looked stuck");
        var attempts = (await host.Workflows.GetHistoryAsync(Workflow, "x")).Select(e => e.Event).OfType<StepStarted>()
            .Where(s => s.Step == "a").Select(s => s.MessageId!).ToList();
        Assert.Equal(2, attempts.Count);

        foreach (var (attempt, n) in attempts.Select((a, i) => (a, i)))
        {
            var answer = serializer.ToOutgoingMessage(new AtDone("x")) with { CorrelationId = "x", CausationId = attempt };
            await sut.Broker.SendAsync("workflow-" + Workflow, answer);
            await Wait.UntilAsync(async () => (await host.Workflows.GetHistoryAsync(Workflow, "x")).Any(e => e.CausationId == answer.Id.ToString()), $"answer {n + 1} is handled");
        }

        var instance = (await host.Workflows.GetAsync(Workflow, "x"))!;
        Assert.Equal(WorkflowStatus.Running, instance.Status);
        Assert.Equal("b", instance.CurrentStep);
    }

    // docs/workflows.md: "a running instance follows the definition hosted now, and one whose history names a step the
    // definition no longer has fails with WorkflowStateException naming it." Version 2 keeps step a but drops its
    // compensation (NoCompensation). An instance of version 1 compensating b (confirmed) still has a's compensation
    // pending; when b's undo is confirmed, the decision dereferences a's missing compensation and throws a
    // NullReferenceException: the confirmation is retried until dead-lettered and the instance stays compensating.
    [Fact]
    public void a_pending_compensation_whose_step_no_longer_compensates_in_the_hosted_definition_does_not_crash_the_decision()
    {
        var serializer = Serializer();
        var v1 = ((IWorkflowDefinition)new Defined("attempt_versions", w =>
        {
            w.Add("a").Send(Silent, s => new AtDoA(s.Id)).On<AtDone>().Then("b").CompensateWith(Silent, s => new AtUndoA(s.Id));
            w.Add("b").Send(Silent, s => new AtDoB(s.Id)).On<AtDone>().Then("c")
                .CompensateWith(Silent, s => new AtUndoB(s.Id)).ConfirmCompensationBy<AtUndone>(TimeSpan.FromMinutes(5), 1);
            w.Add("c").Send(Silent, s => new AtDoC(s.Id)).On<AtDeclined>().Fail(_ => "declined").On<AtDone>().Complete().NoCompensation("the last step");
        }).Build()).Compile(serializer);
        var v2 = ((IWorkflowDefinition)new Defined("attempt_versions", w =>
        {
            w.Add("a").Send(Silent, s => new AtDoA(s.Id)).On<AtDone>().Then("b").NoCompensation("nothing to undo after all");
            w.Add("b").Send(Silent, s => new AtDoB(s.Id)).On<AtDone>().Then("c")
                .CompensateWith(Silent, s => new AtUndoB(s.Id)).ConfirmCompensationBy<AtUndone>(TimeSpan.FromMinutes(5), 1);
            w.Add("c").Send(Silent, s => new AtDoC(s.Id)).On<AtDeclined>().Fail(_ => "declined").On<AtDone>().Complete().NoCompensation("the last step");
        }) { Version = 2 }.Build()).Compile(serializer);
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        var d = new WorkflowDecider(v1, serializer, new WorkflowInstance(), "o-1", t0);
        d.Start(new AtState("o-1"), null);
        d = new WorkflowDecider(v1, serializer, d.Instance, "o-1", t0.AddSeconds(1));
        d.Reply("attempt.done", "r-a", new AtDone("o-1"), d.Instance.CurrentMessageId);
        d = new WorkflowDecider(v1, serializer, d.Instance, "o-1", t0.AddSeconds(2));
        d.Reply("attempt.done", "r-b", new AtDone("o-1"), d.Instance.CurrentMessageId);
        d = new WorkflowDecider(v1, serializer, d.Instance, "o-1", t0.AddSeconds(3));
        d.Reply("attempt.declined", "r-c", new AtDeclined("o-1"), d.Instance.CurrentMessageId);
        Assert.Equal("b", d.Instance.CurrentCompensation);
        Assert.Equal(["b", "a"], d.Instance.PendingCompensations);

        // Version 2 is deployed; b's undo is confirmed.
        var confirm = new WorkflowDecider(v2, serializer, d.Instance, "o-1", t0.AddSeconds(4));
        var error = Record.Exception(() => confirm.Reply("attempt.undone", "r-undo-b", new AtUndone("o-1"), confirm.Instance.CurrentMessageId));

        Assert.True(error is null or WorkflowStateException, $"expected the decision to go on or to refuse with a WorkflowStateException naming step 'a', got {error}");
        if (error is not null)
        {
            Assert.Contains("'a'", error.Message, StringComparison.Ordinal);
        }
    }
}
