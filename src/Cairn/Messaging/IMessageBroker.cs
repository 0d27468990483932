using Cairn.Envelopes;

namespace Cairn.Messaging;

/// <summary>Declares queues, topics and subscriptions.</summary>
public interface IMessagingAdmin
{
    /// <summary>Creates a queue, or updates the settings of an existing one (FIFO-ness cannot change).</summary>
    Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken);

    /// <summary>The settings of a queue, or null when it does not exist.</summary>
    Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken);

    /// <summary>Every declared queue.</summary>
    Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken);

    /// <summary>Creates a topic if it does not exist.</summary>
    Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken);

    /// <summary>Creates a subscription, or replaces its queue and rule. The topic and the queue must exist.</summary>
    Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken);

    /// <summary>Removes a subscription; false when there was none.</summary>
    Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken);

    /// <summary>The subscriptions of a topic.</summary>
    Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken);

    /// <summary>What a queue holds right now.</summary>
    Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken);
}

/// <summary>Commits sends, publishes, appends, settlements, inbox records and checkpoints together.</summary>
public interface IMessageSender
{
    /// <summary>
    /// Commits a transaction: all of it or nothing. Bad input (an unknown queue or topic, an oversized or malformed
    /// message, a lost lease, a wrong expected version) is refused with a typed error before anything is written.
    /// </summary>
    Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken);
}

/// <summary>Receives messages under a lease and settles them.</summary>
public interface IMessageReceiver
{
    /// <summary>
    /// Leases up to <see cref="ReceiveOptions.MaxMessages"/> visible messages. With <see cref="ReceiveOptions.Wait"/>,
    /// waits for the first one to become visible; an empty list means none did in time.
    /// </summary>
    Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken);

    /// <summary>Deletes delivered messages. A lease that is no longer held fails the call with <see cref="LeaseLostException"/> and nothing is deleted.</summary>
    Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken);

    /// <summary>
    /// Gives a delivery back (a nack): visible again after <paramref name="delay"/>, with the failure recorded. A
    /// message that has reached its queue's maximum receive count is dead-lettered instead.
    /// </summary>
    Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken);

    /// <summary>
    /// Gives a delivery back untried, visible at once and not counted as a receive: for a consumer that stops before
    /// handling what it received. It can never dead-letter the message.
    /// </summary>
    Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken);

    /// <summary>
    /// Says that this process has stopped receiving from <paramref name="queue"/> (a consumer stopped). A transport
    /// that pushes messages to a process ahead of its receives (RabbitMQ's prefetch) stops taking them and gives back
    /// those it holds unreceived, so that receivers in other processes get them; the next receive starts taking again.
    /// Leases already taken stay valid. Brokers that hold nothing ahead of a receive do nothing.
    /// </summary>
    Task StopReceivingAsync(QueueName queue, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Extends a lease to <paramref name="duration"/> from now.</summary>
    Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken);

    /// <summary>Moves a delivery to its queue's dead-letter queue at once, with a reason.</summary>
    Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken);

    /// <summary>
    /// Forgets the inbox records of <paramref name="consumer"/> written before <paramref name="before"/>; returns how
    /// many. A message redelivered after its record is gone would be handled again, so keep records longer than any
    /// redelivery can come (the queue's retention).
    /// </summary>
    Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken);

    /// <summary>Whether <paramref name="consumer"/>'s inbox records <paramref name="messageId"/> as handled.</summary>
    Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken);
}

/// <summary>Inspects and repairs a queue's dead-letter queue.</summary>
public interface IDeadLetterQueue
{
    /// <summary>Dead letters of a queue in queue order, after <paramref name="afterSequence"/>, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken);

    /// <summary>One dead letter by message id, or null.</summary>
    Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken);

    /// <summary>
    /// Moves dead letters back to be delivered: to their own queue (keeping their place, id and history) or to another,
    /// at most at the requested rate. Returns how many moved; an empty dead-letter queue moves none.
    /// </summary>
    Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken);

    /// <summary>Deletes dead letters (the chosen ones, or all when null); a parked FIFO group moves on. Returns how many.</summary>
    Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken);
}

/// <summary>
/// The broker of a backend: durable queues with leases and dead-letter queues, topics with filtered subscriptions,
/// and transactional commits shared with the event store.
/// </summary>
public interface IMessageBroker : IMessagingAdmin, IMessageSender, IMessageReceiver, IDeadLetterQueue;
