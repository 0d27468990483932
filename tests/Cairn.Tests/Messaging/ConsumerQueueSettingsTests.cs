using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer follows its queue's settings when the queue is declared again while it runs.</summary>
public sealed class ConsumerQueueSettingsTests
{
    [Fact]
    public async Task a_queue_declared_again_with_fewer_allowed_receives_has_its_dead_letters_counted_by_a_running_consumer()
    {
        var clock = new ManualTimeProvider();
        var broker = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("work") { MaxReceiveCount = 5 }, default);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Retry = new RetryPolicy { ImmediateRetries = 0, InitialDelay = TimeSpan.Zero, Jitter = 0 } },
            (_, _) => throw new InvalidOperationException("refused"),
            timeProvider: clock);
        await consumer.StartAsync(default);

        // An operator allows one receive from now on; the consumer read five when it started.
        await broker.DeclareQueueAsync(new QueueDefinition("work") { MaxReceiveCount = 1 }, default);
        clock.Advance(TimeSpan.FromSeconds(6));
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));

        await Wait.UntilAsync(async () => (await broker.GetStatsAsync("work", default)).DeadLettered == 1, "the broker dead-letters the message on its first failure");
        // The consumer counts the dead letter once the broker's release returns, after the broker's stats show it.
        await Wait.UntilAsync(() => consumer.Status.Retried == 1 && consumer.Status.DeadLettered >= 1, "the failure is counted");
        Assert.Equal(1, consumer.Status.DeadLettered);
    }
}
