using Cairn.Conformance;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Sqlite;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The conformance suite's view of the transport: SQLite wrapped by RabbitMQ, each store with a queue prefix of its
/// own on the shared broker. The suite was written for brokers whose sends are visible to the very next receive; over
/// RabbitMQ a send reaches the queue when the relay has published it, so a receive that would not wait (Wait = 0)
/// first waits, boundedly, until nothing of that queue is still in the outbox or ready in RabbitMQ. FIFO queues stay in
/// the backend, where it need not.
/// </summary>
public sealed class RabbitMqFixture : IStoreFixture
{
    public async Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null)
    {
        var sut = await TransportUnderTest.StartAsync(configure: o => o with { QueuePrefix = $"c{Guid.NewGuid():N}." }, storeOptions: options);
        return new StoreUnderTest(
            sut.Store,
            new SqliteCheckpointStore(sut.Store),
            sut.DisposeAsync,
            new SettlingBroker(sut.Broker));
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private sealed class SettlingBroker(RabbitMqMessageBroker inner) : IMessageBroker
    {
        public async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
        {
            // The first receive validates, and starts the queue's reader, so RabbitMQ has someone to push to.
            var received = new List<Delivery>(await inner.ReceiveAsync(queue, options, cancellationToken));
            if (options.Wait > TimeSpan.Zero || (await inner.GetQueueAsync(queue, cancellationToken))?.Fifo == true)
            {
                // A FIFO queue is the backend's: a send is visible to the next receive, as the suite expects.
                return received;
            }

            await Wait.UntilAsync(async () => await inner.InTransitAsync(queue, cancellationToken) == 0, $"the messages of {queue} reached this process");
            while (received.Count < options.MaxMessages)
            {
                var batch = await inner.ReceiveAsync(queue, options with { MaxMessages = options.MaxMessages - received.Count, Wait = TimeSpan.FromMilliseconds(received.Count == 0 ? 300 : 50) }, cancellationToken);
                if (batch.Count == 0)
                {
                    break;
                }

                received.AddRange(batch);
            }

            return received;
        }

        public Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken) => inner.DeclareQueueAsync(queue, cancellationToken);

        public Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken) => inner.GetQueueAsync(queue, cancellationToken);

        public Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken) => inner.ListQueuesAsync(cancellationToken);

        public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken) => inner.DeclareTopicAsync(topic, cancellationToken);

        public Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken) => inner.SubscribeAsync(subscription, cancellationToken);

        public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken) => inner.UnsubscribeAsync(topic, subscription, cancellationToken);

        public Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken) => inner.ListSubscriptionsAsync(topic, cancellationToken);

        public Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken) => inner.GetStatsAsync(queue, cancellationToken);

        public Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken) => inner.CommitAsync(transaction, cancellationToken);

        public Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken) => inner.AcknowledgeAsync(leases, cancellationToken);

        public Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken) => inner.ReleaseAsync(lease, delay, failure, cancellationToken);

        public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) => inner.ReturnAsync(lease, cancellationToken);

        public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken) => inner.ExtendLeaseAsync(lease, duration, cancellationToken);

        public Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken) => inner.DeadLetterAsync(lease, reason, failure, cancellationToken);

        public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken) => inner.PruneInboxAsync(consumer, before, cancellationToken);

        public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken) => inner.WasProcessedAsync(consumer, messageId, cancellationToken);

        public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken) => inner.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken);

        public Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken) => inner.GetDeadLetterAsync(queue, messageId, cancellationToken);

        public Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken) => inner.RedriveAsync(queue, request, cancellationToken);

        public Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken) => inner.PurgeDeadLettersAsync(queue, messageIds, cancellationToken);
    }
}
