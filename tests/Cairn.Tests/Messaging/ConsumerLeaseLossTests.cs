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

/// <summary>A consumer whose lease renewal finds the lease gone stops the handler, and neither retries nor settles.</summary>
public sealed class ConsumerLeaseLossTests
{
    [Fact]
    public async Task a_handler_whose_lease_is_lost_is_cancelled_once_and_not_retried()
    {
        var clock = new ManualTimeProvider();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new LeaseLosingBroker(inner);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromSeconds(10) }, default);
        var calls = 0;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, Retry = new RetryPolicy { ImmediateRetries = 3 } },
            async (_, ct) =>
            {
                Interlocked.Increment(ref calls);
                started.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        await started.Task.WaitAsync(Wait.Timeout);

        // Half the lease left: the renewal is due, and finds the lease gone.
        await Wait.UntilAsync(() => clock.ArmedTimers == 2, "the renewal is armed");
        clock.Advance(TimeSpan.FromSeconds(5));
        await Wait.UntilAsync(() => consumer.Status.LeasesLost == 1, "the lost lease is noticed");

        Assert.Equal(1, calls);
        Assert.Equal(0, consumer.Status.Retried);
        Assert.Equal(0, broker.Settlements);
    }

    /// <summary>A broker whose lease extensions all fail as if another receiver had taken the message.</summary>
    private sealed class LeaseLosingBroker(IMessageBroker inner) : IMessageBroker
    {
        private int _settlements;

        public int Settlements => Volatile.Read(ref _settlements);

        public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken) =>
            throw new LeaseLostException(lease, "the lease ran out and the message was delivered again");

        public Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken) => Settle(inner.AcknowledgeAsync(leases, cancellationToken));

        public Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken) => Settle(inner.ReleaseAsync(lease, delay, failure, cancellationToken));

        public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) => Settle(inner.ReturnAsync(lease, cancellationToken));

        public Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken) => Settle(inner.DeadLetterAsync(lease, reason, failure, cancellationToken));

        public Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
        {
            if (transaction.Acknowledgements.Count > 0)
            {
                Interlocked.Increment(ref _settlements);
            }

            return inner.CommitAsync(transaction, cancellationToken);
        }

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

        private Task Settle(Task settlement)
        {
            Interlocked.Increment(ref _settlements);
            return settlement;
        }
    }
}
