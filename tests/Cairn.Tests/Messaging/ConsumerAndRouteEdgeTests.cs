using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Messaging.Routing;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>
/// Consumers and routes at their edges: handlers that return once cancelled, an inbox look that fails, a route's wait,
/// start and dispose repeated, and a held route whose event another process published.
/// </summary>
public sealed class ConsumerAndRouteEdgeTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A handler that sends the first part of its work to 'out', says it started, and once its token is cancelled
    /// returns (rather than throws) before sending the second part: what a stop or a time-out leaves half-done.
    /// </summary>
    private static Func<MessageHandlerContext, CancellationToken, ValueTask> HalfThenReturnOnCancel(TaskCompletionSource started) =>
        async (context, ct) =>
        {
            context.Send("out", new OutgoingMessage("part", Encoding.UTF8.GetBytes("""{"n":1}""")));
            started.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            context.Send("out", new OutgoingMessage("part", Encoding.UTF8.GetBytes("""{"n":2}""")));
        };

    // A stopped route never advances again: a caller waiting for a position it had not reached (through
    // RouteMonitor.Find(name), without a time-out of its own) is told, as a subscription's waiter is, rather than left
    // waiting for ever once the host stops.
    [Fact]
    public async Task a_wait_for_a_route_position_ends_when_the_route_stops()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        var router = new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"));
        await router.StartAsync(default);

        var wait = router.WaitForPositionAsync(new GlobalPosition(1_000), CancellationToken.None);
        await router.StopAsync(default).WaitAsync(Bound);

        // A wait for a position the stopped route will never reach fails, as a subscription's does.
        await Assert.ThrowsAsync<InvalidOperationException>(() => wait.WaitAsync(Bound));
        await router.DisposeAsync();
    }

    // A second dispose (an `await using` over a router also disposed by hand, or by a host) does nothing, as a
    // consumer's and a subscription's do.
    [Fact]
    public async Task a_route_disposed_twice_does_not_throw()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        var router = new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"));
        await router.StartAsync(default);
        await router.DisposeAsync().AsTask().WaitAsync(Bound);

        var second = await Record.ExceptionAsync(() => router.DisposeAsync().AsTask().WaitAsync(Bound));
        Assert.Null(second);
    }

    // A second start would run a second routing loop over the same batch and checkpoint, and a stop would wait for one
    // of them only: refused, as a consumer's and a subscription's second start are.
    [Fact]
    public async Task a_route_started_twice_is_refused()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        await using var router = new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"));
        await router.StartAsync(default);

        await Assert.ThrowsAsync<InvalidOperationException>(() => router.StartAsync(default));
    }

    // When the stop's token fires, handlers in flight "are cancelled, their messages given back" (docs/messaging.md). A
    // handler that honours the cancellation by returning early, not throwing, may have gathered half its work: none of
    // it is committed, and its message is not acknowledged.
    [Fact]
    public async Task a_handler_cancelled_by_a_stop_commits_nothing_and_its_message_is_given_back()
    {
        var broker = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        await broker.DeclareQueueAsync(new QueueDefinition("out"), default);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1 },
            HalfThenReturnOnCancel(started));
        await consumer.StartAsync(default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        await started.Task.WaitAsync(Bound);

        using (var timeUp = new CancellationTokenSource())
        {
            await timeUp.CancelAsync();
            await consumer.StopAsync(timeUp.Token).WaitAsync(Bound);
        }

        await consumer.DisposeAsync();

        // Nothing half-done is written, and the message is there to be handled again.
        Assert.Equal(0, (await broker.GetStatsAsync("out", default)).Visible);
        var again = Assert.Single(await broker.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 10 }, default));
        Assert.Equal("job", again.Message.Type);
    }

    // The same on the time-out's path: "A handler past HandlerTimeout has its token cancelled; the failure is a
    // HandlerTimeoutException, given back with the backoff delay", also when the handler returns rather than throws.
    [Fact]
    public async Task a_handler_cancelled_by_its_timeout_commits_nothing_and_its_message_is_retried()
    {
        var clock = new ManualTimeProvider();

        // The broker's own clock stands still: the release's backoff delay never runs out during the test.
        var brokerClock = new ManualTimeProvider();
        var broker = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = brokerClock }), new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        await broker.DeclareQueueAsync(new QueueDefinition("out"), default);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, HandlerTimeout = TimeSpan.FromMinutes(1), ExtendLeaseWhileHandling = false },
            HalfThenReturnOnCancel(started),
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        await started.Task.WaitAsync(Bound);

        clock.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
        await Wait.UntilAsync(() => consumer.Status is { InFlight: 0 } s && s.Handled + s.Retried > 0, "the timed-out handling is settled");

        Assert.Equal(0, consumer.Status.Handled);
        Assert.Equal(1, consumer.Status.Retried);
        Assert.Equal(0, (await broker.GetStatsAsync("out", default)).Visible);
        Assert.Equal(1, (await broker.GetStatsAsync("work", default)).Delayed);
    }

    // The inbox look before a handler runs is only a shortcut (the commit's inbox record refuses a repeat anyway). A
    // passing fault of it (a busy file, a dropped connection) must not leave the delivery leased and unhandled for its
    // whole lease, a receive spent without the handler running: the message is handled.
    [Fact]
    public async Task a_passing_fault_of_the_inbox_check_does_not_leave_the_message_leased_unhandled()
    {
        var clock = new ManualTimeProvider();
        var broker = new InboxCheckFailsOnce(new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1 },
            (_, _) => ValueTask.CompletedTask,
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        await broker.Failed.Task.WaitAsync(Bound);

        // No lease runs out here (the clock stands still): the message must not wait for one.
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the message is handled after the failed inbox check");
        Assert.Equal(0, (await broker.GetStatsAsync("work", default)).Leased);
    }

    private sealed class InboxCheckFailsOnce(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public TaskCompletionSource Failed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override Task<bool> WasProcessedAsync(string consumer, Cairn.Envelopes.MessageId messageId, CancellationToken cancellationToken) =>
            Failed.TrySetResult() ? Task.FromException<bool>(new IOException("database is locked")) : base.WasProcessedAsync(consumer, messageId, cancellationToken);
    }

    // Two processes host one route and both are held at an event too large for a subscribed queue. Once the queue is
    // declared again with a larger size, one of them publishes the event; the other re-reads the checkpoint after its
    // pause and finds nothing left to publish. Its HeldAt, "null while the route is not held by one event", is null
    // too, though it committed nothing itself.
    [Fact]
    public async Task a_route_whose_held_event_another_process_published_is_no_longer_held()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        await broker.DeclareQueueAsync(new QueueDefinition("small") { MaxMessageSize = 64 }, default);
        await broker.SubscribeAsync(new TopicSubscription("orders", "all", "small", null), default);
        var big = Encoding.UTF8.GetBytes("{\"text\":\"" + new string('x', 200) + "\"}");
        var appended = await store.AppendAsync(new AppendRequest(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData("order.placed", big)]), default);
        var position = appended.LastPosition;

        var route = new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders") { BatchSize = 1 };
        var clockA = new ManualTimeProvider();
        var clockB = new ManualTimeProvider();
        await using var first = new EventRouter(store, broker, checkpoints, route, timeProvider: clockA);
        await using var second = new EventRouter(store, broker, checkpoints, route, timeProvider: clockB);
        await first.StartAsync(default);
        await second.StartAsync(default);
        await Wait.UntilAsync(() => first.Status.HeldAt == position && clockA.ArmedTimers > 0, "the first router is held and pausing");
        await Wait.UntilAsync(() => second.Status.HeldAt == position && clockB.ArmedTimers > 0, "the second router is held and pausing");

        // The cause is gone; the first router retries and publishes the event.
        await broker.DeclareQueueAsync(new QueueDefinition("small") { MaxMessageSize = 256 * 1024 }, default);
        clockA.Advance(TimeSpan.FromSeconds(1));
        await Wait.UntilAsync(() => first.Status is { HeldAt: null, FailuresInARow: 0 } s && s.Position == position, "the first router publishes the event");

        // The second one finds the checkpoint moved past it and goes on.
        clockB.Advance(TimeSpan.FromSeconds(1));
        await Wait.UntilAsync(() => second.Status is { FailuresInARow: 0 } s && s.Position == position, "the second router goes on from the checkpoint");

        Assert.Equal(1, (await broker.GetStatsAsync("small", default)).Visible);
        Assert.Null(second.Status.HeldAt);
    }
}
