using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Messaging.Routing;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>
/// Routes and replays at their edges: events every append accepts that a message refuses, and a passing fault while a
/// failing route looks its checkpoint up again.
/// </summary>
public sealed class RouteAndReplayEdgeTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // A stream name may be 256 characters (StreamName.MaxLength); a routed message takes the stream as its subject and its
    // group key. The docs promise that "no event is lost" and that a route is held only by an event a subscribed queue
    // refuses, going on "once the cause is gone". An event of a long-named stream, accepted by the append, must reach
    // a plain (not FIFO) queue subscribed to the topic, and not hold the route for ever.
    [Fact]
    public async Task an_event_of_a_stream_with_a_long_valid_name_is_routed_to_the_topic()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        await broker.DeclareQueueAsync(new QueueDefinition("all-orders"), default);
        await broker.SubscribeAsync(new TopicSubscription("orders", "all", "all-orders", null), default);
        var stream = new StreamName("order-" + new string('x', 200));
        var appended = await store.AppendAsync(new AppendRequest(stream, ExpectedVersion.NoStream, [new EventData("order.placed", Encoding.UTF8.GetBytes("""{"n":1}"""))]), default);

        var clock = new ManualTimeProvider();
        await using var router = new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"), timeProvider: clock);
        await router.StartAsync(default);
        await Wait.UntilAsync(() => router.Status.Position >= appended.LastPosition || router.Status.Failures > 0, "the route publishes the event or fails");

        Assert.Null(router.Status.LastError);
        Assert.Null(router.Status.HeldAt);
        Assert.Equal(1, (await broker.GetStatsAsync("all-orders", default)).Visible);
    }

    // The same event, replayed: "ReplayAsync sends the events committed within a time range ... to a queue". An event
    // of a stream whose name the store accepted must not make the whole replay fail.
    [Fact]
    public async Task a_replay_sends_an_event_of_a_stream_with_a_long_valid_name()
    {
        var clock = new ManualTimeProvider();
        var store = new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock });
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("replay"), default);
        var from = clock.GetUtcNow();
        await store.AppendAsync(new AppendRequest(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData("order.placed", Encoding.UTF8.GetBytes("""{"n":1}"""))]), default);
        await store.AppendAsync(new AppendRequest(new StreamName("order-" + new string('x', 200)), ExpectedVersion.NoStream, [new EventData("order.placed", Encoding.UTF8.GetBytes("""{"n":2}"""))]), default);

        var sent = await broker.ReplayAsync(store, new ReplayRequest("replay", from, from + TimeSpan.FromHours(1))).WaitAsync(Bound);

        Assert.Equal(2, sent);
        Assert.Equal(2, (await broker.GetStatsAsync("replay", default)).Visible);
    }

    // "A route that fails (an unknown topic, say) logs the error and retries from its checkpoint, waiting from 0.2 s up to
    // 30 s." Its retry looks the checkpoint up again; a passing fault of that look-up (a busy file, a dropped connection)
    // must be one more failure to retry, not the end of the routing loop: once the topic is declared, the events go out.
    [Fact]
    public async Task a_route_survives_a_passing_fault_of_its_checkpoint_lookup_while_retrying()
    {
        var store = new InMemoryEventStore();
        var inner = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, inner);
        var checkpoints = new FailingLookups(inner);
        await broker.DeclareQueueAsync(new QueueDefinition("all-orders"), default);
        var appended = await store.AppendAsync(new AppendRequest(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData("order.placed", Encoding.UTF8.GetBytes("""{"n":1}"""))]), default);

        var clock = new ManualTimeProvider();
        var router = new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"), timeProvider: clock);
        await router.StartAsync(default);

        // The topic is missing: the route fails and pauses. Its next look-up of the checkpoint fails once.
        await Wait.UntilAsync(() => router.Status.Failures > 0 && clock.ArmedTimers > 0, "the route fails for the missing topic and pauses");
        checkpoints.FailNext = true;
        await broker.DeclareTopicAsync("orders", default);
        await broker.SubscribeAsync(new TopicSubscription("orders", "all", "all-orders", null), default);
        clock.Advance(TimeSpan.FromSeconds(1));
        await Wait.UntilAsync(() => !checkpoints.FailNext, "the checkpoint look-up failed");

        // Whatever pause follows, the route is still running and publishes the event.
        await Wait.UntilAsync(
            () =>
            {
                clock.Advance(TimeSpan.FromSeconds(1));
                return !router.Status.Running || router.Status.Position >= appended.LastPosition;
            },
            "the route publishes the event or stops");
        var status = router.Status;
        var stop = await Record.ExceptionAsync(() => router.DisposeAsync().AsTask().WaitAsync(Bound));

        Assert.True(status.Running, $"the routing loop ended; its stop threw {stop?.GetType().Name}: {stop?.Message}");
        Assert.Null(stop);
        Assert.Equal(1, (await broker.GetStatsAsync("all-orders", default)).Visible);
    }

    private sealed class FailingLookups(ICheckpointStore inner) : ICheckpointStore
    {
        private volatile bool _failNext;

        public bool FailNext
        {
            get => _failNext;
            set => _failNext = value;
        }

        public ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken)
        {
            if (_failNext)
            {
                _failNext = false;
                return ValueTask.FromException<GlobalPosition?>(new IOException("database is locked"));
            }

            return inner.GetAsync(key, cancellationToken);
        }

        public ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken) => inner.SetAsync(key, position, cancellationToken);
    }

    // A group key may be as long as a stream name, and no longer.
    [Fact]
    public async Task a_group_key_of_up_to_256_characters_is_taken_and_a_longer_one_refused_naming_it()
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("ledger") { Fifo = true }, default);

        await broker.SendAsync("ledger", new OutgoingMessage("entry.posted", "{}"u8.ToArray()) { GroupKey = new string('g', 256) });
        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync("ledger", new OutgoingMessage("entry.posted", "{}"u8.ToArray()) { GroupKey = new string('g', 257) }));
        Assert.Contains("GroupKey", refused.Message, StringComparison.Ordinal);
        Assert.Equal(1, (await broker.GetStatsAsync("ledger", default)).Visible);
    }

    // A checkpoint that could not be read as the route started failed the start, and the route, marked started, could
    // never be started again.
    [Fact]
    public async Task a_route_whose_checkpoint_cannot_be_read_as_it_starts_retries_and_routes()
    {
        var store = new InMemoryEventStore();
        var inner = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, inner);
        await broker.DeclareTopicAsync("orders", default);
        await broker.DeclareQueueAsync(new QueueDefinition("all-orders"), default);
        await broker.SubscribeAsync(new TopicSubscription("orders", "all", "all-orders", null), default);
        var appended = await store.AppendAsync(new AppendRequest(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData("order.placed", Encoding.UTF8.GetBytes("""{"n":1}"""))]), default);
        var checkpoints = new FailingLookups(inner) { FailNext = true };
        var clock = new ManualTimeProvider();
        await using var router = new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"), timeProvider: clock);

        await router.StartAsync(default);
        Assert.False(checkpoints.FailNext);
        Assert.True(router.Status.Running);
        await router.WaitForPositionAsync(appended.LastPosition, default).WaitAsync(Bound);

        Assert.Equal(1, (await broker.GetStatsAsync("all-orders", default)).Visible);
        await ThroughTask.RefusedAsync(() => router.StartAsync(default), typeof(InvalidOperationException));
    }

    // With the checkpoint read by the loop alone, a started route said position 0 until the loop had read it.
    [Fact]
    public async Task a_started_route_reports_its_checkpoint_as_its_position()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        var appended = await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [TestEvents.Numbered(1), TestEvents.Numbered(2)]);
        await checkpoints.SetAsync("route:known", appended.LastPosition, default);
        var clock = new ManualTimeProvider();
        await using var router = new EventRouter(store, broker, checkpoints, new EventRoute("known", EventFilter.ForCategory("order"), "orders"), timeProvider: clock);

        await router.StartAsync(default);

        Assert.Equal(appended.LastPosition, router.Position);
        Assert.Equal(appended.LastPosition, router.Status.Position);
    }

    // Reading from the position after long.MaxValue overflowed: GlobalPosition refused the negative value and the route
    // failed every batch for ever, where a checkpoint past the head waits for appends past it.
    [Fact]
    public async Task a_route_whose_checkpoint_is_the_largest_position_waits_without_failing()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [TestEvents.Numbered(1)]);
        await checkpoints.SetAsync("route:far-ahead", new GlobalPosition(long.MaxValue), default);
        var clock = new ManualTimeProvider();
        var waiting = new WaitSignallingStore(store);
        await using var router = new EventRouter(waiting, broker, checkpoints, new EventRoute("far-ahead", EventFilter.ForCategory("order"), "orders"), timeProvider: clock);

        await router.StartAsync(default);
        await Wait.UntilAsync(() => waiting.Waited.Task.IsCompleted || router.Status.Failures > 0, "the route waits for appends or fails");

        Assert.Equal(0, router.Status.Failures);
        Assert.Null(router.Status.LastError);
    }

    private sealed class WaitSignallingStore(IEventStore inner) : DelegatingEventStore(inner)
    {
        public TaskCompletionSource Waited { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken)
        {
            Waited.TrySetResult();
            return base.WaitForAppendAsync(position, cancellationToken);
        }
    }
}
