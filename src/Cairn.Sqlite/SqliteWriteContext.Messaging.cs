using System.Buffers;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>The writer's side of queues, topics and the inbox: everything that changes them runs here.</summary>
internal sealed partial class SqliteWriteContext
{
    private const int MaxCachedQueues = 10_000;

    private readonly Dictionary<string, QueueRow> _queues = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TopicRow> _topics = new(StringComparer.Ordinal);
    private readonly Dictionary<object, RawStatement> _statements = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<string> _touchedQueues = new(StringComparer.Ordinal);
    private readonly ArrayBufferWriter<byte> _messageEnvelope = new(256);

    /// <summary>The queues this transaction put messages into; taken (and cleared) after the commit, to wake receivers.</summary>
    public IReadOnlyCollection<string> TakeTouchedQueues()
    {
        if (_touchedQueues.Count == 0)
        {
            return [];
        }

        string[] touched = [.. _touchedQueues];
        _touchedQueues.Clear();
        return touched;
    }

    private void DropMessagingCaches()
    {
        _queues.Clear();
        _topics.Clear();

        // An undone operation takes back only its own notices; the others in the group still commit.
        if (_deadLettered.Count > _deadLetteredBeforeOperation)
        {
            _deadLettered.RemoveRange(_deadLetteredBeforeOperation, _deadLettered.Count - _deadLetteredBeforeOperation);
        }
    }

    private int _deadLetteredBeforeOperation;

    /// <summary>Notes where the operation about to run starts adding dead-letter notices.</summary>
    private void MarkOperationNotices() => _deadLetteredBeforeOperation = _deadLettered.Count;

    /// <summary>After a rollback of the whole transaction, nothing it noted happened.</summary>
    private void ForgetPendingNotices()
    {
        _deadLettered.Clear();
        _touchedQueues.Clear();
        _deadLetteredBeforeOperation = 0;
    }

    /// <summary>A prepared statement, made once per SQL text (a literal, so compared by reference).</summary>
    private RawStatement Sql(string sql)
    {
        if (!_statements.TryGetValue(sql, out var statement))
        {
            statement = new RawStatement(_connection, sql);
            _statements[sql] = statement;
        }

        return statement;
    }

    private long Changes() => raw.sqlite3_changes(_connection.Handle);

    // ---- queues, topics and subscriptions ----

    public bool DeclareQueue(QueueDefinition definition)
    {
        var existing = FindQueue(definition.Name.Value);
        var settings = JsonSerializer.Serialize(QueueSettingsData.From(definition), CairnJsonContext.Default.QueueSettingsData);
        Wrote();
        if (existing is null)
        {
            var insert = Sql("INSERT INTO cairn_queues (name, settings) VALUES (?1, ?2) RETURNING id");
            insert.Bind(1, definition.Name.Value);
            insert.Bind(2, settings);
            var id = insert.ExecuteInt64()!.Value;
            CacheQueue(new QueueRow(id, definition));
            return true;
        }

        if (existing.Definition.Fifo != definition.Fifo)
        {
            throw new QueueDefinitionConflictException(definition.Name, $"it exists as a {(existing.Definition.Fifo ? "FIFO" : "standard")} queue, and that cannot change");
        }

        var update = Sql("UPDATE cairn_queues SET settings = ?2 WHERE id = ?1");
        update.Bind(1, existing.Id);
        update.Bind(2, settings);
        update.Execute();
        var change = QueueKeeping.Change(existing.Definition, definition);
        if (change.Retention != 0)
        {
            var keep = Sql("UPDATE cairn_messages SET expires_ticks = expires_ticks + ?2 WHERE queue_id = ?1");
            keep.Bind(1, existing.Id);
            keep.Bind(2, change.Retention);
            keep.Execute();
        }

        if (change.ForgetDeduplication)
        {
            var forget = Sql("DELETE FROM cairn_deduplication WHERE queue_id = ?1");
            forget.Bind(1, existing.Id);
            forget.Execute();
        }
        else if (change.DeduplicationWindow != 0)
        {
            var remember = Sql("UPDATE cairn_deduplication SET expires_ticks = expires_ticks + ?2 WHERE queue_id = ?1");
            remember.Bind(1, existing.Id);
            remember.Bind(2, change.DeduplicationWindow);
            remember.Execute();
        }

        CacheQueue(new QueueRow(existing.Id, definition));

        // Subscriptions hold queue rows: reload them with the new settings.
        _topics.Clear();
        _touchedQueues.Add(definition.Name.Value);
        return false;
    }

    public void DeclareTopic(TopicName topic)
    {
        if (FindTopic(topic.Value) is not null)
        {
            return;
        }

        Wrote();
        var insert = Sql("INSERT INTO cairn_topics (name) VALUES (?1)");
        insert.Bind(1, topic.Value);
        insert.Execute();
    }

    public void Subscribe(TopicSubscription subscription)
    {
        var topic = RequireTopic(subscription.Topic);
        var queue = RequireQueue(subscription.Queue);
        Wrote();
        var upsert = Sql("INSERT INTO cairn_topic_subscriptions (topic_id, name, queue_id, rule) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (topic_id, name) DO UPDATE SET queue_id = excluded.queue_id, rule = excluded.rule");
        upsert.Bind(1, topic.Id);
        upsert.Bind(2, subscription.Name);
        upsert.Bind(3, queue.Id);
        upsert.Bind(4, subscription.Rule?.ToString());
        upsert.Execute();
        _topics.Remove(subscription.Topic.Value);
    }

    public bool Unsubscribe(TopicName topicName, string name)
    {
        var topic = RequireTopic(topicName);
        Wrote();
        var delete = Sql("DELETE FROM cairn_topic_subscriptions WHERE topic_id = ?1 AND name = ?2");
        delete.Bind(1, topic.Id);
        delete.Bind(2, name);
        delete.Execute();
        _topics.Remove(topicName.Value);
        return Changes() > 0;
    }

    private QueueRow RequireQueue(QueueName queue) => FindQueue(queue.Value) ?? throw new QueueNotFoundException(queue);

    private QueueRow? FindQueue(string? name)
    {
        // A default QueueName (a default lease token, a redrive without a target) names no queue there could be.
        if (name is null)
        {
            return null;
        }

        if (_queues.TryGetValue(name, out var cached))
        {
            return cached;
        }

        var select = Sql("SELECT id, settings FROM cairn_queues WHERE name = ?1");
        select.Bind(1, name);
        try
        {
            if (!select.Step())
            {
                return null;
            }

            var settings = JsonSerializer.Deserialize(select.Blob(1), CairnJsonContext.Default.QueueSettingsData)!;
            return CacheQueue(new QueueRow(select.Int64(0), settings.ToDefinition(new QueueName(name))));
        }
        finally
        {
            select.Reset();
        }
    }

    private QueueRow CacheQueue(QueueRow row)
    {
        if (_queues.Count >= MaxCachedQueues)
        {
            _queues.Clear();
        }

        _queues[row.Definition.Name.Value] = row;
        return row;
    }

    private TopicRow RequireTopic(TopicName topic) => FindTopic(topic.Value) ?? throw new TopicNotFoundException(topic);

    private TopicRow? FindTopic(string? name)
    {
        // A default TopicName names no topic there could be.
        if (name is null)
        {
            return null;
        }

        if (_topics.TryGetValue(name, out var cached))
        {
            return cached;
        }

        var select = Sql("SELECT id FROM cairn_topics WHERE name = ?1");
        select.Bind(1, name);
        if (select.ExecuteInt64() is not { } id)
        {
            return null;
        }

        var rows = new List<(string Name, string Queue, string? Rule)>();
        var subscriptions = Sql("SELECT s.name, q.name, s.rule FROM cairn_topic_subscriptions s JOIN cairn_queues q ON q.id = s.queue_id WHERE s.topic_id = ?1 ORDER BY s.name");
        subscriptions.Bind(1, id);
        try
        {
            while (subscriptions.Step())
            {
                rows.Add((subscriptions.Text(0), subscriptions.Text(1), subscriptions.TextOrNull(2)));
            }
        }
        finally
        {
            subscriptions.Reset();
        }

        var topic = new TopicRow(id, [.. rows.Select(r => (RequireQueue(new QueueName(r.Queue)), r.Rule is null ? null : FilterRule.Parse(r.Rule)))]);
        if (_topics.Count >= MaxCachedQueues)
        {
            _topics.Clear();
        }

        _topics[name] = topic;
        return topic;
    }

    // ---- the transaction ----

    public CommitResult Commit(PreparedTransaction transaction)
    {
        if (transaction.Inbox is { } inbox && InboxHolds(inbox.Consumer, inbox.MessageId))
        {
            // Handled before: the effects were committed then. Settle the delivery and write nothing else.
            foreach (var lease in transaction.Acknowledgements)
            {
                Acknowledge(lease);
            }

            return CommitResult.Duplicate;
        }

        foreach (var (key, expected) in transaction.CheckpointExpectations)
        {
            // Before anything is written; the writer's transaction keeps another process from moving it meanwhile.
            var read = Sql("SELECT position FROM cairn_checkpoints WHERE key = ?1");
            read.Bind(1, key);
            var stored = new GlobalPosition(read.ExecuteInt64() ?? 0);
            if (stored != expected)
            {
                throw new CheckpointConflictException(key, expected, stored);
            }
        }

        foreach (var lease in transaction.Acknowledgements)
        {
            Acknowledge(lease);
        }

        var appends = new AppendResult[transaction.Appends.Count];
        for (var i = 0; i < appends.Length; i++)
        {
            appends[i] = Append(transaction.Appends[i]);
        }

        int enqueued = 0, deduplicated = 0;
        foreach (var (queueName, message) in transaction.Sends)
        {
            if (Enqueue(RequireQueue(queueName), message))
            {
                enqueued++;
            }
            else
            {
                deduplicated++;
            }
        }

        foreach (var (topicName, message) in transaction.Publishes)
        {
            var topic = RequireTopic(topicName);
            JsonDocument? rendered = null;
            try
            {
                foreach (var (queue, rule) in topic.Subscriptions)
                {
                    if (rule is not null)
                    {
                        rendered ??= message.RenderDocument(new DateTimeOffset(NowTicks, TimeSpan.Zero));
                        if (!rule.Matches(rendered.RootElement))
                        {
                            continue;
                        }
                    }

                    if (Enqueue(queue, message))
                    {
                        enqueued++;
                    }
                    else
                    {
                        deduplicated++;
                    }
                }
            }
            finally
            {
                rendered?.Dispose();
            }
        }

        foreach (var (key, position) in transaction.Checkpoints)
        {
            SetCheckpoint(key, position.Value);
        }

        if (transaction.Inbox is { } record)
        {
            Wrote();
            var insert = Sql("INSERT INTO cairn_inbox (consumer, message_id, processed_ticks, queue, message_type, correlation_id, causation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
            insert.Bind(1, record.Consumer);
            insert.Bind(2, SqliteRows.IdBytes(record.MessageId));
            insert.Bind(3, NowTicks);
            insert.Bind(4, transaction.InboxMessage?.Queue.Value);
            insert.Bind(5, transaction.InboxMessage?.Type);
            // A message that started its flow is its own correlation: it needs no key, a trace finds it by its id.
            var correlation = transaction.InboxMessage?.CorrelationId;
            insert.Bind(6, correlation is not null && !record.MessageId.IsWrittenAs(correlation) ? CorrelationKey(correlation) : (long?)null);
            insert.Bind(7, transaction.InboxMessage?.CausationId);
            insert.Execute();
        }

        return new CommitResult { Appends = appends, MessagesEnqueued = enqueued, MessagesDeduplicated = deduplicated };
    }

    public int PruneInbox(string consumer, long beforeTicks)
    {
        Wrote();
        var delete = Sql("DELETE FROM cairn_inbox WHERE consumer = ?1 AND processed_ticks < ?2 RETURNING correlation_id");
        delete.Bind(1, consumer);
        delete.Bind(2, beforeTicks);
        var pruned = 0;
        var keys = new HashSet<long>();
        try
        {
            while (delete.Step())
            {
                pruned++;
                if (!delete.IsNull(0))
                {
                    keys.Add(delete.Int64(0));
                }
            }
        }
        finally
        {
            delete.Reset();
        }

        // A correlation's key goes with the last record that used it: a flow that appended nothing (a chain of messages)
        // would otherwise leave its key behind for good.
        var forget = Sql("""
            DELETE FROM cairn_correlations WHERE id = ?1
                AND NOT EXISTS (SELECT 1 FROM cairn_inbox WHERE correlation_id = ?1)
                AND NOT EXISTS (SELECT 1 FROM cairn_event_flows WHERE correlation_id = ?1)
            """);
        foreach (var key in keys)
        {
            forget.Bind(1, key);
            forget.Execute();
        }

        if (keys.Count > 0)
        {
            _correlationKeys.Clear();
        }

        return pruned;
    }

    private bool InboxHolds(string consumer, MessageId id)
    {
        var select = Sql("SELECT 1 FROM cairn_inbox WHERE consumer = ?1 AND message_id = ?2");
        select.Bind(1, consumer);
        select.Bind(2, SqliteRows.IdBytes(id));
        return select.ExecuteInt64() is not null;
    }

    /// <summary>Puts a message in a queue; false when its deduplication id was seen within the window.</summary>
    private bool Enqueue(QueueRow queue, PreparedMessage message)
    {
        var definition = queue.Definition;
        if (message.RefusalBy(definition, NowTicks) is { } refusal)
        {
            throw refusal;
        }

        if (message.DeduplicationId is { } deduplicationId && definition.DeduplicationWindow > TimeSpan.Zero)
        {
            var seen = Sql("SELECT expires_ticks FROM cairn_deduplication WHERE queue_id = ?1 AND deduplication_id = ?2");
            seen.Bind(1, queue.Id);
            seen.Bind(2, deduplicationId);
            if (seen.ExecuteInt64() is { } expires && expires > NowTicks)
            {
                return false;
            }

            Wrote();
            var remember = Sql("INSERT INTO cairn_deduplication (queue_id, deduplication_id, expires_ticks) VALUES (?1, ?2, ?3) ON CONFLICT (queue_id, deduplication_id) DO UPDATE SET expires_ticks = excluded.expires_ticks");
            remember.Bind(1, queue.Id);
            remember.Bind(2, deduplicationId);
            remember.Bind(3, NowTicks + definition.DeduplicationWindow.Ticks);
            remember.Execute();
            // Expired ids go on a process's first remembered id and every 1,024th after: a process restarted before
            // its 1,024th (a service deployed often) otherwise never deleted any.
            if ((_deduplicationWrites++ & 1023) == 0)
            {
                var forget = Sql("DELETE FROM cairn_deduplication WHERE expires_ticks <= ?1");
                forget.Bind(1, NowTicks);
                forget.Execute();
            }
        }

        Wrote();
        MessageCodec.Write(_messageEnvelope, message, NowTicks);
        var insert = Sql("""
            INSERT INTO cairn_messages (queue_id, id, group_key, state, visible_at, enqueued_ticks, expires_ticks, envelope, data, correlation)
            VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9)
            """);
        insert.Bind(1, queue.Id);
        insert.Bind(2, SqliteRows.IdBytes(message.Id));
        insert.Bind(3, message.GroupKey);
        insert.Bind(4, message.VisibleAtTicks(NowTicks, definition.DefaultDelay));
        insert.Bind(5, NowTicks);
        insert.Bind(6, NowTicks + definition.Retention.Ticks);
        insert.Bind(7, _messageEnvelope.WrittenSpan);
        insert.Bind(8, message.Data.Span);
        insert.Bind(9, message.CorrelationId ?? message.Id.ToString());
        insert.Execute();
        _touchedQueues.Add(definition.Name.Value);
        return true;
    }

    private long _deduplicationWrites;

    // ---- receiving and settling ----

    /// <summary>
    /// Leases up to <paramref name="max"/> messages; when none, also says when the next one becomes visible. The rows are
    /// returned as raw bytes: the receiver decodes them on its own thread, so the single writer spends no time on it.
    /// </summary>
    public (List<LeasedRow> Rows, long? NextVisibleTicks) Receive(QueueName queueName, int max, TimeSpan? lease)
    {
        var queue = RequireQueue(queueName);
        var definition = queue.Definition;
        var leaseEnds = NowTicks + (lease ?? definition.Lease).Ticks;
        var now = NowTicks;
        var rows = new List<LeasedRow>(Math.Min(max, 64));
        var dropped = new List<(long Seq, string? Reason)>();
        while (rows.Count < max)
        {
            // Candidates carry everything a delivery needs, so leasing one costs a single UPDATE.
            var select = definition.Fifo
                ? Sql($"""
                    SELECT m.seq, m.state, m.receive_count, {SqliteMessageBroker.Expired}, m.deliveries, m.first_received_ticks, m.enqueued_ticks, m.id, m.failure, m.envelope, m.data, m.redrives
                    FROM cairn_messages m
                    WHERE m.queue_id = ?1 AND m.visible_at <= ?2
                      AND NOT EXISTS (SELECT 1 FROM cairn_messages h WHERE h.queue_id = ?1 AND h.group_key = m.group_key AND h.seq < m.seq AND h.state <> 3)
                    ORDER BY m.seq LIMIT ?3
                    """)
                : Sql($"""
                    SELECT m.seq, m.state, m.receive_count, {SqliteMessageBroker.Expired}, m.deliveries, m.first_received_ticks, m.enqueued_ticks, m.id, m.failure, m.envelope, m.data, m.redrives
                    FROM cairn_messages m WHERE m.queue_id = ?1 AND m.visible_at <= ?2 ORDER BY m.visible_at LIMIT ?3
                    """);
            select.Bind(1, queue.Id);
            select.Bind(2, now);
            select.Bind(3, (long)(max - rows.Count));
            var found = 0;
            var firstNew = rows.Count;
            dropped.Clear();
            try
            {
                while (select.Step())
                {
                    found++;
                    var seq = select.Int64(0);
                    var state = select.Int64(1);
                    var receiveCount = select.Int64(2);
                    if (select.Int64(3) != 0)
                    {
                        // Past the queue's retention: dropped, not delivered.
                        dropped.Add((seq, null));
                    }
                    else if (receiveCount >= definition.MaxReceiveCount)
                    {
                        dropped.Add((seq, state == 1
                            ? $"its lease ran out on the last of its {definition.MaxReceiveCount} allowed receives"
                            : $"it was received the maximum of {definition.MaxReceiveCount} times"));
                    }
                    else
                    {
                        rows.Add(new LeasedRow(
                            seq,
                            receiveCount + 1,
                            select.Int64(4) + 1,
                            select.IsNull(5) ? now : select.Int64(5),
                            select.Int64(6),
                            leaseEnds,
                            state == 1,
                            select.Blob(7).ToArray(),
                            select.IsNull(8) ? null : select.Blob(8).ToArray(),
                            select.Blob(9).ToArray(),
                            select.Blob(10).ToArray(),
                            (int)select.Int64(11)));
                    }
                }
            }
            finally
            {
                select.Reset();
            }

            // Leased before the next look, which must not see them again.
            LeaseRows(rows, firstNew, leaseEnds, now);
            foreach (var (seq, reason) in dropped)
            {
                if (reason is null)
                {
                    Wrote();
                    var delete = Sql("DELETE FROM cairn_messages WHERE seq = ?1");
                    delete.Bind(1, seq);
                    delete.Execute();
                }
                else
                {
                    MoveToDeadLetters(queue, seq, reason, null);
                }
            }

            // Rows dropped or dead-lettered make room, and in a FIFO queue may free the next head: look again.
            if (found == 0 || dropped.Count == 0)
            {
                break;
            }
        }

        if (rows.Count > 0)
        {
            return (rows, null);
        }

        var next = Sql("SELECT min(visible_at) FROM cairn_messages WHERE queue_id = ?1 AND visible_at > ?2");
        next.Bind(1, queue.Id);
        next.Bind(2, now);
        return (rows, next.ExecuteInt64());
    }

    private void LeaseRows(List<LeasedRow> rows, int from, long leaseEnds, long now)
    {
        if (from >= rows.Count)
        {
            return;
        }

        Wrote();
        var update = Sql("""
            UPDATE cairn_messages SET state = 1, visible_at = ?2, receive_count = receive_count + 1, deliveries = deliveries + 1,
                first_received_ticks = coalesce(first_received_ticks, ?3), last_received_ticks = ?3
            WHERE seq = ?1
            """);
        for (var i = from; i < rows.Count; i++)
        {
            update.Bind(1, rows[i].Seq);
            update.Bind(2, leaseEnds);
            update.Bind(3, now);
            update.Execute();
        }
    }

    /// <summary>Checks that a lease is still held; returns the message's queue and receive count.</summary>
    private (QueueRow Queue, long ReceiveCount) HeldLease(LeaseToken lease)
    {
        var queue = RequireQueue(lease.Queue);
        var select = Sql("SELECT queue_id, state, deliveries, receive_count FROM cairn_messages WHERE seq = ?1");
        select.Bind(1, lease.Sequence);
        try
        {
            if (!select.Step() || select.Int64(0) != queue.Id)
            {
                throw new LeaseLostException(lease, "the message is no longer in the queue (acknowledged, dead-lettered, dropped or purged)");
            }

            if (select.Int64(2) != lease.Delivery)
            {
                throw new LeaseLostException(lease, "the lease ran out and the message was delivered again");
            }

            return select.Int64(1) switch
            {
                1 => (queue, select.Int64(3)),
                0 => throw new LeaseLostException(lease, "the message was released"),
                _ => throw new LeaseLostException(lease, "the message was dead-lettered"),
            };
        }
        finally
        {
            select.Reset();
        }
    }

    public void Acknowledge(LeaseToken lease)
    {
        var queue = RequireQueue(lease.Queue);
        Wrote();

        // One statement that deletes only what the lease still holds; the reason is looked up only when it fails.
        var delete = Sql("DELETE FROM cairn_messages WHERE seq = ?1 AND queue_id = ?2 AND deliveries = ?3 AND state = 1");
        delete.Bind(1, lease.Sequence);
        delete.Bind(2, queue.Id);
        delete.Bind(3, lease.Delivery);
        delete.Execute();
        if (Changes() == 0)
        {
            HeldLease(lease);
            throw new LeaseLostException(lease, "the message is no longer held under this lease");
        }

        if (queue.Definition.Fifo)
        {
            // The next message of the group is now its head: wake the receivers waiting for it.
            _touchedQueues.Add(queue.Definition.Name.Value);
        }
    }

    /// <summary>Releases a delivery; returns true when it was dead-lettered because it reached the maximum receives.</summary>
    public bool Release(LeaseToken lease, TimeSpan delay, FailureInfo? failure)
    {
        var (queue, receiveCount) = HeldLease(lease);
        if (receiveCount >= queue.Definition.MaxReceiveCount)
        {
            MoveToDeadLetters(queue, lease.Sequence, $"it failed on each of its {queue.Definition.MaxReceiveCount} allowed receives", failure);
            return true;
        }

        Wrote();
        var update = Sql("UPDATE cairn_messages SET state = 0, visible_at = ?2, failure = coalesce(?3, failure) WHERE seq = ?1");
        update.Bind(1, lease.Sequence);
        update.Bind(2, NowTicks + delay.Ticks);
        update.Bind(3, failure is null ? null : JsonSerializer.Serialize(failure, CairnJsonContext.Default.FailureInfo));
        update.Execute();
        _touchedQueues.Add(queue.Definition.Name.Value);
        return false;
    }

    /// <summary>Gives a delivery back untried: visible now, its receive not counted.</summary>
    public void Return(LeaseToken lease)
    {
        var (queue, _) = HeldLease(lease);
        Wrote();
        var update = Sql("UPDATE cairn_messages SET state = 0, visible_at = ?2, receive_count = max(receive_count - 1, 0) WHERE seq = ?1");
        update.Bind(1, lease.Sequence);
        update.Bind(2, NowTicks);
        update.Execute();
        _touchedQueues.Add(queue.Definition.Name.Value);
    }

    public DateTimeOffset ExtendLease(LeaseToken lease, TimeSpan duration)
    {
        HeldLease(lease);
        Wrote();
        var until = NowTicks + duration.Ticks;
        var update = Sql("UPDATE cairn_messages SET visible_at = ?2 WHERE seq = ?1");
        update.Bind(1, lease.Sequence);
        update.Bind(2, until);
        update.Execute();
        return new DateTimeOffset(until, TimeSpan.Zero);
    }

    public void DeadLetter(LeaseToken lease, string reason, FailureInfo? failure)
    {
        var (queue, _) = HeldLease(lease);
        MoveToDeadLetters(queue, lease.Sequence, reason, failure);
    }

    private void MoveToDeadLetters(QueueRow queue, long seq, string reason, FailureInfo? failure)
    {
        Wrote();
        var update = Sql("UPDATE cairn_messages SET state = ?2, visible_at = NULL, dead_reason = ?3, dead_ticks = ?4, failure = coalesce(?5, failure) WHERE seq = ?1");
        update.Bind(1, seq);
        update.Bind(2, queue.Definition.Fifo ? 2L : 3L);
        update.Bind(3, reason);
        update.Bind(4, NowTicks);
        update.Bind(5, failure is null ? null : JsonSerializer.Serialize(failure, CairnJsonContext.Default.FailureInfo));
        update.Execute();
        _deadLettered.Add(queue.Definition.Name.Value);
    }

    private readonly List<string> _deadLettered = [];

    /// <summary>The queues of the messages this transaction dead-lettered, one entry each; taken after the commit, for the metrics.</summary>
    public IReadOnlyList<string> TakeDeadLettered()
    {
        if (_deadLettered.Count == 0)
        {
            return [];
        }

        string[] taken = [.. _deadLettered];
        _deadLettered.Clear();
        return taken;
    }

    // ---- dead letters ----

    /// <summary>
    /// Redrives the next dead letters of a queue after <paramref name="afterSeq"/> (the chosen ids only, when given), at
    /// most <paramref name="limit"/>; returns how many moved and the last sequence looked at.
    /// </summary>
    public (int Moved, long LastSeq) Redrive(QueueName sourceName, QueueName? targetName, long afterSeq, IReadOnlyList<MessageId>? ids, int limit)
    {
        var source = RequireQueue(sourceName);
        var target = targetName is { } t ? RequireQueue(t) : source;
        var seqs = new List<long>(limit);
        if (ids is null)
        {
            var select = Sql("SELECT seq FROM cairn_messages WHERE queue_id = ?1 AND state >= 2 AND seq > ?2 ORDER BY seq LIMIT ?3");
            select.Bind(1, source.Id);
            select.Bind(2, afterSeq);
            select.Bind(3, (long)limit);
            try
            {
                while (select.Step())
                {
                    seqs.Add(select.Int64(0));
                }
            }
            finally
            {
                select.Reset();
            }
        }
        else
        {
            foreach (var id in ids.Distinct())
            {
                if (FindDeadLetter(source.Id, id) is { } seq)
                {
                    seqs.Add(seq);
                }
            }
        }

        foreach (var seq in seqs)
        {
            Wrote();
            if (target.Id == source.Id)
            {
                // Back to its own place: same sequence, so it heads its FIFO group again.
                var update = Sql("UPDATE cairn_messages SET state = 0, visible_at = ?2, receive_count = 0, redrives = redrives + 1, dead_reason = NULL, dead_ticks = NULL, expires_ticks = ?3 WHERE seq = ?1");
                update.Bind(1, seq);
                update.Bind(2, NowTicks);
                update.Bind(3, NowTicks + source.Definition.Retention.Ticks);
                update.Execute();
            }
            else
            {
                var move = Sql("""
                    INSERT INTO cairn_messages (queue_id, id, group_key, state, visible_at, receive_count, deliveries, enqueued_ticks, expires_ticks,
                        first_received_ticks, last_received_ticks, redrives, failure, envelope, data, correlation)
                    SELECT ?2, id, group_key, 0, ?3, 0, deliveries, enqueued_ticks, ?4,
                        first_received_ticks, last_received_ticks, redrives + 1, failure, envelope, data, correlation
                    FROM cairn_messages WHERE seq = ?1
                    """);
                move.Bind(1, seq);
                move.Bind(2, target.Id);
                move.Bind(3, NowTicks);
                move.Bind(4, NowTicks + target.Definition.Retention.Ticks);
                move.Execute();
                var delete = Sql("DELETE FROM cairn_messages WHERE seq = ?1");
                delete.Bind(1, seq);
                delete.Execute();
            }
        }

        if (seqs.Count > 0)
        {
            _touchedQueues.Add(target.Definition.Name.Value);

            // Moved elsewhere, a parked FIFO head lets its group move on here.
            _touchedQueues.Add(source.Definition.Name.Value);
        }

        return (seqs.Count, seqs.Count == 0 ? afterSeq : seqs[^1]);
    }

    public int PurgeDeadLetters(QueueName queueName, IReadOnlyList<MessageId>? ids)
    {
        var queue = RequireQueue(queueName);
        Wrote();
        var purged = 0;
        if (ids is null)
        {
            var delete = Sql("DELETE FROM cairn_messages WHERE queue_id = ?1 AND state >= 2");
            delete.Bind(1, queue.Id);
            delete.Execute();
            purged = (int)Changes();
        }
        else
        {
            foreach (var id in ids.Distinct())
            {
                if (FindDeadLetter(queue.Id, id) is { } seq)
                {
                    var delete = Sql("DELETE FROM cairn_messages WHERE seq = ?1");
                    delete.Bind(1, seq);
                    delete.Execute();
                    purged++;
                }
            }
        }

        if (purged > 0)
        {
            // A purged FIFO head lets its group move on.
            _touchedQueues.Add(queue.Definition.Name.Value);
        }

        return purged;
    }

    private long? FindDeadLetter(long queueId, MessageId id)
    {
        var select = Sql("SELECT seq FROM cairn_messages WHERE queue_id = ?1 AND state >= 2 AND id = ?2 ORDER BY seq LIMIT 1");
        select.Bind(1, queueId);
        select.Bind(2, SqliteRows.IdBytes(id));
        return select.ExecuteInt64();
    }

    private void DisposeMessagingStatements()
    {
        foreach (var statement in _statements.Values)
        {
            statement.Dispose();
        }

        _statements.Clear();
    }

    /// <summary>A message just leased, as the raw values a receiver turns into a <see cref="Delivery"/>.</summary>
    internal sealed record LeasedRow(
        long Seq,
        long ReceiveCount,
        long Deliveries,
        long FirstReceivedTicks,
        long EnqueuedTicks,
        long LeaseEndsTicks,
        bool PreviousLeaseExpired,
        byte[] Id,
        byte[]? Failure,
        byte[] Envelope,
        byte[] Data,
        int Redrives)
    {
        public Delivery ToDelivery(QueueName queue)
        {
            var id = new MessageId(new Guid(Id, bigEndian: true));
            return new Delivery(MessageCodec.Read(id, Envelope, Data), new LeaseToken(queue, Seq, Deliveries))
            {
                ReceiveCount = (int)ReceiveCount,
                FirstReceivedAt = new DateTimeOffset(FirstReceivedTicks, TimeSpan.Zero),
                EnqueuedAt = new DateTimeOffset(EnqueuedTicks, TimeSpan.Zero),
                LeaseExpiresAt = new DateTimeOffset(LeaseEndsTicks, TimeSpan.Zero),
                PreviousLeaseExpired = PreviousLeaseExpired,
                LastFailure = Failure is null ? null : JsonSerializer.Deserialize(Failure, CairnJsonContext.Default.FailureInfo),
                Redrives = Redrives,
            };
        }
    }

    /// <summary>A queue as the writer caches it.</summary>
    private sealed record QueueRow(long Id, QueueDefinition Definition);

    /// <summary>A topic and its subscriptions' queues and rules.</summary>
    private sealed record TopicRow(long Id, IReadOnlyList<(QueueRow Queue, FilterRule? Rule)> Subscriptions);
}
