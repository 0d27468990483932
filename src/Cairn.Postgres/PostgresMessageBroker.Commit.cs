using System.Text;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresMessageBroker
{
    private long _deduplicationWrites;

    /// <inheritdoc />
    public async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
    {
        var prepared = PreparedTransaction.Prepare(transaction, _store.Options);
        foreach (var append in prepared.Appends)
        {
            _store.ThrowIfTooLarge(append);
        }

        if (transaction.IsEmpty)
        {
            return new CommitResult();
        }

        return await WriteAsync(work => CommitCoreAsync(work, prepared, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Fails with <see cref="CheckpointConflictException"/> when an expected checkpoint has already moved, before the
    /// transaction's other checks, as the other backends do: a router in another process that moved it is the likely
    /// reason for anything else that would fail, and a router that sees the conflict just goes on from the checkpoint.
    /// Read without a lock: the rows are locked, and read again, only after the appends (which take the append lock
    /// first, as a checkpoint written without an expectation does), so no two commits lock the two in opposite orders.
    /// </summary>
    private async Task CheckCheckpointsMovedAsync(MessagingWork work, PreparedTransaction transaction, CancellationToken cancellationToken)
    {
        var keys = transaction.CheckpointExpectations.Select(e => e.Key).ToArray();
        var stored = new Dictionary<string, long>(StringComparer.Ordinal);
        await using (var read = work.Context.Command($"SELECT key, position FROM {T("checkpoints")} WHERE key = ANY($1)"))
        {
            read.Parameters.Add(Pg.Texts(keys));
            await using var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                stored[reader.GetString(0)] = reader.GetInt64(1);
            }
        }

        foreach (var (key, expected) in transaction.CheckpointExpectations)
        {
            var position = new GlobalPosition(stored.GetValueOrDefault(key));
            if (position != expected)
            {
                throw new CheckpointConflictException(key, expected, position);
            }
        }
    }

    /// <summary>
    /// Writes a whole transaction: the inbox record first (a handling that committed before, in any process, makes this
    /// one a duplicate that only settles its delivery; one still in flight makes this wait for its outcome), then a look
    /// at the expected checkpoints, the acknowledgements, the appends, the sends and publishes, and the checkpoints.
    /// </summary>
    private async Task<CommitResult> CommitCoreAsync(MessagingWork work, PreparedTransaction transaction, CancellationToken cancellationToken)
    {
        if (transaction.Inbox is { } inbox)
        {
            await using var insert = work.Command($"""
                INSERT INTO {T("inbox")} (consumer, message_id, processed_ticks, queue, message_type, correlation_id, causation_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (consumer, message_id) DO NOTHING
                """);
            insert.Parameters.Add(Pg.Text(inbox.Consumer));
            insert.Parameters.Add(Pg.Uuid(inbox.MessageId.Value));
            insert.Parameters.Add(Pg.Long(work.Now));
            insert.Parameters.Add(Pg.Text(transaction.InboxMessage?.Queue.Value));
            insert.Parameters.Add(Pg.Text(transaction.InboxMessage?.Type));
            insert.Parameters.Add(Pg.Text(transaction.InboxMessage?.CorrelationId));
            insert.Parameters.Add(Pg.Text(transaction.InboxMessage?.CausationId));
            if (await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
            {
                // Handled before: the effects were committed then. Settle the delivery and write nothing else.
                if (transaction.Acknowledgements.Count > 0)
                {
                    await AcknowledgeAsync(work, transaction.Acknowledgements, cancellationToken).ConfigureAwait(false);
                }

                return CommitResult.Duplicate;
            }
        }

        if (transaction.CheckpointExpectations.Count > 0)
        {
            await CheckCheckpointsMovedAsync(work, transaction, cancellationToken).ConfigureAwait(false);
        }

        if (transaction.Acknowledgements.Count > 0)
        {
            await AcknowledgeAsync(work, transaction.Acknowledgements, cancellationToken).ConfigureAwait(false);
        }

        var appends = new AppendResult[transaction.Appends.Count];
        for (var i = 0; i < appends.Length; i++)
        {
            appends[i] = await work.Context.AppendAsync(transaction.Appends[i], cancellationToken).ConfigureAwait(false);
        }

        // Where each copy goes, with every queue and topic checked before anything is put in a queue.
        var copies = new List<(QueueRow Queue, PreparedMessage Message)>(transaction.Sends.Count + transaction.Publishes.Count);
        foreach (var (queueName, message) in transaction.Sends)
        {
            copies.Add((await work.RequireQueueAsync(queueName, cancellationToken).ConfigureAwait(false), message));
        }

        foreach (var (topicName, message) in transaction.Publishes)
        {
            var subscriptions = await SubscriptionsAsync(work, topicName, cancellationToken).ConfigureAwait(false);
            JsonDocument? rendered = null;
            try
            {
                foreach (var (queue, rule) in subscriptions)
                {
                    if (rule is not null)
                    {
                        rendered ??= message.RenderDocument(new DateTimeOffset(work.Now, TimeSpan.Zero));
                        if (!rule.Matches(rendered.RootElement))
                        {
                            continue;
                        }
                    }

                    copies.Add((queue, message));
                }
            }
            finally
            {
                rendered?.Dispose();
            }
        }

        var (enqueued, deduplicated) = copies.Count > 0 ? await EnqueueAsync(work, copies, cancellationToken).ConfigureAwait(false) : (0, 0);

        foreach (var (key, expected) in transaction.CheckpointExpectations)
        {
            // The row is made if missing and locked, so of two commits expecting the same position one waits for the
            // other and then finds it moved.
            await using (var make = work.Context.Command($"INSERT INTO {T("checkpoints")} (key, position) VALUES ($1, 0) ON CONFLICT (key) DO NOTHING"))
            {
                make.Parameters.Add(Pg.Text(key));
                await make.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            await using var read = work.Context.Command($"SELECT position FROM {T("checkpoints")} WHERE key = $1 FOR UPDATE");
            read.Parameters.Add(Pg.Text(key));
            var stored = new GlobalPosition((long)(await read.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!);
            if (stored != expected)
            {
                throw new CheckpointConflictException(key, expected, stored);
            }
        }

        if (transaction.Checkpoints.Count > 0)
        {
            await using var batch = work.Context.Batch();
            foreach (var (key, position) in transaction.Checkpoints)
            {
                batch.BatchCommands.Add(new NpgsqlBatchCommand(
                    $"INSERT INTO {T("checkpoints")} (key, position) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET position = excluded.position, updated_at = now()")
                {
                    Parameters = { Pg.Text(key), Pg.Long(position.Value) },
                });
            }

            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        return new CommitResult { Appends = appends, MessagesEnqueued = enqueued, MessagesDeduplicated = deduplicated };
    }

    /// <summary>A topic's subscriptions, with their queues and rules, as this transaction sees them.</summary>
    private async Task<List<(QueueRow Queue, FilterRule? Rule)>> SubscriptionsAsync(MessagingWork work, TopicName topic, CancellationToken cancellationToken)
    {
        var topicId = await RequireTopicIdAsync(work.Connection, work.Transaction, topic, cancellationToken).ConfigureAwait(false);
        var rows = new List<(string Queue, string? Rule)>();
        await using (var select = work.Command($"SELECT q.name, s.rule FROM {T("subscriptions")} s JOIN {T("queues")} q ON q.id = s.queue_id WHERE s.topic_id = $1 ORDER BY s.name COLLATE \"C\""))
        {
            select.Parameters.Add(Pg.Long(topicId));
            await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                rows.Add((reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1)));
            }
        }

        var subscriptions = new List<(QueueRow, FilterRule?)>(rows.Count);
        foreach (var (queue, rule) in rows)
        {
            subscriptions.Add((await work.RequireQueueAsync(new QueueName(queue), cancellationToken).ConfigureAwait(false), rule is null ? null : FilterRule.Parse(rule)));
        }

        return subscriptions;
    }

    /// <summary>
    /// Puts copies in their queues; returns how many went in and how many were dropped as duplicates within their
    /// queue's deduplication window. Sends to a FIFO group are ordered by a lock per group, taken in one order by every
    /// transaction: the sequence numbers of one group then follow the order of the commits, so a receiver never sees a
    /// group's later message before an earlier one that was still to commit.
    /// </summary>
    private async Task<(int Enqueued, int Deduplicated)> EnqueueAsync(MessagingWork work, List<(QueueRow Queue, PreparedMessage Message)> copies, CancellationToken cancellationToken)
    {
        foreach (var (queue, message) in copies)
        {
            if (message.RefusalBy(queue.Definition, work.Now) is { } refusal)
            {
                throw refusal;
            }
        }

        await LockGroupsAsync(work, copies.Where(c => c.Queue.Definition.Fifo).Select(c => (c.Queue.Id, c.Message.GroupKey!)), cancellationToken).ConfigureAwait(false);

        var deduplicated = 0;
        await using var batch = work.Context.Batch();
        foreach (var (queue, message) in copies)
        {
            var definition = queue.Definition;
            if (message.DeduplicationId is { } deduplicationId && definition.DeduplicationWindow > TimeSpan.Zero)
            {
                // Remembered, or renewed once its window is over; a copy whose id is remembered still is a duplicate.
                await using var remember = work.Command($"""
                    INSERT INTO {T("deduplication")} AS d (queue_id, deduplication_id, expires_ticks) VALUES ($1, $2, $3)
                    ON CONFLICT (queue_id, deduplication_id) DO UPDATE SET expires_ticks = excluded.expires_ticks WHERE d.expires_ticks <= $4
                    """);
                remember.Parameters.Add(Pg.Long(queue.Id));
                remember.Parameters.Add(Pg.Text(deduplicationId));
                remember.Parameters.Add(Pg.Long(work.Now + definition.DeduplicationWindow.Ticks));
                remember.Parameters.Add(Pg.Long(work.Now));
                if (await remember.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
                {
                    deduplicated++;
                    continue;
                }

                // Expired ids go on a process's first remembered id and every 1,024th after: a process restarted
                // before its 1,024th (a service deployed often) otherwise never deleted any.
                if (((Interlocked.Increment(ref _deduplicationWrites) - 1) & 1023) == 0)
                {
                    await using var forget = work.Command($"DELETE FROM {T("deduplication")} WHERE expires_ticks <= $1");
                    forget.Parameters.Add(Pg.Long(work.Now));
                    await forget.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            var insert = new NpgsqlBatchCommand($"""
                INSERT INTO {T("messages")} (queue_id, state, visible_at, enqueued_ticks, expires_ticks, {PostgresMessageRows.InsertColumns})
                VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                """);
            insert.Parameters.Add(Pg.Long(queue.Id));
            insert.Parameters.Add(Pg.Long(message.VisibleAtTicks(work.Now, definition.DefaultDelay)));
            insert.Parameters.Add(Pg.Long(work.Now));
            insert.Parameters.Add(Pg.Long(work.Now + definition.Retention.Ticks));
            foreach (var parameter in PostgresMessageRows.Parameters(message, work.Now))
            {
                insert.Parameters.Add(parameter);
            }

            batch.BatchCommands.Add(insert);
            work.Touch(definition.Name.Value);
        }

        if (batch.BatchCommands.Count > 0)
        {
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        return (batch.BatchCommands.Count, deduplicated);
    }

    /// <summary>
    /// Takes the transaction-scoped lock of each FIFO group about to get a message, in key order (so two transactions
    /// never wait for each other in a cycle); it is held until the transaction ends.
    /// </summary>
    private async Task LockGroupsAsync(MessagingWork work, IEnumerable<(long QueueId, string Group)> groups, CancellationToken cancellationToken)
    {
        var keys = groups.Select(g => GroupKey(g.QueueId, g.Group)).Distinct().Order().ToArray();
        if (keys.Length == 0)
        {
            return;
        }

        // unnest yields the sorted array in its order.
        await using var command = work.Command($"SELECT pg_advisory_xact_lock({PostgresSchema.FifoGroupLockClass}, k) FROM unnest($1::int[]) AS k");
        command.Parameters.Add(new NpgsqlParameter { Value = keys, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Integer });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How many FIFO group locks a schema has at most; groups sharing one only order their sends one after the other.</summary>
    private const uint GroupLockBuckets = 512;

    /// <summary>
    /// A 32-bit key for a FIFO group of a queue of this schema (FNV-1a). Two groups sharing a key only order their sends
    /// one after the other.
    /// </summary>
    private int GroupKey(long queueId, string group)
    {
        // All groups of all queues share GroupLockBuckets locks: a lock per group made a batch to many groups (an import,
        // a group per order) take as many, and a commit to many FIFO queues as many per queue, running out of
        // PostgreSQL's shared lock table ("out of shared memory").
        var bucket = Fnv1a(Encoding.UTF8.GetBytes($"{queueId}\0{group}")) % GroupLockBuckets;
        return unchecked((int)Fnv1a(Encoding.UTF8.GetBytes($"{_store.Schema}\0{bucket}")));
    }

    private static uint Fnv1a(byte[] bytes)
    {
        var hash = 2166136261u;
        foreach (var b in bytes)
        {
            hash = (hash ^ b) * 16777619u;
        }

        return hash;
    }
}
