using System.Text.Json;
using Cairn.Envelopes;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;

namespace Cairn.Sqlite;

/// <summary>
/// Queues, topics, dead letters and the inbox in the same SQLite file as the event store. Everything that writes
/// goes through the store's single writer, so a transaction's appends, sends, publishes, settlements, inbox record
/// and checkpoints share one SQLite transaction (and one group-commit fsync with whatever else is in flight).
/// </summary>
public sealed class SqliteMessageBroker : IMessageBroker
{
    private readonly SqliteEventStore _store;
    private readonly TimeProvider _time;

    /// <summary>Uses the store's file, writer and clock.</summary>
    public SqliteMessageBroker(SqliteEventStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _time = store.Options.TimeProvider;
    }

    private SqliteWriter Writer => _store.Writer;

    /// <inheritdoc />
    public Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(queue);
            queue.Validate();
            return Writer.ExecuteAsync(context => context.DeclareQueue(queue), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            return Task.FromResult(FindQueue(lease, queue)?.Definition);
        }
        catch (Exception ex)
        {
            return Refusal.Of<QueueDefinition?>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            using var select = new RawStatement(lease.Db, "SELECT name, settings FROM cairn_queues ORDER BY name");
            var queues = new List<QueueDefinition>();
            while (select.Step())
            {
                queues.Add(ReadSettings(select.Blob(1)).ToDefinition(new QueueName(select.Text(0))));
            }

            return Task.FromResult<IReadOnlyList<QueueDefinition>>(queues);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<QueueDefinition>>(ex);
        }
    }

    /// <inheritdoc />
    public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            return Writer.ExecuteAsync(context =>
            {
                context.DeclareTopic(topic);
                return true;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(subscription);
            return Writer.ExecuteAsync(context =>
            {
                context.Subscribe(subscription);
                return true;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            MessagingNames.Validate("subscription", subscription);
            return Writer.ExecuteAsync(context => context.Unsubscribe(topic, subscription), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<bool>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            using var find = new RawStatement(lease.Db, "SELECT id FROM cairn_topics WHERE name = ?1");
            find.Bind(1, topic.Value);
            if (find.ExecuteInt64() is not { } id)
            {
                throw new TopicNotFoundException(topic);
            }

            using var select = new RawStatement(lease.Db, "SELECT s.name, q.name, s.rule FROM cairn_topic_subscriptions s JOIN cairn_queues q ON q.id = s.queue_id WHERE s.topic_id = ?1 ORDER BY s.name");
            select.Bind(1, id);
            var subscriptions = new List<TopicSubscription>();
            while (select.Step())
            {
                var rule = select.TextOrNull(2);
                subscriptions.Add(new TopicSubscription(topic, select.Text(0), new QueueName(select.Text(1)), rule is null ? null : FilterRule.Parse(rule)));
            }

            return Task.FromResult<IReadOnlyList<TopicSubscription>>(subscriptions);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<TopicSubscription>>(ex);
        }
    }

    /// <summary>
    /// Whether a waiting or leased row of <c>cairn_messages m</c> is past its queue's retention and not held under a
    /// running lease, where parameter 2 is now: a receive drops such a row rather than delivering it, and the
    /// statistics do not count it.
    /// </summary>
    internal const string Expired = "(m.expires_ticks <= ?2 AND NOT (m.state = 1 AND m.visible_at > ?2))";

    /// <inheritdoc />
    public Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            cancellationToken.ThrowIfCancellationRequested();
            var now = _time.GetUtcNow().UtcTicks;
            using var lease = _store.RentReadConnection();
            var row = FindQueue(lease, queue) ?? throw new QueueNotFoundException(queue);
            using var select = new RawStatement(lease.Db, $"""
                SELECT
                    coalesce(sum(m.state < 2 AND m.visible_at <= ?2 AND NOT {Expired}), 0),
                    coalesce(sum(m.state = 1 AND m.visible_at > ?2), 0),
                    coalesce(sum(m.state = 0 AND m.visible_at > ?2 AND NOT {Expired}), 0),
                    coalesce(sum(m.state >= 2), 0),
                    min(CASE WHEN (m.state = 1 OR (m.state = 0 AND m.visible_at <= ?2)) AND NOT {Expired} THEN m.enqueued_ticks END)
                FROM cairn_messages m WHERE m.queue_id = ?1
                """);
            select.Bind(1, row.Id);
            select.Bind(2, now);
            select.Step();
            var visible = select.Int64(0);
            var leased = select.Int64(1);
            var delayed = select.Int64(2);
            var dead = select.Int64(3);
            long? oldest = select.IsNull(4) ? null : select.Int64(4);
            long parked = 0, parkedVisible = 0, parkedLeased = 0;
            if (row.Definition.Fifo && dead > 0)
            {
                using var count = new RawStatement(lease.Db, $"""
                    SELECT count(*), coalesce(sum(m.visible_at <= ?2), 0), coalesce(sum(m.state = 1 AND m.visible_at > ?2), 0) FROM cairn_messages m
                    WHERE m.queue_id = ?1 AND m.state < 2 AND NOT {Expired}
                      AND EXISTS (SELECT 1 FROM cairn_messages d WHERE d.queue_id = ?1 AND d.group_key = m.group_key AND d.state = 2 AND d.seq < m.seq)
                    """);
                count.Bind(1, row.Id);
                count.Bind(2, now);
                count.Step();
                parked = count.Int64(0);
                parkedVisible = count.Int64(1);
                parkedLeased = count.Int64(2);
                if (parked > 0)
                {
                    // The oldest again without the parked: no receive can take them, so they say nothing of whether the
                    // consumers keep up (the dead letter before them is counted for itself).
                    using var unparked = new RawStatement(lease.Db, $"""
                        SELECT min(m.enqueued_ticks) FROM cairn_messages m
                        WHERE m.queue_id = ?1 AND (m.state = 1 OR (m.state = 0 AND m.visible_at <= ?2)) AND NOT {Expired}
                          AND NOT EXISTS (SELECT 1 FROM cairn_messages d WHERE d.queue_id = ?1 AND d.group_key = m.group_key AND d.state = 2 AND d.seq < m.seq)
                        """);
                    unparked.Bind(1, row.Id);
                    unparked.Bind(2, now);
                    unparked.Step();
                    oldest = unparked.IsNull(0) ? null : unparked.Int64(0);
                }
            }

            return Task.FromResult(QueueStats.Counted(queue, visible, leased, delayed, dead, parked, parkedVisible, parkedLeased, oldest, now));
        }
        catch (Exception ex)
        {
            return Refusal.Of<QueueStats>(ex);
        }
    }

    /// <inheritdoc />
    public async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
    {
        var prepared = PreparedTransaction.Prepare(transaction, _store.Options);
        if (transaction.IsEmpty)
        {
            return new CommitResult();
        }

        return await Writer.ExecuteAsync(context => context.Commit(prepared), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var deadline = _time.GetUtcNow() + options.Wait;
        while (true)
        {
            // Taken before looking, so a send committed between the look and the wait still wakes this receive.
            var woken = _store.QueueSignal.NextAsync(queue.Value);
            var (rows, nextVisible) = await Writer.ExecuteAsync(context => context.Receive(queue, options.MaxMessages, options.Lease), cancellationToken, durable: false).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            if (rows.Count > 0 || now >= deadline)
            {
                var deliveries = new List<Delivery>(rows.Count);
                foreach (var row in rows)
                {
                    if (await DecodeAsync(row, queue).ConfigureAwait(false) is { } delivery)
                    {
                        deliveries.Add(delivery);
                    }
                }

                if (deliveries.Count > 0 || now >= deadline)
                {
                    return deliveries;
                }

                continue;
            }

            var wait = deadline - now;
            if (nextVisible is { } ticks)
            {
                wait = Min(wait, new DateTimeOffset(ticks, TimeSpan.Zero) - now);
            }

            // Commits by other processes wake no signal here: look again at the store's poll interval.
            wait = Min(wait, _store.SqliteOptions.ExternalCommitPollInterval);
            try
            {
                await woken.WaitAsync(Max(wait, TimeSpan.FromMilliseconds(1)), _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Time to look again: a delayed message may be due, or the wait is over.
            }
        }
    }

    /// <summary>
    /// Turns a leased row into a delivery; a row that cannot be read (a corrupt envelope) is dead-lettered with the
    /// reason, so it neither blocks the others nor comes back until its receives run out.
    /// </summary>
    private async Task<Delivery?> DecodeAsync(SqliteWriteContext.LeasedRow row, QueueName queue)
    {
        try
        {
            return row.ToDelivery(queue);
        }
        catch (Exception ex) when (IsUnreadable(ex))
        {
            var lease = new LeaseToken(queue, row.Seq, row.Deliveries);
            await DeadLetterAsync(lease, $"its stored envelope could not be read: {ex.Message}", FailureInfo.From(ex), CancellationToken.None).ConfigureAwait(false);
            return null;
        }
    }

    /// <inheritdoc />
    public Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(leases);
            if (leases.Count == 0)
            {
                return Task.CompletedTask;
            }

            LeaseToken[] copy = [.. leases];
            return Writer.ExecuteAsync(context =>
            {
                foreach (var lease in copy)
                {
                    context.Acknowledge(lease);
                }

                return true;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken)
    {
        try
        {
            if (delay < TimeSpan.Zero || delay > TimeSpan.FromDays(365))
            {
                throw new InvalidMessageException($"A release delay of {delay} is refused; it must be between 0 and 365 days.");
            }

            return Writer.ExecuteAsync(context => context.Release(lease, delay, failure), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) =>
        Writer.ExecuteAsync(context =>
        {
            context.Return(lease);
            return true;
        }, cancellationToken);

    /// <inheritdoc />
    public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
    {
        try
        {
            if (duration < TimeSpan.FromMilliseconds(1) || duration > TimeSpan.FromHours(12))
            {
                throw new InvalidMessageException($"A lease extension of {duration} is refused; it must be between 1 ms and 12 hours.");
            }

            return Writer.ExecuteAsync(context => context.ExtendLease(lease, duration), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken)
    {
        try
        {
            reason = DeadLetterReason.Check(reason);

            return Writer.ExecuteAsync(context =>
            {
                context.DeadLetter(lease, reason, failure);
                return true;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.Validate("consumer", consumer);
            return Writer.ExecuteAsync(context => context.PruneInbox(consumer, before.UtcTicks), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    /// <inheritdoc />
    public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.Validate("consumer", consumer);
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            var select = lease.Prepared("SELECT 1 FROM cairn_inbox WHERE consumer = ?1 AND message_id = ?2");
            Span<byte> id = stackalloc byte[16];
            SqliteRows.WriteId(messageId, id);
            select.Bind(1, consumer);
            select.Bind(2, id);
            return Task.FromResult(select.ExecuteInt64() is not null);
        }
        catch (Exception ex)
        {
            return Refusal.Of<bool>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            DeadLetterListing.CheckLimit(limit);

            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            var row = FindQueue(lease, queue) ?? throw new QueueNotFoundException(queue);
            using var select = new RawStatement(lease.Db, DeadLetterColumns + " WHERE queue_id = ?1 AND state >= 2 AND seq > ?2 ORDER BY seq LIMIT ?3");
            select.Bind(1, row.Id);
            select.Bind(2, afterSequence);
            select.Bind(3, (long)limit);
            var letters = new List<DeadLetter>();
            while (select.Step())
            {
                letters.Add(ReadDeadLetter(select, queue));
            }

            return Task.FromResult<IReadOnlyList<DeadLetter>>(letters);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<DeadLetter>>(ex);
        }
    }

    /// <inheritdoc />
    public Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _store.RentReadConnection();
            var row = FindQueue(lease, queue) ?? throw new QueueNotFoundException(queue);
            using var select = new RawStatement(lease.Db, DeadLetterColumns + " WHERE queue_id = ?1 AND state >= 2 AND id = ?2 ORDER BY seq LIMIT 1");
            select.Bind(1, row.Id);
            select.Bind(2, SqliteRows.IdBytes(messageId));
            return Task.FromResult(select.Step() ? ReadDeadLetter(select, queue) : null);
        }
        catch (Exception ex)
        {
            return Refusal.Of<DeadLetter?>(ex);
        }
    }

    /// <inheritdoc />
    public Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            ArgumentNullException.ThrowIfNull(request);
            return RedriveSteps.RunAsync(
                request,
                _time,
                (after, chosen, size) => Writer.ExecuteAsync(context => context.Redrive(queue, request.Target, after, chosen, size), cancellationToken),
                cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            MessageId[]? ids = messageIds is null ? null : [.. messageIds];
            return Writer.ExecuteAsync(context => context.PurgeDeadLetters(queue, ids), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    private const string DeadLetterColumns = """
        SELECT seq, id, dead_reason, failure, receive_count, first_received_ticks, last_received_ticks, dead_ticks, enqueued_ticks, redrives, state, envelope, data
        FROM cairn_messages
        """;

    /// <summary>The type under which a dead letter with an unreadable envelope is listed.</summary>
    public const string UnreadableType = "cairn.unreadable";

    /// <summary>What reading a damaged stored envelope or failure throws, from the codec or the JSON reader.</summary>
    private static bool IsUnreadable(Exception ex) =>
        ex is EventStore.CairnException or JsonException or ArgumentException or IndexOutOfRangeException or FormatException;

    private static DeadLetter ReadDeadLetter(RawStatement row, QueueName queue)
    {
        var id = new MessageId(new Guid(row.Blob(1), bigEndian: true));
        Message message;
        try
        {
            message = MessageCodec.Read(id, row.Blob(11), row.Blob(12).ToArray());
        }
        catch (Exception ex) when (IsUnreadable(ex))
        {
            // A corrupt envelope must not hide the dead letter that holds it: shown with its id and raw data, so it
            // can be inspected and purged.
            message = new Message(id, UnreadableType, "urn:cairn:unreadable", new DateTimeOffset(row.Int64(7), TimeSpan.Zero), "application/octet-stream", row.Blob(12).ToArray());
        }

        return new DeadLetter(message, queue, row.Int64(0))
        {
            Reason = row.TextOrNull(2) ?? "unknown",
            Failure = row.IsNull(3) ? null : ReadFailure(row.Blob(3)),
            Attempts = (int)row.Int64(4),
            FirstReceivedAt = row.IsNull(5) ? null : new DateTimeOffset(row.Int64(5), TimeSpan.Zero),
            LastReceivedAt = row.IsNull(6) ? null : new DateTimeOffset(row.Int64(6), TimeSpan.Zero),
            DeadLetteredAt = new DateTimeOffset(row.Int64(7), TimeSpan.Zero),
            EnqueuedAt = new DateTimeOffset(row.Int64(8), TimeSpan.Zero),
            Redrives = (int)row.Int64(9),
            ParksGroup = row.Int64(10) == 2,
        };
    }

    /// <summary>A dead letter's stored failure, or null when it cannot be read: the dead letter is listed all the same.</summary>
    private static FailureInfo? ReadFailure(ReadOnlySpan<byte> json)
    {
        try
        {
            return JsonSerializer.Deserialize(json, CairnJsonContext.Default.FailureInfo);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static (long Id, QueueDefinition Definition)? FindQueue(ReadConnectionPool.Lease lease, QueueName queue)
    {
        var select = lease.Prepared("SELECT id, settings FROM cairn_queues WHERE name = ?1");
        try
        {
            select.Bind(1, queue.Value);
            return select.Step() ? (select.Int64(0), ReadSettings(select.Blob(1)).ToDefinition(queue)) : null;
        }
        finally
        {
            select.Reset();
        }
    }

    private static QueueSettingsData ReadSettings(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, CairnJsonContext.Default.QueueSettingsData)!;


    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
