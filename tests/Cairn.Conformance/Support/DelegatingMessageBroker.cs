using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.Conformance.Support;

/// <summary>A message broker that forwards to another; tests override what they observe or disturb.</summary>
public class DelegatingMessageBroker(IMessageBroker inner) : IMessageBroker
{
    /// <summary>The wrapped broker.</summary>
    public IMessageBroker Inner { get; } = inner;

    /// <inheritdoc />
    public virtual Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken) => Inner.CommitAsync(transaction, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken) => Inner.ReceiveAsync(queue, options, cancellationToken);

    /// <inheritdoc />
    public virtual Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken) => Inner.AcknowledgeAsync(leases, cancellationToken);

    /// <inheritdoc />
    public virtual Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken) => Inner.ReleaseAsync(lease, delay, failure, cancellationToken);

    /// <inheritdoc />
    public virtual Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) => Inner.ReturnAsync(lease, cancellationToken);

    /// <inheritdoc />
    public virtual Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken) => Inner.ExtendLeaseAsync(lease, duration, cancellationToken);

    /// <inheritdoc />
    public virtual Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken) => Inner.DeadLetterAsync(lease, reason, failure, cancellationToken);

    /// <inheritdoc />
    public virtual Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken) => Inner.WasProcessedAsync(consumer, messageId, cancellationToken);

    /// <inheritdoc />
    public virtual Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken) => Inner.PruneInboxAsync(consumer, before, cancellationToken);

    /// <inheritdoc />
    public virtual Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken) => Inner.DeclareQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public virtual Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken) => Inner.GetQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken) => Inner.ListQueuesAsync(cancellationToken);

    /// <inheritdoc />
    public virtual Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken) => Inner.DeclareTopicAsync(topic, cancellationToken);

    /// <inheritdoc />
    public virtual Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken) => Inner.SubscribeAsync(subscription, cancellationToken);

    /// <inheritdoc />
    public virtual Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken) => Inner.UnsubscribeAsync(topic, subscription, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken) => Inner.ListSubscriptionsAsync(topic, cancellationToken);

    /// <inheritdoc />
    public virtual Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken) => Inner.GetStatsAsync(queue, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken) => Inner.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken);

    /// <inheritdoc />
    public virtual Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken) => Inner.GetDeadLetterAsync(queue, messageId, cancellationToken);

    /// <inheritdoc />
    public virtual Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken) => Inner.RedriveAsync(queue, request, cancellationToken);

    /// <inheritdoc />
    public virtual Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken) => Inner.PurgeDeadLettersAsync(queue, messageIds, cancellationToken);
}
