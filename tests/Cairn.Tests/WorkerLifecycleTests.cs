using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Messaging.Routing;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>Starting, stopping and disposing the public workers in every order a host or a user may call them.</summary>
public sealed class WorkerLifecycleTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // A run started after the disposal could never be stopped (a second disposal does nothing): the start is refused, as
    // the consumer's and the runner's are.
    [Fact]
    public async Task a_subscription_started_after_its_disposal_refuses_through_the_task_and_handles_nothing()
    {
        var store = new InMemoryEventStore();
        await store.AppendAsync(new AppendRequest("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1)]), default);
        var handled = 0;
        var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "disposed-first" }, (_, _) =>
        {
            Interlocked.Increment(ref handled);
            return ValueTask.CompletedTask;
        });
        await subscription.DisposeAsync();

        Task start;
        try
        {
            start = subscription.StartAsync(default);
        }
        catch (Exception e)
        {
            start = Task.FromException(e);
        }

        var refusal = await Record.ExceptionAsync(() => start.WaitAsync(Bound));
        var stopped = true;
        if (refusal is null)
        {
            // It started: show what that run does, and whether anything can still stop it.
            await Wait.UntilAsync(() => Volatile.Read(ref handled) > 0, "the subscription started after its disposal handles the event");
            var stop = subscription.StopAsync(default);
            stopped = await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(3))) == stop;
        }

        Assert.True(
            refusal is ObjectDisposedException,
            $"StartAsync after DisposeAsync ended with {refusal?.GetType().Name ?? "success"}; the run handled {Volatile.Read(ref handled)} events and {(stopped ? "stopped" : "could not be stopped (StopAsync still waiting after 3 s)")}.");
    }

    // Two threads starting one subscription at once (two hosted services sharing it, a retry racing a start): one run,
    // not two handling every event twice, one of them out of reach of any stop.
    [Fact]
    public async Task two_concurrent_starts_of_one_subscription_start_one_run()
    {
        var store = new InMemoryEventStore();
        await store.AppendAsync(new AppendRequest("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1)]), default);
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var handled = 0;
            var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "twice-" + attempt }, (_, _) =>
            {
                Interlocked.Increment(ref handled);
                return ValueTask.CompletedTask;
            });
            using var barrier = new Barrier(2);
            var starts = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
            {
                barrier.SignalAndWait();
                try
                {
                    await subscription.StartAsync(default);
                    return true;
                }
                catch (InvalidOperationException)
                {
                    return false;
                }
            })).ToArray();
            var started = (await Task.WhenAll(starts).WaitAsync(Bound)).Count(s => s);
            await subscription.WaitForPositionAsync(new GlobalPosition(1), default).WaitAsync(Bound);
            await subscription.StopAsync(default).WaitAsync(Bound);

            Assert.True(started == 1, $"attempt {attempt}: {started} concurrent starts succeeded; the event was handled {Volatile.Read(ref handled)} times");
        }
    }

    // A stop after the disposal (an `await using` around an explicit stop, a host stopped after its container was
    // disposed) has nothing to do, as for the projection runner and the subscription.
    [Fact]
    public async Task a_consumer_stopped_after_its_disposal_says_nothing()
    {
        var broker = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var consumer = new QueueConsumer(broker, new ConsumerOptions("work") { Concurrency = 1 }, (_, _) => ValueTask.CompletedTask);
        await consumer.StartAsync(default);
        await consumer.DisposeAsync();

        var stop = Record.Exception(() => consumer.StopAsync(default).WaitAsync(Bound).GetAwaiter().GetResult());

        Assert.Null(stop);
    }

    // The same for a route.
    [Fact]
    public async Task a_router_stopped_after_its_disposal_says_nothing()
    {
        var router = await RouterAsync();
        await router.StartAsync(default);
        await router.DisposeAsync();

        var stop = Record.Exception(() => router.StopAsync(default).WaitAsync(Bound).GetAwaiter().GetResult());

        Assert.Null(stop);
    }

    // A route disposed before it was started refuses the start through its task, rather than report a start whose loop
    // would fail at once where nobody sees it.
    [Fact]
    public async Task a_router_started_after_its_disposal_refuses_through_the_task()
    {
        var router = await RouterAsync();
        await router.DisposeAsync();

        await ThroughTask.RefusedAsync(() => router.StartAsync(default), typeof(ObjectDisposedException));
    }

    // A consumer disposed while its start still reads the queue's settings (Ctrl+C during a host's start-up): the start
    // fails, rather than report a consumer started that is disposed and never receives.
    [Fact]
    public async Task a_consumer_disposed_during_its_start_refuses_the_start()
    {
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        await inner.DeclareQueueAsync(new QueueDefinition("work"), default);
        var broker = new GatedQueueLookup(inner);
        var consumer = new QueueConsumer(broker, new ConsumerOptions("work") { Concurrency = 1, ExtendLeaseWhileHandling = true }, (_, _) => ValueTask.CompletedTask);

        var start = consumer.StartAsync(default);
        await broker.Asked.Task.WaitAsync(Bound);
        await consumer.DisposeAsync().AsTask().WaitAsync(Bound);
        broker.Release.TrySetResult();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => start.WaitAsync(Bound));
    }

    /// <summary>A route from the order category to a topic, over a fresh in-memory store and broker, not started.</summary>
    private static async Task<EventRouter> RouterAsync()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        await broker.DeclareTopicAsync("orders", default);
        return new EventRouter(store, broker, checkpoints, new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders"));
    }

    private sealed class GatedQueueLookup(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public TaskCompletionSource Asked { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken)
        {
            Asked.TrySetResult();
            await Release.Task.ConfigureAwait(false);
            return await base.GetQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        }
    }
}
