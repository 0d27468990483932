using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Workflows;

[EventType("berths.hold")] public sealed record BerthHold(string Id);
[EventType("berths.free")] public sealed record BerthFree(string Id);
[EventType("berths.held")] public sealed record BerthHeld(string Id);
[EventType("berths.freed")] public sealed record BerthFreed(string Id);
[EventType("berths.busy")] public sealed record BerthBusy(string Id);

public sealed record BerthState(string Id);

/// <summary>A state whose constructor refuses a missing id: reading an empty object fails in its own code, not the type's.</summary>
public sealed record GuardedBerthState
{
    public GuardedBerthState(string id) => Id = id ?? throw new ArgumentNullException(nameof(id));

    public string Id { get; }
}

/// <summary>A state that serializes (Id, Total) but cannot be read back: the constructor's <c>count</c> binds to no property.</summary>
public sealed class UnreadableBerthState
{
    public UnreadableBerthState(string id, int count)
    {
        Id = id;
        Total = count;
    }

    public string Id { get; }

    public int Total { get; }
}

/// <summary>
/// What keeps a workflow from being stranded or misreported: delays checked against retention at host start (held-back
/// confirmation timers, published retries), a state that cannot be read back refused at compile, a rule that makes no
/// state named, deleted instances left out of the stuck list, and the versions of an id used again.
/// </summary>
public sealed class WorkflowSafeguardTests
{
    private static readonly QueueName Work = "seat-work";

    private static void Register(EventTypeRegistry types) =>
        types.Register<BerthHold>().Register<BerthFree>().Register<BerthHeld>().Register<BerthFreed>().Register<BerthBusy>();

    private static EventSerializer Serializer()
    {
        var types = new EventTypeRegistry();
        Register(types);
        WorkflowEventTypes.Register(types);
        return new EventSerializer(types);
    }

    private sealed class Defined<TState>(string name, Action<Defined<TState>> define) : Workflow<TState>(name)
        where TState : class
    {
        public Defined<TState> Build()
        {
            define(this);
            return this;
        }

        public WorkflowStep<TState> Add(string step) => Step(step);
    }

    /// <summary>Holds a seat: a busy answer is retried after a day; the release is confirmed, its one attempt waiting 36 hours.</summary>
    private sealed class HeldBack : Workflow<BerthState>
    {
        public const string WorkflowName = "seat_heldback";

        public HeldBack()
            : base(WorkflowName) =>
            Step("hold").Send(Work, s => new BerthHold(s.Id)).On<BerthHeld>().Complete().On<BerthBusy>().Retry(_ => "busy")
                .Retry(2, TimeSpan.FromDays(1))
                .CompensateWith(Work, s => new BerthFree(s.Id)).ConfirmCompensationBy<BerthFreed>(TimeSpan.FromHours(36), 1);
    }

    /// <summary>Publishes the hold to a topic; a busy answer is retried after two hours.</summary>
    private sealed class PublishedHold : Workflow<BerthState>
    {
        public const string WorkflowName = "seat_publish";
        public static readonly TopicName Seats = "seat-requests-topic";

        public PublishedHold()
            : base(WorkflowName) =>
            Step("hold").Publish(Seats, s => new BerthHold(s.Id)).On<BerthHeld>().Complete().On<BerthBusy>().Retry(_ => "busy")
                .Retry(2, TimeSpan.FromHours(2)).NoCompensation("the last step");
    }

    private static ValueTask AlwaysBusy(Cairn.Messaging.Consumers.MessageHandlerContext context, CancellationToken cancellationToken)
    {
        if (context.Read<object>() is BerthHold hold)
        {
            context.Reply(new BerthBusy(hold.Id));
        }

        return ValueTask.CompletedTask;
    }

    private static Cairn.Messaging.Consumers.ConsumerStatus Coordinator(CairnTestHost host, string workflow) =>
        host.Services.GetRequiredService<ConsumerMonitor>().Find("workflow-" + workflow)!.Status;

    // A cancel during the 1-day backoff sends the release for a day later and arms its 36-hour confirmation timer from
    // then: due 2.5 days ahead, on a workflow queue that keeps messages 2 days. Started, the cancel could never commit.
    [Fact]
    public async Task a_confirmation_timer_held_back_by_a_cancel_during_a_backoff_is_checked_against_the_workflow_queues_retention()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();

        var refused = await Assert.ThrowsAsync<InvalidWorkflowDefinitionException>(() => CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddQueue(Work).AddConsumer(Work, AlwaysBusy);
            cairn.AddWorkflow(new HeldBack());
            cairn.AddQueue(new QueueDefinition("workflow-" + HeldBack.WorkflowName) { Retention = TimeSpan.FromDays(2) });
        }));

        Assert.Contains("the confirmation timeout of the compensation of step 'hold' may fall due 2.12:00:00", refused.Message, StringComparison.Ordinal);
        Assert.Contains("queue 'workflow-seat_heldback'", refused.Message, StringComparison.Ordinal);
    }

    // A published retry after 2 hours reaches a queue subscribed to the topic that keeps messages 1 hour: the broker
    // would refuse the copy, the busy reply's decision would never commit, and the instance would stay at attempt 1.
    [Fact]
    public async Task a_published_steps_retry_backoff_that_reaches_a_subscribed_queues_retention_is_refused_when_the_host_starts()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();

        var refused = await Assert.ThrowsAsync<InvalidWorkflowDefinitionException>(() => CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddTopic(PublishedHold.Seats)
                .AddQueue(new QueueDefinition("seat-requests") { Retention = TimeSpan.FromHours(1) })
                .AddTopicSubscription(PublishedHold.Seats, "seats", "seat-requests")
                .AddConsumer("seat-requests", AlwaysBusy);
            cairn.AddWorkflow(new PublishedHold());
        }));

        Assert.Contains("step 'hold' retries after up to 02:00:00, published to topic 'seat-requests-topic' and by its subscription 'seats' to queue 'seat-requests'", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_published_steps_retry_within_the_subscribed_queues_retention_starts()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();

        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
        {
            cairn.AddTopic(PublishedHold.Seats)
                .AddQueue(new QueueDefinition("seat-requests") { Retention = TimeSpan.FromHours(3) })
                .AddTopicSubscription(PublishedHold.Seats, "seats", "seat-requests")
                .AddConsumer("seat-requests", AlwaysBusy);
            cairn.AddWorkflow(new PublishedHold());
        });

        await host.Workflows.StartAsync(PublishedHold.WorkflowName, "o-1", new BerthState("o-1"));
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync(PublishedHold.WorkflowName, "o-1"))!.Attempt == 2, "the busy hold is retried");
    }

    // The state writes, but its constructor's "count" binds to no property, so it cannot be read back: every start
    // would throw System.Text.Json's InvalidOperationException at run time.
    [Fact]
    public void a_state_type_that_cannot_be_read_back_is_refused_when_the_definition_is_compiled()
    {
        var workflow = new Defined<UnreadableBerthState>("seat_unreadable", w =>
            w.Add("hold").Send(Work, s => new BerthHold(s.Id)).On<BerthHeld>().Complete()).Build();

        var refused = Assert.Throws<InvalidWorkflowDefinitionException>(() => ((IWorkflowDefinition)workflow).Compile(Serializer()));

        Assert.Contains("its state UnreadableBerthState cannot be read back", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_state_whose_constructor_refuses_an_empty_object_is_not_refused_for_it()
    {
        var workflow = new Defined<GuardedBerthState>("seat_guarded", w =>
            w.Add("hold").Send(Work, s => new BerthHold(s.Id)).On<BerthHeld>().Complete()).Build();

        var model = ((IWorkflowDefinition)workflow).Compile(Serializer());

        Assert.Equal(typeof(GuardedBerthState), model.StateType);
    }

    // A span reaching back past year 1 ("stuck for any time") finds nothing, as a stream's MaxAge past the calendar
    // hides nothing; it was DateTimeOffset's ArgumentOutOfRangeException naming a parameter 't'.
    [Fact]
    public async Task find_stuck_with_a_span_reaching_past_the_calendar_does_not_overflow()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Work).AddWorkflow(new HeldBack()));

        await host.Workflows.StartAsync(HeldBack.WorkflowName, "o-1", new BerthState("o-1"));
        await host.Workflows.WaitForSummariesAsync(Wait.Timeout);

        Assert.Empty(await host.Workflows.FindStuckAsync(TimeSpan.MaxValue));
        Assert.Single(await host.Workflows.FindStuckAsync(TimeSpan.Zero));
    }

    // An id used again after its history was soft-deleted: the stream's versions go on after the old last one, which
    // the start does not read. The instance returned (and kept for the next message) has the stored versions.
    [Fact]
    public async Task start_on_an_id_used_again_returns_the_stream_version_its_history_has()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Work).AddWorkflow(new HeldBack()));
        await host.Workflows.StartAsync(HeldBack.WorkflowName, "o-1", new BerthState("o-1"));
        await host.Workflows.CancelAsync(HeldBack.WorkflowName, "o-1", "abandoned");
        await sut.Store.DeleteStreamAsync(new StreamName("wf:" + HeldBack.WorkflowName + "-o-1"), ExpectedVersion.Any, CancellationToken.None);

        var started = await host.Workflows.StartAsync(HeldBack.WorkflowName, "o-1", new BerthState("o-1"));

        var stored = await host.Workflows.GetAsync(HeldBack.WorkflowName, "o-1");
        Assert.Equal(stored!.StreamVersion, started.StreamVersion);
        Assert.True(started.StreamVersion > 1);
        await host.Workflows.CancelAsync(HeldBack.WorkflowName, "o-1", "abandoned again");
        Assert.Equal(WorkflowStatus.Compensating, (await host.Workflows.GetAsync(HeldBack.WorkflowName, "o-1"))!.Status);
    }

    // A reply rule whose evolve returns null (a bug in the application's code) is named by its step and reply; it
    // stored a JSON null, and the same decision then failed with "a stored state is null", naming neither.
    [Fact]
    public void a_reply_rule_that_returns_no_state_is_reported_naming_the_step_and_the_reply()
    {
        var workflow = new Defined<BerthState>("seat_nullstate", w =>
        {
            w.Add("hold").Send(Work, s => new BerthHold(s.Id)).On<BerthHeld>((_, _) => null!).Then("free").NoCompensation("nothing to undo");
            w.Add("free").Send(Work, s => new BerthFree(s.Id)).On<BerthFreed>().Complete().NoCompensation("nothing to undo");
        }).Build();
        var serializer = Serializer();
        var model = ((IWorkflowDefinition)workflow).Compile(serializer);
        var now = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var start = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", now);
        start.Start(new BerthState("o-1"), null);

        var reply = new WorkflowDecider(model, serializer, start.Instance, "o-1", now.AddSeconds(1));
        var error = Record.Exception(() => reply.Reply("berths.held", "reply-1", new BerthHeld("o-1")));

        var refused = Assert.IsType<WorkflowStateException>(error);
        Assert.Equal("Workflow 'seat_nullstate': the rule of step 'hold' for reply berths.held gave no state.", refused.Message);
    }

    // A step started by a host whose clock is ahead (its event's time) and completed by one whose clock is behind
    // lasted no negative time.
    [Fact]
    public void a_step_completed_by_a_host_whose_clock_is_behind_the_starting_hosts_lasts_no_negative_time()
    {
        var workflow = new Defined<BerthState>("seat_skew", w =>
            w.Add("hold").Send(Work, s => new BerthHold(s.Id)).On<BerthHeld>().Complete().NoCompensation("the only step")).Build();
        var serializer = Serializer();
        var model = ((IWorkflowDefinition)workflow).Compile(serializer);
        var ahead = new DateTimeOffset(2026, 1, 1, 0, 0, 5, TimeSpan.Zero);
        var start = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", ahead);
        start.Start(new BerthState("o-1"), null);

        var reply = new WorkflowDecider(model, serializer, start.Instance, "o-1", ahead.AddSeconds(-3));
        reply.Reply("berths.held", "reply-1", new BerthHeld("o-1"));

        Assert.Equal([("hold", 0d)], reply.StepDurations);
    }

    // A history deleted reads as no instance (GetAsync null, CancelAsync WorkflowInstanceNotFoundException); the
    // summaries do not see the deletion, so the stuck list looks each instance up and leaves it out.
    [Fact]
    public async Task an_instance_whose_history_was_deleted_is_not_reported_stuck()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        await using var host = await CairnTestHost.StartAsync(sut, o => Register(o.EventTypes), cairn =>
            cairn.AddQueue(Work).AddWorkflow(new HeldBack()));
        await host.Workflows.StartAsync(HeldBack.WorkflowName, "o-1", new BerthState("o-1"));
        await sut.Store.DeleteStreamAsync(new StreamName("wf:" + HeldBack.WorkflowName + "-o-1"), ExpectedVersion.Any, CancellationToken.None);
        Assert.Null(await host.Workflows.GetAsync(HeldBack.WorkflowName, "o-1"));
        await Assert.ThrowsAsync<WorkflowInstanceNotFoundException>(() => host.Workflows.CancelAsync(HeldBack.WorkflowName, "o-1", "stuck"));

        await host.Workflows.WaitForSummariesAsync(Wait.Timeout);
        var stuck = await host.Workflows.FindStuckAsync(TimeSpan.Zero, HeldBack.WorkflowName);

        Assert.Empty(stuck);
        Assert.Single(await host.Workflows.Query().Where("workflow", HeldBack.WorkflowName).ToListAsync());
    }
}
