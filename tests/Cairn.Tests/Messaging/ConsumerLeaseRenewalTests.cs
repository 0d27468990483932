using System.Collections.Concurrent;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer's one renewal timer keeps every lease in hand alive, each on its own schedule.</summary>
public sealed class ConsumerLeaseRenewalTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task deliveries_received_at_different_times_are_each_renewed_before_their_lease_runs_out_and_a_finished_one_never()
    {
        var clock = new ManualTimeProvider();
        var start = clock.GetUtcNow();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new ExtensionRecordingBroker(inner, clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = Lease }, default);
        var started = new ConcurrentDictionary<string, Delivery>(StringComparer.Ordinal);
        var finish = new ConcurrentDictionary<string, TaskCompletionSource>(StringComparer.Ordinal);
        foreach (var name in new[] { "a", "b", "c" })
        {
            finish[name] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 3, Prefetch = 3, HandlerTimeout = TimeSpan.FromMinutes(5) },
            async (context, ct) =>
            {
                var name = Encoding.UTF8.GetString(context.Message.Data.Span).Trim('"');
                started[name] = context.Delivery;
                await finish[name].Task.WaitAsync(ct);
            },
            timeProvider: clock);
        await consumer.StartAsync(default);

        // Three deliveries two seconds apart: leases running out at 10, 12 and 14 s.
        foreach (var name in new[] { "a", "b", "c" })
        {
            if (name != "a")
            {
                clock.Advance(TimeSpan.FromSeconds(2));
            }

            await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes($"\"{name}\"")));
            await Wait.UntilAsync(() => started.ContainsKey(name), $"{name} is being handled");
        }

        Assert.Equal([10.0, 12.0, 14.0], new[] { "a", "b", "c" }.Select(n => (started[n].LeaseExpiresAt - start).TotalSeconds));

        // b ends before half its lease is spent; a and c go on working.
        finish["b"].SetResult();
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "b is handled");
        await Wait.UntilAsync(
            () =>
            {
                if (broker.ExtensionsOf(started["a"].Lease).Count >= 3 && broker.ExtensionsOf(started["c"].Lease).Count >= 3)
                {
                    return true;
                }

                clock.Advance(TimeSpan.FromMilliseconds(100));
                return false;
            },
            "a and c are each renewed three times");

        Assert.Empty(broker.ExtensionsOf(started["b"].Lease));
        foreach (var name in new[] { "a", "c" })
        {
            // Each extension comes before the lease it extends runs out, and about when half of it is spent (the clock
            // moves in steps while the consumer works, so "about" is within a second).
            var expires = started[name].LeaseExpiresAt;
            foreach (var at in broker.ExtensionsOf(started[name].Lease))
            {
                Assert.InRange(at, expires - (Lease / 2) - TimeSpan.FromSeconds(1), expires - TimeSpan.FromTicks(1));
                expires = at + Lease;
            }
        }

        // Well past the leases they were received with, nobody else can take a or c.
        Assert.True(clock.GetUtcNow() - start > TimeSpan.FromSeconds(15));
        Assert.Empty(await inner.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 10, Wait = TimeSpan.Zero }, default));
        finish["a"].SetResult();
        finish["c"].SetResult();
        await Wait.UntilAsync(() => consumer.Status.Handled == 3, "a and c are handled");
        Assert.Equal(0, consumer.Status.LeasesLost);
    }

    /// <summary>A broker that notes when each lease is extended.</summary>
    private sealed class ExtensionRecordingBroker(IMessageBroker inner, TimeProvider clock) : IMessageBroker
    {
        private readonly ConcurrentQueue<(LeaseToken Lease, DateTimeOffset At)> _extensions = new();

        public List<DateTimeOffset> ExtensionsOf(LeaseToken lease) => [.. _extensions.Where(e => e.Lease == lease).Select(e => e.At)];

        public async Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
        {
            var at = clock.GetUtcNow();
            await inner.ExtendLeaseAsync(lease, duration, cancellationToken);
            _extensions.Enqueue((lease, at));
        }

        public Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken) => inner.AcknowledgeAsync(leases, cancellationToken);

        public Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken) => inner.ReleaseAsync(lease, delay, failure, cancellationToken);

        public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) => inner.ReturnAsync(lease, cancellationToken);

        public Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken) => inner.DeadLetterAsync(lease, reason, failure, cancellationToken);

        public Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken) => inner.CommitAsync(transaction, cancellationToken);

        public Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken) => inner.ReceiveAsync(queue, options, cancellationToken);

        public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken) => inner.WasProcessedAsync(consumer, messageId, cancellationToken);

        public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken) => inner.PruneInboxAsync(consumer, before, cancellationToken);

        public Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken) => inner.DeclareQueueAsync(queue, cancellationToken);

        public Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken) => inner.GetQueueAsync(queue, cancellationToken);

        public Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken) => inner.ListQueuesAsync(cancellationToken);

        public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken) => inner.DeclareTopicAsync(topic, cancellationToken);

        public Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken) => inner.SubscribeAsync(subscription, cancellationToken);

        public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken) => inner.UnsubscribeAsync(topic, subscription, cancellationToken);

        public Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken) => inner.ListSubscriptionsAsync(topic, cancellationToken);

        public Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken) => inner.GetStatsAsync(queue, cancellationToken);

        public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken) => inner.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken);

        public Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken) => inner.GetDeadLetterAsync(queue, messageId, cancellationToken);

        public Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken) => inner.RedriveAsync(queue, request, cancellationToken);

        public Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken) => inner.PurgeDeadLettersAsync(queue, messageIds, cancellationToken);
    }
}
