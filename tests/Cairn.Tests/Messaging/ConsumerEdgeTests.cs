using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer at its edges: settings at their limits, a failed receive, a slow inbox prune, a lost lease.</summary>
public sealed class ConsumerEdgeTests
{
    private static InMemoryMessageBroker NewBroker(TimeProvider? clock = null) =>
        new(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock ?? TimeProvider.System }), new InMemoryCheckpointStore());

    private static OutgoingMessage Job() => new("job", Encoding.UTF8.GetBytes("{}"));

    // Each handling cancels its handler with a timer of HandlerTimeout, and a timer waits at most about 49.7 days: a
    // longer timeout was accepted, and then every delivery failed before its handler ran, for ever.
    [Fact]
    public void a_handler_timeout_past_thirty_days_is_refused_and_none_means_no_limit()
    {
        foreach (var timeout in new[] { TimeSpan.FromDays(31), TimeSpan.FromDays(60), TimeSpan.MaxValue, TimeSpan.Zero, TimeSpan.FromMilliseconds(-2) })
        {
            var refused = Assert.Throws<InvalidMessageException>(new ConsumerOptions("work") { HandlerTimeout = timeout }.Validate);
            Assert.Contains("HandlerTimeout", refused.Message, StringComparison.Ordinal);
        }

        new ConsumerOptions("work") { HandlerTimeout = TimeSpan.FromDays(30) }.Validate();
        new ConsumerOptions("work") { HandlerTimeout = Timeout.InfiniteTimeSpan }.Validate();
    }

    [Fact]
    public async Task a_consumer_without_a_handler_timeout_handles_its_messages()
    {
        var broker = NewBroker();
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var handled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, HandlerTimeout = Timeout.InfiniteTimeSpan },
            (_, _) =>
            {
                handled.TrySetResult();
                return ValueTask.CompletedTask;
            });
        await consumer.StartAsync(default);
        await broker.SendAsync("work", Job());
        await handled.Task.Bounded();
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the handling is counted");
    }

    // The documented range of Concurrency is 1 to 1,000 and the default prefetch twice it, at most 1,000: a concurrency
    // above 500 was refused with its default prefetch, blaming a Prefetch never set.
    [Fact]
    public void a_concurrency_up_to_a_thousand_is_accepted_with_its_default_prefetch()
    {
        foreach (var (concurrency, prefetch) in new (int, int?)[] { (600, null), (1000, null), (1000, 1000), (1, 1000) })
        {
            new ConsumerOptions("work") { Concurrency = concurrency, Prefetch = prefetch }.Validate();
        }

        Assert.Contains("Concurrency", Assert.Throws<InvalidMessageException>(new ConsumerOptions("work") { Concurrency = 1001 }.Validate).Message, StringComparison.Ordinal);
        Assert.Contains("Prefetch", Assert.Throws<InvalidMessageException>(new ConsumerOptions("work") { Concurrency = 10, Prefetch = 9 }.Validate).Message, StringComparison.Ordinal);
    }

    // The counts change once the broker has settled the message (docs/messaging.md). A non-retryable failure whose
    // dead-lettering found the lease lost (the message went to another receiver while the handler ran) left the
    // message where it was, yet was counted as dead-lettered, and the flow map listed the handler among those that
    // dead-letter.
    [Fact]
    public async Task a_non_retryable_failure_whose_lease_was_lost_is_not_counted_as_dead_lettered()
    {
        var clock = new ManualTimeProvider();
        var broker = NewBroker(clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromSeconds(10) }, default);
        var flows = new FlowRecorder();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, ExtendLeaseWhileHandling = false, HandlerTimeout = TimeSpan.FromHours(1) },
            async (_, _) =>
            {
                started.TrySetResult();
                await gate.Task;
                throw new NonRetryableMessageException("cannot be handled");
            },
            timeProvider: clock,
            flows: flows);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", Job());
        await started.Task.Bounded();

        // The lease runs out and another receiver takes the message.
        clock.Advance(TimeSpan.FromSeconds(11));
        Assert.Single(await broker.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 1 }, default));

        gate.SetResult();
        await Wait.UntilAsync(() => consumer.Status.LeasesLost == 1, "the consumer finds its lease lost");
        Assert.Empty(await broker.ListDeadLettersAsync("work", 0, 10, default));
        Assert.Equal(0, consumer.Status.DeadLettered);
        Assert.Empty(flows.Snapshot().DeadLetteringHandlers);
    }

    // "A failed receive is logged and tried again after a growing pause; a consumer never dies of it." One that failed
    // with a cancellation the consumer had not asked for (a client's own time-out) ended the receiver: the consumer
    // stopped for good, silently, and its stop threw that cancellation into the host's shutdown.
    [Fact]
    public async Task a_receive_that_fails_with_a_cancellation_the_consumer_did_not_ask_for_is_tried_again()
    {
        var broker = new TimingOutOnceBroker(NewBroker());
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var handled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, PollWait = TimeSpan.FromMilliseconds(200) },
            (_, _) =>
            {
                handled.TrySetResult();
                return ValueTask.CompletedTask;
            });
        await consumer.StartAsync(default);
        await broker.SendAsync("work", Job());
        await Wait.UntilAsync(() => handled.Task.IsCompleted || !consumer.Status.Running, "the message is handled or the consumer stops");

        Assert.True(consumer.Status.Running, "the consumer stopped for good after one failed receive");
        Assert.True(handled.Task.IsCompleted);
        await consumer.StopAsync(default).Bounded();
        await consumer.DisposeAsync();
    }

    // The hourly inbox prune (first at the first receive) ran between a receive and the hand-over of its batch to the
    // workers, uncancellable: while it ran (a large inbox after downtime) the batch waited unhandled, and a stop could
    // neither interrupt it nor give the batch back, so it stayed leased until the leases ran out.
    [Fact]
    public async Task a_slow_inbox_prune_holds_back_neither_the_batch_just_received_nor_a_stop()
    {
        var broker = new SlowPruneBroker(NewBroker());
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromMinutes(5) }, default);
        await broker.SendAsync("work", Job());
        await broker.SendAsync("work", Job());
        var consumer = new QueueConsumer(broker, new ConsumerOptions("work") { Concurrency = 1, Prefetch = 2 }, (_, _) => ValueTask.CompletedTask);
        try
        {
            await consumer.StartAsync(default);
            await broker.PruneStarted.Task.Bounded();
            await Wait.UntilAsync(() => consumer.Status.Handled == 2, "the batch is handled while the prune runs");

            // The host's shutdown time is up at once: the prune is cancelled, and nothing stays leased.
            using var now = new CancellationTokenSource();
            await now.CancelAsync();
            await consumer.StopAsync(now.Token).Bounded();
            Assert.False(consumer.Status.Running);
            var stats = await broker.GetStatsAsync("work", default);
            Assert.Equal((0, 0), (stats.Leased, stats.Visible));
        }
        finally
        {
            broker.PruneGate.TrySetResult();
            await consumer.DisposeAsync();
        }
    }

    // A route keeps its checkpoint under "route:<name>" and a hosted subscription under its name, which may be any key:
    // a subscription named "route:audit-out" and the route audit-out shared one checkpoint, and each skipped what the
    // other had handled.
    [Fact]
    public void a_subscription_whose_checkpoint_is_a_routes_is_refused_where_it_is_added()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var cairn = builder.Services.AddCairn(o => o.UseInMemory())
            .AddTopic("audit")
            .AddEventRoute("audit-out", EventFilter.ForCategory("order"), "audit");

        var refused = Assert.Throws<ArgumentException>(() => cairn.AddSubscription("route:audit-out", (_, _, _) => ValueTask.CompletedTask));
        Assert.Contains("'route:audit-out'", refused.Message, StringComparison.Ordinal);
        cairn.AddSubscription("audit", (_, _, _) => ValueTask.CompletedTask);
        Assert.Throws<ArgumentException>(() => cairn.AddSubscription("audit", (_, _, _) => ValueTask.CompletedTask));
    }

    // A stop that gives up on a handler ignoring its cancellation returns with the handler still running; the consumer
    // receives and handles nothing more, yet its status (and the health check that reads it) said it was running.
    [Fact]
    public async Task a_stop_that_gives_up_on_a_handler_reports_the_consumer_not_running()
    {
        var broker = NewBroker();
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, ExtendLeaseWhileHandling = false },
            async (_, _) =>
            {
                started.TrySetResult();
                await gate.Task; // ignores its cancellation
            });
        try
        {
            await consumer.StartAsync(default);
            Assert.True(consumer.Status.Running);
            await broker.SendAsync("work", Job());
            await started.Task.Bounded();

            using var now = new CancellationTokenSource();
            await now.CancelAsync();
            await consumer.StopAsync(now.Token).Bounded();
            Assert.Equal(1, consumer.Status.InFlight);
            Assert.False(consumer.Status.Running);
        }
        finally
        {
            gate.TrySetResult();
            await consumer.DisposeAsync();
        }
    }

    // A handler that failed after its time-out had fired had its failure replaced by HandlerTimeoutException, so a
    // failure that no retry can fix was given back and retried until the queue's last receive.
    [Fact]
    public async Task a_non_retryable_failure_after_the_handler_timeout_is_dead_lettered_at_once()
    {
        var clock = new ManualTimeProvider();
        var broker = NewBroker(clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { MaxReceiveCount = 5 }, default);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, ExtendLeaseWhileHandling = false, HandlerTimeout = TimeSpan.FromSeconds(5) },
            async (_, token) =>
            {
                started.TrySetResult();
                await gate.Task;
                Assert.True(token.IsCancellationRequested);
                throw new NonRetryableMessageException("the order does not exist");
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", Job());
        await started.Task.Bounded();

        clock.Advance(TimeSpan.FromSeconds(6));
        gate.SetResult();
        await Wait.UntilAsync(() => consumer.Status.DeadLettered == 1, "the failure is dead-lettered");
        var dead = Assert.Single(await broker.ListDeadLettersAsync("work", 0, 10, default));
        Assert.Contains(nameof(NonRetryableMessageException), dead.Reason, StringComparison.Ordinal);
        Assert.Equal(0, consumer.Status.Retried);
    }

    // A handler cancelled by its time-out still fails as a time-out, retried with the backoff delay.
    [Fact]
    public async Task a_handler_that_gives_up_at_its_timeout_fails_as_a_timeout_and_is_given_back()
    {
        var clock = new ManualTimeProvider();
        var broker = NewBroker(clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { MaxReceiveCount = 5 }, default);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, ExtendLeaseWhileHandling = false, HandlerTimeout = TimeSpan.FromSeconds(5) },
            async (_, token) =>
            {
                started.TrySetResult();
                await Task.Delay(Timeout.InfiniteTimeSpan, token);
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", Job());
        await started.Task.Bounded();

        clock.Advance(TimeSpan.FromSeconds(6));
        await Wait.UntilAsync(async () => (await broker.GetStatsAsync("work", default)).Delayed == 1, "the message is given back with a delay");
        Assert.Equal(1, consumer.Status.Retried);
        Assert.Equal(0, consumer.Status.DeadLettered);
    }

    // "A thrown exception matches when it, or any exception it wraps, is of one of these types": a non-retryable
    // exception second in an AggregateException (Task.WhenAll's failures) was retried.
    [Fact]
    public void a_non_retryable_exception_anywhere_in_an_aggregate_is_not_retried()
    {
        var policy = new RetryPolicy { NonRetryable = [typeof(KeyNotFoundException)] };
        Assert.False(policy.IsRetryable(new AggregateException(new IOException("disk"), new KeyNotFoundException("template"))));
        Assert.False(policy.IsRetryable(new InvalidOperationException("outer", new AggregateException(new TimeoutException(), new NonRetryableMessageException("bad")))));
        Assert.True(policy.IsRetryable(new AggregateException(new IOException("disk"), new TimeoutException())));
        Assert.True(policy.IsRetryable(new InvalidOperationException("outer", new IOException("disk"))));
    }

    /// <summary>A broker whose first receive fails as a client's own time-out does.</summary>
    private sealed class TimingOutOnceBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        private int _receives;

        public override Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken) =>
            Interlocked.Increment(ref _receives) == 1
                ? Task.FromException<IReadOnlyList<Delivery>>(new TaskCanceledException("The operation timed out."))
                : Inner.ReceiveAsync(queue, options, cancellationToken);
    }

    /// <summary>A broker whose inbox prune takes until the test lets it finish, or the consumer cancels it.</summary>
    private sealed class SlowPruneBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public TaskCompletionSource PruneStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource PruneGate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken)
        {
            PruneStarted.TrySetResult();
            await PruneGate.Task.WaitAsync(cancellationToken);
            return await Inner.PruneInboxAsync(consumer, before, cancellationToken);
        }
    }
}
