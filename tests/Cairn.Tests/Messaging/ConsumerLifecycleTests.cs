using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Messaging;

/// <summary>Hosted queue consumers at their edges: handlers made per message, a stop while a receive fails, counts of repeats, a start tried again.</summary>
public sealed class ConsumerLifecycleTests
{
    private static OutgoingMessage Job() => new("job", Encoding.UTF8.GetBytes("{}"));

    // A handler made for each message (AddConsumer<THandler>, not registered itself) that owns resources is disposed
    // once it has handled its message: made with ActivatorUtilities, which the scope does not track, it never was.
    [Fact]
    public async Task a_per_message_handler_that_is_disposable_is_disposed_with_its_scope()
    {
        DisposableHandler.Reset();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("jobs")
            .AddConsumer<DisposableHandler>("jobs", o => o with { Concurrency = 1 });
        using var host = builder.Build();
        await host.StartAsync();
        await host.Services.GetRequiredService<IMessageSender>().SendAsync("jobs", Job());
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("jobs")!.Status.Handled == 1, "the message is handled");

        // The handling's scope is disposed before the worker takes its next message; a stop waits for the workers.
        await host.StopAsync();
        Assert.Equal(1, DisposableHandler.Made);
        Assert.True(DisposableHandler.Disposed == 1, $"{DisposableHandler.Made} handler(s) made per message, {DisposableHandler.Disposed} disposed");
    }

    public sealed class DisposableHandler : IMessageHandler, IDisposable
    {
        private static int _made, _disposed;

        public DisposableHandler() => Interlocked.Increment(ref _made);

        public static int Made => Volatile.Read(ref _made);

        public static int Disposed => Volatile.Read(ref _disposed);

        public static void Reset()
        {
            _made = 0;
            _disposed = 0;
        }

        public ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public void Dispose() => Interlocked.Increment(ref _disposed);
    }

    // A receive cut off by the stop may fail as its transport does (a dropped connection) rather than as a
    // cancellation: it escaped the receiver, and the stop (so the host's shutdown) threw it.
    [Fact]
    public async Task a_receive_that_fails_as_the_consumer_stops_does_not_make_the_stop_throw()
    {
        var broker = new ReceiveFailsWhenCancelled(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var consumer = new QueueConsumer(broker, new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1 }, (_, _) => ValueTask.CompletedTask);
        await consumer.StartAsync(default);
        await broker.Receiving.Task.Bounded();

        var stop = await Record.ExceptionAsync(() => consumer.StopAsync(default).Bounded());
        Assert.Null(stop);
        await consumer.DisposeAsync();
    }

    /// <summary>A broker whose long-poll, when cancelled, fails as a dropped connection does rather than as a cancellation.</summary>
    private sealed class ReceiveFailsWhenCancelled(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public TaskCompletionSource Receiving { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
        {
            Receiving.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw new IOException("connection reset by peer");
        }
    }

    // The counts change once the broker has settled the message: a repeat whose acknowledgement found its lease lost
    // (another receiver holds the message) was counted as a duplicate too, though it is still in the queue.
    [Fact]
    public async Task a_repeat_whose_acknowledgement_found_the_lease_lost_is_not_counted_as_a_duplicate()
    {
        var clock = new ManualTimeProvider();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new LeaseLostDuringInboxLook(inner, clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromSeconds(10) }, default);
        var sent = Job();
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("work", sent.Id), default);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, ExtendLeaseWhileHandling = false },
            (_, _) => ValueTask.CompletedTask,
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", sent);
        await Wait.UntilAsync(() => consumer.Status.LeasesLost == 1, "the acknowledgement finds the lease lost");

        // The message is still there, held by the other receiver.
        Assert.Equal(1, (await inner.GetStatsAsync("work", default)).Leased);
        Assert.Equal(0, consumer.Status.Duplicates);
    }

    /// <summary>While the consumer looks its message up in the inbox, the lease runs out and another receiver takes it.</summary>
    private sealed class LeaseLostDuringInboxLook(IMessageBroker inner, ManualTimeProvider clock) : DelegatingMessageBroker(inner)
    {
        public override async Task<bool> WasProcessedAsync(string consumer, Envelopes.MessageId messageId, CancellationToken cancellationToken)
        {
            var processed = await Inner.WasProcessedAsync(consumer, messageId, cancellationToken);
            clock.Advance(TimeSpan.FromSeconds(11));
            Assert.Single(await Inner.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 1 }, cancellationToken));
            return processed;
        }
    }

    // A start refused because the queue is not declared yet leaves the consumer unstarted: it was marked started before
    // the check, and the start tried again once the queue existed was refused as "already started".
    [Fact]
    public async Task a_start_refused_for_a_missing_queue_can_be_tried_again_once_the_queue_exists()
    {
        var broker = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        await using var consumer = new QueueConsumer(broker, new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1 }, (_, _) => ValueTask.CompletedTask);
        await Assert.ThrowsAsync<QueueNotFoundException>(() => consumer.StartAsync(default));

        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var retried = await Record.ExceptionAsync(() => consumer.StartAsync(default));
        Assert.Null(retried);
        await broker.SendAsync("work", Job());
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the message is handled");
    }
}
