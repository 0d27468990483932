using System.Collections.Concurrent;
using System.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Diagnostics;

/// <summary>
/// Wraps any broker with a span per commit and the <c>Cairn.Messaging</c> metrics (sent, received, acknowledged,
/// retried, lease expiries, and the depth and oldest message's age of every queue declared through it). Backends
/// count only what they alone see: messages they dead-letter. <c>AddCairn</c> registers every backend's broker
/// through it.
/// </summary>
public sealed class InstrumentedMessageBroker : IMessageBroker, IDisposable, IAsyncDisposable
{
    private readonly ConcurrentDictionary<QueueName, byte> _queues = new();

    /// <summary>Wraps a broker.</summary>
    public InstrumentedMessageBroker(IMessageBroker inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        Inner = inner;
        CairnDiagnostics.TrackQueues(this, ReadStats);
    }

    /// <summary>The wrapped broker.</summary>
    public IMessageBroker Inner { get; }

    /// <summary>The queues declared through this broker, which its gauges and the messaging health check read.</summary>
    internal IEnumerable<QueueName> DeclaredQueues => _queues.Keys;

    /// <inheritdoc />
    public async Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken)
    {
        await Inner.DeclareQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        _queues.TryAdd(queue.Name, 0);
    }

    /// <inheritdoc />
    public Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken) => Inner.GetQueueAsync(queue, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken) => Inner.ListQueuesAsync(cancellationToken);

    /// <inheritdoc />
    public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken) => Inner.DeclareTopicAsync(topic, cancellationToken);

    /// <inheritdoc />
    public Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken) => Inner.SubscribeAsync(subscription, cancellationToken);

    /// <inheritdoc />
    public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken) => Inner.UnsubscribeAsync(topic, subscription, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken) => Inner.ListSubscriptionsAsync(topic, cancellationToken);

    /// <inheritdoc />
    public Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken) => Inner.GetStatsAsync(queue, cancellationToken);

    /// <inheritdoc />
    public async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var sends = transaction.Sends.Count + transaction.Publishes.Count;

        // Appends committed with messages (AppendAndSendAsync, a handler's Append, a workflow's decision) reach the
        // backend's own store, past InstrumentedEventStore: they are counted and traced here, as every append is. The
        // append span starts first, so the messages carry the send span below as their trace.
        var appends = transaction.Appends;
        using var appendActivity = appends.Count > 0 ? CairnDiagnostics.EventStoreSource.StartActivity("cairn.append", ActivityKind.Producer) : null;
        if (appendActivity is not null)
        {
            // A malformed append (no streams, or null ones) is the backend's to refuse, with its own error.
            if (appends[0]?.Streams is { Count: > 0 } streams && streams[0] is { } first)
            {
                appendActivity.SetTag("cairn.stream", first.Stream.ToString());
            }

            appendActivity.SetTag("cairn.streams", appends.Sum(a => a?.Streams?.Count ?? 0));
            appendActivity.SetTag("cairn.events", appends.Sum(a => a?.Streams?.Sum(s => s?.Events?.Count ?? 0) ?? 0));
        }

        var started = Stopwatch.GetTimestamp();
        var appendOutcome = "error";
        IReadOnlyList<AppendResult> appended = [];

        // The span is current while the backend prepares the messages, so they carry it as their traceparent. Its name
        // is built only when someone listens: a commit per handled message would otherwise make a string for nothing.
        using var activity = sends > 0 && CairnDiagnostics.MessagingSource.HasListeners()
            ? CairnDiagnostics.MessagingSource.StartActivity(SpanName(transaction), ActivityKind.Producer)
            : null;
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "cairn");
            activity.SetTag("messaging.batch.message_count", sends);
            activity.SetTag("cairn.appends", transaction.Appends.Count);
        }

        try
        {
            var result = await Inner.CommitAsync(transaction, cancellationToken).ConfigureAwait(false);
            appendOutcome = "ok";
            appended = result.Appends;
            for (var i = 0; i < appends.Count && i < appended.Count; i++)
            {
                if (!appended[i].WasDuplicate)
                {
                    CairnDiagnostics.EventsAppended.Add(appends[i].EventCount);
                }
            }

            if (appended.Count > 0)
            {
                appendActivity?.SetTag("cairn.position", appended[^1].LastPosition.Value);
            }

            if (result.MessagesEnqueued > 0)
            {
                CairnDiagnostics.MessagesSent.Add(result.MessagesEnqueued);
            }

            if (transaction.Acknowledgements.Count > 0)
            {
                CairnDiagnostics.MessagesAcknowledged.Add(transaction.Acknowledgements.Count);
            }

            activity?.SetTag("cairn.enqueued", result.MessagesEnqueued);
            return result;
        }
        catch (Exception ex)
        {
            appendOutcome = ex switch
            {
                WrongExpectedVersionException or AppendConditionFailedException => "conflict",
                OperationCanceledException => "cancelled",
                _ => "error",
            };
            if (appendOutcome == "conflict" && appends.Count > 0)
            {
                CairnDiagnostics.Conflicts.Add(1);
            }

            // A cancelled commit is not an error, as a cancelled append is not; a conflict is no exception to record.
            if (appendOutcome != "cancelled")
            {
                foreach (var span in (Activity?[])[activity, appendActivity])
                {
                    span?.SetStatus(ActivityStatusCode.Error, ex.Message);
                    if (appendOutcome == "error")
                    {
                        span?.AddException(ex);
                    }
                }
            }

            throw;
        }
        finally
        {
            // Each append with its own outcome: a retried one the backend found already written is a duplicate, and so
            // is one of a commit the inbox refused as a repeat, which wrote nothing of it.
            var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
            for (var i = 0; i < appends.Count; i++)
            {
                var outcome = appendOutcome == "ok" && (i >= appended.Count || appended[i].WasDuplicate) ? "duplicate" : appendOutcome;
                var tag = new KeyValuePair<string, object?>("outcome", outcome);
                CairnDiagnostics.Appends.Add(1, tag);
                CairnDiagnostics.AppendDuration.Record(elapsed, tag);
            }
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
    {
        var deliveries = await Inner.ReceiveAsync(queue, options, cancellationToken).ConfigureAwait(false);
        if (deliveries.Count > 0)
        {
            var tag = new KeyValuePair<string, object?>("queue", queue.Value);
            CairnDiagnostics.MessagesReceived.Add(deliveries.Count, tag);
            var expired = deliveries.Count(d => d.PreviousLeaseExpired);
            if (expired > 0)
            {
                CairnDiagnostics.LeaseExpiries.Add(expired, tag);
            }
        }

        return deliveries;
    }

    /// <inheritdoc />
    public async Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken)
    {
        await Inner.AcknowledgeAsync(leases, cancellationToken).ConfigureAwait(false);
        CairnDiagnostics.MessagesAcknowledged.Add(leases.Count);
    }

    /// <inheritdoc />
    public async Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken)
    {
        await Inner.ReleaseAsync(lease, delay, failure, cancellationToken).ConfigureAwait(false);
        CairnDiagnostics.MessagesRetried.Add(1, new KeyValuePair<string, object?>("queue", lease.Queue.Value));
    }

    /// <inheritdoc />
    public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) => Inner.ReturnAsync(lease, cancellationToken);

    /// <inheritdoc />
    public Task StopReceivingAsync(QueueName queue, CancellationToken cancellationToken) => Inner.StopReceivingAsync(queue, cancellationToken);

    /// <inheritdoc />
    public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken) => Inner.ExtendLeaseAsync(lease, duration, cancellationToken);

    /// <inheritdoc />
    public Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken) => Inner.DeadLetterAsync(lease, reason, failure, cancellationToken);

    /// <inheritdoc />
    public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken) => Inner.PruneInboxAsync(consumer, before, cancellationToken);

    /// <inheritdoc />
    public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken) => Inner.WasProcessedAsync(consumer, messageId, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken) =>
        Inner.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken);

    /// <inheritdoc />
    public Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken) => Inner.GetDeadLetterAsync(queue, messageId, cancellationToken);

    /// <inheritdoc />
    public Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken) => Inner.RedriveAsync(queue, request, cancellationToken);

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken) =>
        Inner.PurgeDeadLettersAsync(queue, messageIds, cancellationToken);

    /// <summary>Stops reporting queue depths, and disposes the wrapped broker, so the container that owns this decorator closes it.</summary>
    public void Dispose()
    {
        CairnDiagnostics.UntrackQueues(this);
        Disposal.Dispose(Inner);
    }

    /// <summary>As <see cref="Dispose"/>, for a container disposed asynchronously.</summary>
    public ValueTask DisposeAsync()
    {
        CairnDiagnostics.UntrackQueues(this);
        return Disposal.DisposeAsync(Inner);
    }

    private static string SpanName(MessageTransaction transaction) =>
        transaction.Publishes.Count > 0 ? $"publish {transaction.Publishes[0].Topic}" : $"send {transaction.Sends[0].Queue}";

    private List<QueueStats> ReadStats() =>
        CairnDiagnostics.ReadForGauge(_queues.Keys.ToList(), (queue, cancellationToken) => Inner.GetStatsAsync(queue, cancellationToken));
}
