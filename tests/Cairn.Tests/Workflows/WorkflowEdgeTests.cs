using System.Collections.Concurrent;
using Cairn.Conformance;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Projections.InMemory;
using Cairn.Serialization;
using Cairn.Subscriptions;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Workflows;

[EventType("edge.reserve")] public sealed record RvReserve(string Id);
[EventType("edge.release")] public sealed record RvRelease(string Id);
[EventType("edge.reserved")] public sealed record RvReserved(string Id);
[EventType("edge.charge")] public sealed record RvCharge(string Id);
[EventType("edge.refund")] public sealed record RvRefund(string Id);
[EventType("edge.charged")] public sealed record RvCharged(string Id);
[EventType("edge.declined")] public sealed record RvDeclined(string Id);
[EventType("edge.busy")] public sealed record RvBusy(string Id);

public sealed record RvState(string Id);

/// <summary>Workflows at their edges: cancels of refused steps, long backoffs, ids used again, deleted histories, loops.</summary>
public sealed class WorkflowEdgeTests
{
    private static readonly QueueName Work = "edge-work";

    private static void Register(EventTypeRegistry types) =>
        types.Register<RvReserve>().Register<RvRelease>().Register<RvReserved>().Register<RvCharge>()
            .Register<RvRefund>().Register<RvCharged>().Register<RvDeclined>().Register<RvBusy>();

    /// <summary>Reserve, then charge; the payment service declines, and the step suspends for an operator.</summary>
    private sealed class SuspendOnDecline : Workflow<RvState>
    {
        public SuspendOnDecline()
            : base("edge_decline")
        {
            Step("reserve").Send(Work, s => new RvReserve(s.Id)).On<RvReserved>().Then("charge")
                .CompensateWith(Work, s => new RvRelease(s.Id));
            Step("charge").Send(Work, s => new RvCharge(s.Id)).On<RvCharged>().Complete().On<RvDeclined>().Fail(_ => "declined")
                .OnFailure(StepFailureAction.Suspend)
                .CompensateWith(Work, s => new RvRefund(s.Id));
        }
    }

    /// <summary>One step retried after a long backoff when its service says it is busy, sent to the given queue.</summary>
    private sealed class LongBackoff : Workflow<RvState>
    {
        public LongBackoff(QueueName target, QueueName undo)
            : base("edge_backoff") =>
            Step("charge").Send(target, s => new RvCharge(s.Id)).On<RvCharged>().Complete().On<RvBusy>().Retry(_ => "busy")
                .Retry(3, TimeSpan.FromHours(2))
                .CompensateWith(undo, s => new RvRefund(s.Id));
    }

    /// <summary>A step nobody answers, suspended when it times out.</summary>
    private sealed class Unanswered : Workflow<RvState>
    {
        public static readonly QueueName Silent = "edge-silent";

        public Unanswered(TimeSpan timeout)
            : base("edge_silent") =>
            Step("charge").Send(Silent, s => new RvCharge(s.Id)).On<RvCharged>().Complete()
                .Timeout(timeout).OnFailure(StepFailureAction.Suspend).NoCompensation("nothing to undo");
    }

    /// <summary>Reserve, charge, and reserve again after each charge, until a charge is declined.</summary>
    private sealed class ReserveLoop : Workflow<RvState>
    {
        public ReserveLoop()
            : base("edge_loop")
        {
            Step("reserve").Send(Work, s => new RvReserve(s.Id)).On<RvReserved>().Then("charge")
                .CompensateWith(Work, s => new RvRelease(s.Id));
            Step("charge").Send(Work, s => new RvCharge(s.Id)).On<RvCharged>().Then("reserve").On<RvDeclined>().Fail(_ => "declined")
                .NoCompensation("a declined charge took nothing");
        }
    }

    private static async Task<WorkflowInstance> UntilAsync(CairnTestHost host, string workflow, string id, Func<WorkflowInstance, bool> condition, string what)
    {
        WorkflowInstance? instance = null;
        await Wait.UntilAsync(async () => (instance = await host.Workflows.GetAsync(workflow, id)) is { } i && condition(i), what);
        return instance!;
    }

    private static ConsumerStatus Coordinator(CairnTestHost host, string workflow) =>
        host.Services.GetRequiredService<ConsumerMonitor>().Find("workflow-" + workflow)!.Status;

    // "A step that failed by a reply is not itself compensated: the service said no" (docs/workflows.md), also when
    // an operator cancels the instance suspended after it: the stock is released, and no refund is sent for a charge
    // the payment service declined.
    [Fact]
    public async Task cancelling_an_instance_suspended_after_its_service_refused_the_step_leaves_that_step_uncompensated()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var effects = new ConcurrentQueue<string>();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case RvReserve r:
                        context.Reply(new RvReserved(r.Id));
                        break;
                    case RvCharge c:
                        context.Reply(new RvDeclined(c.Id));
                        break;
                    case RvRelease:
                        effects.Enqueue("release");
                        break;
                    case RvRefund:
                        effects.Enqueue("refund");
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new SuspendOnDecline());
        });
        await host.Workflows.StartAsync("edge_decline", "o-1", new RvState("o-1"));
        await UntilAsync(host, "edge_decline", "o-1", i => i.Status == WorkflowStatus.Suspended, "the declined charge suspends");

        var cancelled = await host.Workflows.CancelAsync("edge_decline", "o-1", "the customer gave up");

        Assert.Equal(WorkflowStatus.Cancelled, cancelled.Status);
        var began = (await host.Workflows.GetHistoryAsync("edge_decline", "o-1")).Select(e => e.Event).OfType<CompensationBegan>().Single();
        Assert.Equal(["reserve"], began.Steps);
    }

    // A retry's backoff (up to a day) is the command sent for later to the step's queue. A queue whose retention it
    // reaches (here 1 hour for backoffs of 2 and 4 hours) would refuse it, so no decision on the busy reply could ever
    // commit and the instance would be stranded: the definition is refused when the host starts, naming both.
    [Fact]
    public async Task a_retry_backoff_that_reaches_its_queues_retention_is_refused_when_the_host_starts()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        QueueName target = "edge-short";

        var refused = await Assert.ThrowsAsync<InvalidWorkflowDefinitionException>(() => CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(new QueueDefinition(target) { Retention = TimeSpan.FromHours(1) });
            cairn.AddQueue(Work);
            cairn.AddWorkflow(new LongBackoff(target, Work));
        }));

        Assert.Contains("step 'charge' retries after up to 04:00:00", refused.Message, StringComparison.Ordinal);
        Assert.Contains("queue 'edge-short' (01:00:00)", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_compensation_a_cancel_would_hold_past_its_queues_retention_is_refused_when_the_host_starts()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        QueueName undo = "edge-undo";

        var refused = await Assert.ThrowsAsync<InvalidWorkflowDefinitionException>(() => CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work);
            cairn.AddQueue(new QueueDefinition(undo) { Retention = TimeSpan.FromHours(1) });
            cairn.AddWorkflow(new LongBackoff(Work, undo));
        }));

        Assert.Contains("the compensation of step 'charge'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("queue 'edge-undo'", refused.Message, StringComparison.Ordinal);
    }

    // The workflow's own queue declared again after AddWorkflow with a retention shorter than a timer (here a 2-hour
    // timeout against 1 hour) would refuse the timer, and every decision arming it: the host's start refuses it.
    [Fact]
    public async Task a_timer_that_reaches_the_workflow_queues_retention_is_refused_when_the_host_starts()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();

        var refused = await Assert.ThrowsAsync<InvalidWorkflowDefinitionException>(() => CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered(TimeSpan.FromHours(2)));
            cairn.AddQueue(new QueueDefinition("workflow-edge_silent") { Retention = TimeSpan.FromHours(1) });
        }));

        Assert.Contains("the timeout of step 'charge'", refused.Message, StringComparison.Ordinal);
    }

    // The application's own declaration of a workflow's queue holds whether it comes before or after AddWorkflow.
    [Fact]
    public async Task a_workflow_queue_declared_before_the_workflow_keeps_the_applications_settings()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();

        var refused = await Assert.ThrowsAsync<InvalidWorkflowDefinitionException>(() => CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(new QueueDefinition("workflow-edge_silent") { Retention = TimeSpan.FromHours(1) });
            cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered(TimeSpan.FromHours(2)));
        }));

        Assert.Contains("the timeout of step 'charge'", refused.Message, StringComparison.Ordinal);
    }

    // Within the retention, the same definition runs: the busy reply's retry is sent for after its backoff.
    [Fact]
    public async Task a_retry_backoff_within_its_queues_retention_is_sent_for_later()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                if (context.Read<object>() is RvCharge c)
                {
                    context.Reply(new RvBusy(c.Id));
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new LongBackoff(Work, Work));
        });
        await host.Workflows.StartAsync("edge_backoff", "o-1", new RvState("o-1"));

        var retried = await UntilAsync(host, "edge_backoff", "o-1", i => i.Attempt == 2, "the second attempt is sent for after its 2-hour backoff");
        Assert.Equal(WorkflowStatus.Running, retried.Status);
        Assert.Equal(0, Coordinator(host, "edge_backoff").Retried);
    }

    // An id used again after the instance's history was deleted (soft: versions go on after the old last one). The
    // start decision cannot know the old last version; the timers it arms count from the instance's start, as the
    // fold read back from the stream does, so the step's timeout is the one armed and suspends the instance, rather
    // than being ignored as stale while the instance hangs Running.
    [Fact]
    public async Task an_instance_started_again_on_a_deleted_history_times_out_as_armed()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered(TimeSpan.FromSeconds(1))));

        // An earlier instance with this id ran and was cancelled; its history was then deleted (say, for retention).
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        await host.Workflows.CancelAsync("edge_silent", "o-1", "abandoned");
        await sut.Store.DeleteStreamAsync(new StreamName("wf:edge_silent-o-1"), ExpectedVersion.Any, CancellationToken.None);

        // The id is used again; the step's service never answers, so its timeout must suspend the instance.
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        var history = await WaitForHistoryAsync(host, "edge_silent", "o-1", h => h.Any(e => e.Event is StepTimedOut) || h.Count(e => e.Event is TimerIgnored) >= 2, "the timers fire");

        var instance = await host.Workflows.GetAsync("edge_silent", "o-1");
        Assert.True(instance!.Status == WorkflowStatus.Suspended, $"status {instance.Status}; history: {string.Join(", ", history.Select(e => e.Type + (e.Event is TimerIgnored t ? $"({t.Timer}: {t.Reason})" : "")))}");
    }

    // An id used again after its history was soft-deleted sends keys of its own: the earlier run's charge and the new
    // one's are different requests, which a service keying its work by the key must not take for a repeat.
    [Fact]
    public async Task an_instance_started_again_on_a_deleted_history_sends_idempotency_keys_of_its_own()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var charges = new ConcurrentQueue<string?>();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case RvReserve r:
                        context.Reply(new RvReserved(r.Id));
                        break;
                    case RvCharge c:
                        charges.Enqueue(context.Message.IdempotencyKey());
                        context.Reply(new RvCharged(c.Id));
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new SuspendOnDecline());
        });

        await host.Workflows.StartAsync("edge_decline", "o-1", new RvState("o-1"));
        await UntilAsync(host, "edge_decline", "o-1", i => i.Status == WorkflowStatus.Completed, "the first run completes");
        await sut.Store.DeleteStreamAsync(new StreamName("wf:edge_decline-o-1"), ExpectedVersion.Any, CancellationToken.None);
        await host.Workflows.StartAsync("edge_decline", "o-1", new RvState("o-1"));
        await UntilAsync(host, "edge_decline", "o-1", i => i.Status == WorkflowStatus.Completed, "the second run completes");

        Assert.Equal(2, charges.Count);
        Assert.True(charges.Distinct().Count() == 2, $"both runs' charges carry the key {charges.First()}");
    }

    // A timer of an instance whose history was deleted for good (tombstoned) is dropped with a warning, as one of an
    // instance that does not exist, rather than retried towards the dead letters. The coordinator's cached fold still
    // takes it once; its append fails on the deleted stream, and the next try reads the stream.
    [Fact]
    public async Task a_timer_of_a_tombstoned_instance_is_dropped()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered(TimeSpan.FromHours(1))));
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        var armed = (await host.Workflows.GetHistoryAsync("edge_silent", "o-1")).Single(e => e.Event is StepStarted);
        await sut.Store.TombstoneStreamAsync(new StreamName("wf:edge_silent-o-1"), ExpectedVersion.Any, CancellationToken.None);

        // The timer comes (sent now rather than waiting an hour).
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var timer = serializer.ToOutgoingMessage(new WorkflowTimer("edge_silent", "o-1", $"step:charge@{armed.Version}")) with { CorrelationId = "o-1" };
        await sut.Broker.SendAsync("workflow-edge_silent", timer);

        await Wait.UntilAsync(() => Coordinator(host, "edge_silent") is { } s && (s.Handled > 0 || s.DeadLettered > 0), "the timer is dropped");
        var status = Coordinator(host, "edge_silent");
        Assert.True(status.Retried <= 1 && status.DeadLettered == 0, $"the timer of a tombstoned instance failed: {status}");
    }

    // A history deleted for good (tombstoned) reads as no instance, as GetAsync says, and its id cannot start again:
    // nothing can be appended to the stream. Both say so in Cairn's terms, not with the store's StreamDeletedException.
    [Fact]
    public async Task a_tombstoned_instance_has_an_empty_history_and_its_id_cannot_start_again()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered(TimeSpan.FromHours(1))));
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        await sut.Store.TombstoneStreamAsync(new StreamName("wf:edge_silent-o-1"), ExpectedVersion.Any, CancellationToken.None);

        Assert.Null(await host.Workflows.GetAsync("edge_silent", "o-1"));
        Assert.Empty(await host.Workflows.GetHistoryAsync("edge_silent", "o-1"));
        var refused = await Assert.ThrowsAsync<WorkflowStateException>(() => host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1")));
        Assert.Contains("'o-1'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("deleted for good", refused.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<WorkflowInstanceNotFoundException>(() => host.Workflows.CancelAsync("edge_silent", "o-1", "gone"));
    }

    // A step completed on two visits (a loop: reserve, charge, reserve again) is compensated twice, and each
    // compensation has its own idempotency key: a service that keys its work by it releases both reservations.
    [Fact]
    public async Task the_compensations_of_two_visits_of_one_step_have_keys_of_their_own()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var releases = new ConcurrentQueue<string?>();
        var charges = 0;
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case RvReserve r:
                        context.Reply(new RvReserved(r.Id));
                        break;
                    case RvCharge c when Interlocked.Increment(ref charges) == 1:
                        context.Reply(new RvCharged(c.Id));
                        break;
                    case RvCharge c:
                        context.Reply(new RvDeclined(c.Id));
                        break;
                    case RvRelease:
                        releases.Enqueue(context.Message.IdempotencyKey());
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new ReserveLoop());
        });
        await host.Workflows.StartAsync("edge_loop", "o-1", new RvState("o-1"));
        var ended = await UntilAsync(host, "edge_loop", "o-1", i => i.IsFinished, "the second charge is declined and both reservations are undone");
        Assert.Equal(["reserve", "reserve"], ended.CompensatedSteps);
        await Wait.UntilAsync(() => releases.Count == 2, "both releases are received");

        Assert.True(releases.Distinct().Count() == 2, $"both releases carry the key {releases.First()}");
    }

    // A step visited again in a loop (reserve, charge, reserve, charge) is a request of its own: a late answer to the
    // first visit's command (a service answering each attempt, the second answer arriving after the loop came round)
    // must not complete the second visit before its own command is answered.
    [Fact]
    public async Task a_late_answer_to_an_earlier_visit_of_a_step_does_not_complete_its_next_visit()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var charges = 0;
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case RvReserve r:
                        context.Reply(new RvReserved(r.Id));
                        break;
                    case RvCharge c when Interlocked.Increment(ref charges) == 1:
                        context.Reply(new RvCharged(c.Id));
                        break;
                }

                // The second visit's charge is left unanswered: the instance waits for it.
                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new ReserveLoop());
        });
        await host.Workflows.StartAsync("edge_loop", "o-1", new RvState("o-1"));
        var history = await WaitForHistoryAsync(host, "edge_loop", "o-1", h => h.Select(e => e.Event).OfType<StepStarted>().Count(s => s.Step == "charge") == 2, "the loop comes round to a second charge");
        var firstCharge = history.Select(e => e.Event).OfType<StepStarted>().First(s => s.Step == "charge").MessageId;

        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var late = serializer.ToOutgoingMessage(new RvCharged("o-1")) with { CorrelationId = "o-1", CausationId = firstCharge };
        await sut.Broker.SendAsync("workflow-edge_loop", late);
        history = await WaitForHistoryAsync(host, "edge_loop", "o-1", h => h.Any(e => e.CausationId == late.Id.ToString()), "the late answer is handled");

        var ignored = Assert.IsType<ReplyIgnored>(history[^1].Event);
        Assert.Matches("^an answer to the visit of step 'charge' that began at version [0-9]+, which is over$", ignored.Reason);
        var instance = await host.Workflows.GetAsync("edge_loop", "o-1");
        Assert.Equal(("charge", WorkflowStatus.Running), (instance!.CurrentStep, instance.Status));
        Assert.Equal(1, history.Select(e => e.Event).OfType<StepCompleted>().Count(c => c.Step == "charge"));
    }

    // An operator's retry during a retry's backoff sends a new attempt now, and the delayed one is still delivered
    // later (a queued message cannot be recalled). A cancel then must send the compensation for after that delayed
    // attempt too, not only after the attempt sent last: the refund would otherwise come before the charge it undoes.
    [Fact]
    public async Task a_cancel_after_an_operators_retry_during_a_backoff_sends_the_compensation_after_the_delayed_attempt()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var charges = 0;
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                // Busy on the first charge; the later ones are left waiting.
                if (context.Read<object>() is RvCharge c && Interlocked.Increment(ref charges) == 1)
                {
                    context.Reply(new RvBusy(c.Id));
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new LongBackoff(Work, Work));
        });
        await host.Workflows.StartAsync("edge_backoff", "o-1", new RvState("o-1"));
        await UntilAsync(host, "edge_backoff", "o-1", i => i.Attempt == 2, "the second attempt is sent for after its 2-hour backoff");

        await host.Workflows.RetryAsync("edge_backoff", "o-1", "the service is back");
        var cancelled = await host.Workflows.CancelAsync("edge_backoff", "o-1", "the customer gave up");

        Assert.Equal(WorkflowStatus.Cancelled, cancelled.Status);
        var history = (await host.Workflows.GetHistoryAsync("edge_backoff", "o-1")).Select(e => e.Event).ToList();
        var delayed = history.OfType<StepStarted>().Single(s => s.Attempt == 2);
        Assert.Null(history.OfType<StepStarted>().Single(s => s.Attempt == 3).SendAt);
        Assert.NotNull(delayed.SendAt);
        Assert.Equal(delayed.SendAt, history.OfType<CompensationStarted>().Single().SendAt);
    }

    /// <summary>Keeps every workflow timer the backend is asked to send, to deliver one again when a test says.</summary>
    private sealed class TimerRecordingBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public ConcurrentQueue<(QueueName Queue, OutgoingMessage Message)> Timers { get; } = new();

        public override Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
        {
            foreach (var send in transaction.Sends.Where(s => s.Message.Type == "cairn.workflow.timer"))
            {
                Timers.Enqueue(send);
            }

            return base.CommitAsync(transaction, cancellationToken);
        }
    }

    // An id used again after its history was soft-deleted: the earlier instance's timeout is still queued (a delayed
    // message cannot be recalled) and names the same step at the same version counted from the start. When it fires it
    // must not time out the new instance, whose own timeout is an hour away.
    [Fact]
    public async Task a_timer_armed_before_the_history_was_deleted_does_not_time_out_the_instance_started_again()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new TimerRecordingBroker(new InMemoryMessageBroker(store, checkpoints));
        await using var sut = new StoreUnderTest(store, checkpoints, broker: broker, projections: new InMemoryProjectionStore(store));
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Unanswered.Silent).AddWorkflow(new Unanswered(TimeSpan.FromHours(1))));
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        await host.Workflows.CancelAsync("edge_silent", "o-1", "abandoned");
        await store.DeleteStreamAsync(new StreamName("wf:edge_silent-o-1"), ExpectedVersion.Any, CancellationToken.None);
        var earlier = Assert.Single(broker.Timers);

        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        Assert.Equal(2, broker.Timers.Count);
        var options = host.Services.GetRequiredService<EventSerializer>().Options;
        string TokenOf(OutgoingMessage timer) => System.Text.Json.JsonSerializer.Deserialize<WorkflowTimer>(timer.Data.Span, options)!.Timer;
        Assert.Equal(TokenOf(earlier.Message), TokenOf(broker.Timers.Last().Message));

        // The earlier instance's timeout comes due (delivered now rather than in an hour).
        await broker.Inner.SendAsync(earlier.Queue, earlier.Message with { DeliverAt = null });
        var history = await WaitForHistoryAsync(host, "edge_silent", "o-1", h => h.Any(e => e.Event is TimerIgnored or StepTimedOut), "the earlier timer is handled");

        var ignored = Assert.IsType<TimerIgnored>(history[^1].Event);
        Assert.Contains("an earlier instance", ignored.Reason, StringComparison.Ordinal);
        var instance = await host.Workflows.GetAsync("edge_silent", "o-1");
        Assert.Equal(("charge", WorkflowStatus.Running), (instance!.CurrentStep, instance.Status));
    }

    // An id used again after its history was soft-deleted: every attempt of the new instance's step carries one key
    // (the first sent by the start, which cannot know the old last version, the next by an operator's retry, decided on
    // the stream), and it is not the earlier instance's.
    [Fact]
    public async Task the_attempts_of_an_instance_started_again_on_a_deleted_history_share_a_key_of_their_own()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var charges = new ConcurrentQueue<string?>();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Unanswered.Silent).AddConsumer(Unanswered.Silent, (context, _) =>
            {
                charges.Enqueue(context.Message.IdempotencyKey());
                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new Unanswered(TimeSpan.FromHours(1)));
        });
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        await Wait.UntilAsync(() => charges.Count == 1, "the first instance's charge is received");
        await host.Workflows.CancelAsync("edge_silent", "o-1", "abandoned");
        await sut.Store.DeleteStreamAsync(new StreamName("wf:edge_silent-o-1"), ExpectedVersion.Any, CancellationToken.None);

        // The new instance's two attempts, received in either order.
        await host.Workflows.StartAsync("edge_silent", "o-1", new RvState("o-1"));
        await host.Workflows.RetryAsync("edge_silent", "o-1", "nudge");
        await Wait.UntilAsync(() => charges.Count == 3, "the three charges are received");

        var keys = charges.ToList();
        Assert.True(keys[1] == keys[2], $"the new instance's attempts carry {keys[1]} and {keys[2]}");
        Assert.True(keys[0] != keys[1], $"both instances' charges carry the key {keys[0]}");
    }

    // An id used again after its history was soft-deleted: the new instance's compensation is a request of its own, not
    // the earlier instance's again, which a service keying its work by the key would take for a repeat and not carry out.
    [Fact]
    public async Task an_instance_started_again_on_a_deleted_history_sends_compensation_keys_of_its_own()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var releases = new ConcurrentQueue<string?>();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case RvReserve r:
                        context.Reply(new RvReserved(r.Id));
                        break;
                    case RvCharge c:
                        context.Reply(new RvDeclined(c.Id));
                        break;
                    case RvRelease:
                        releases.Enqueue(context.Message.IdempotencyKey());
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddWorkflow(new SuspendOnDecline());
        });

        for (var run = 1; run <= 2; run++)
        {
            await host.Workflows.StartAsync("edge_decline", "o-1", new RvState("o-1"));
            await UntilAsync(host, "edge_decline", "o-1", i => i.Status == WorkflowStatus.Suspended, "the declined charge suspends");
            await host.Workflows.CancelAsync("edge_decline", "o-1", "the customer gave up");
            await Wait.UntilAsync(() => releases.Count == run, "the release is received");
            await sut.Store.DeleteStreamAsync(new StreamName("wf:edge_decline-o-1"), ExpectedVersion.Any, CancellationToken.None);
        }

        Assert.True(releases.Distinct().Count() == 2, $"both instances' releases carry the key {releases.First()}");
    }

    private static async Task<IReadOnlyList<WorkflowHistoryEntry>> WaitForHistoryAsync(CairnTestHost host, string workflow, string id, Func<IReadOnlyList<WorkflowHistoryEntry>, bool> condition, string what)
    {
        IReadOnlyList<WorkflowHistoryEntry> history = [];
        await Wait.UntilAsync(async () => condition(history = await host.Workflows.GetHistoryAsync(workflow, id)), what);
        return history;
    }
}
