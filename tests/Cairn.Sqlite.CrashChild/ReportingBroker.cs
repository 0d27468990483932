using System.Collections.Concurrent;
using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.Sqlite.CrashChild;

/// <summary>How a delivered message was settled.</summary>
public enum Settlement
{
    /// <summary>Its handling committed: effects, acknowledgement and inbox record together.</summary>
    Handled,

    /// <summary>A commit found it already in the inbox: acknowledged, no effect written.</summary>
    Duplicate,

    /// <summary>Acknowledged without a handling of its own (the consumer found it in the inbox before handling it).</summary>
    Acknowledged,

    /// <summary>Given back to the queue.</summary>
    Released,

    /// <summary>Moved to the dead-letter queue.</summary>
    DeadLettered,
}

/// <summary>
/// Passes everything through to a broker and reports each settlement once its commit has returned, so the report
/// follows the commit and never runs ahead of it: a consumer cannot tell when the commit after its handler is done.
/// <paramref name="committed"/>, if given, is told of every transaction committed, with its result.
/// </summary>
public sealed class ReportingBroker(IMessageBroker inner, Action<MessageId, Settlement> settled, Action<MessageTransaction, CommitResult>? committed = null) : IMessageBroker
{
    private readonly ConcurrentDictionary<LeaseToken, MessageId> _delivered = new();

    /// <inheritdoc />
    public async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var result = await inner.CommitAsync(transaction, cancellationToken);
        committed?.Invoke(transaction, result);
        foreach (var lease in transaction.Acknowledgements)
        {
            if (_delivered.TryRemove(lease, out var id))
            {
                var how = transaction.Inbox?.MessageId != id ? Settlement.Acknowledged : result.AlreadyProcessed ? Settlement.Duplicate : Settlement.Handled;
                settled(id, how);
            }
        }

        return result;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
    {
        var deliveries = await inner.ReceiveAsync(queue, options, cancellationToken);
        foreach (var delivery in deliveries)
        {
            _delivered[delivery.Lease] = delivery.Message.Id;
        }

        return deliveries;
    }

    /// <inheritdoc />
    public async Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken)
    {
        await inner.AcknowledgeAsync(leases, cancellationToken);
        Report(leases, Settlement.Acknowledged);
    }

    /// <inheritdoc />
    public async Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken)
    {
        await inner.ReleaseAsync(lease, delay, failure, cancellationToken);
        Report([lease], Settlement.Released);
    }

    /// <inheritdoc />
    public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken) => inner.PruneInboxAsync(consumer, before, cancellationToken);

    /// <inheritdoc />
    public async Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken)
    {
        await inner.ReturnAsync(lease, cancellationToken);
        Report([lease], Settlement.Released);
    }

    /// <inheritdoc />
    public async Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken)
    {
        await inner.DeadLetterAsync(lease, reason, failure, cancellationToken);
        Report([lease], Settlement.DeadLettered);
    }

    /// <inheritdoc />
    public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken) =>
        inner.ExtendLeaseAsync(lease, duration, cancellationToken);

    /// <inheritdoc />
    public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken) =>
        inner.WasProcessedAsync(consumer, messageId, cancellationToken);

    /// <inheritdoc />
    public Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken) =>
        inner.DeclareQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken) =>
        inner.GetQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken) =>
        inner.ListQueuesAsync(cancellationToken);

    /// <inheritdoc />
    public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken) =>
        inner.DeclareTopicAsync(topic, cancellationToken);

    /// <inheritdoc />
    public Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken) =>
        inner.SubscribeAsync(subscription, cancellationToken);

    /// <inheritdoc />
    public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken) =>
        inner.UnsubscribeAsync(topic, subscription, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken) =>
        inner.ListSubscriptionsAsync(topic, cancellationToken);

    /// <inheritdoc />
    public Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken) =>
        inner.GetStatsAsync(queue, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken) =>
        inner.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken);

    /// <inheritdoc />
    public Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken) =>
        inner.GetDeadLetterAsync(queue, messageId, cancellationToken);

    /// <inheritdoc />
    public Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken) =>
        inner.RedriveAsync(queue, request, cancellationToken);

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken) =>
        inner.PurgeDeadLettersAsync(queue, messageIds, cancellationToken);

    private void Report(IReadOnlyList<LeaseToken> leases, Settlement settlement)
    {
        foreach (var lease in leases)
        {
            if (_delivered.TryRemove(lease, out var id))
            {
                settled(id, settlement);
            }
        }
    }
}
