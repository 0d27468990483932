using System.Text.Json;
using Cairn.Envelopes;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// Queues, topics, dead letters and the inbox in the same PostgreSQL schema as the event store, shared by every process
/// that opens it. Every write runs in one transaction of the store's write context, so a transaction's appends, sends,
/// publishes, settlements, inbox record and checkpoints commit together. Competing receivers, in this process or
/// others, lease with <c>SELECT … FOR UPDATE SKIP LOCKED</c>, so no two get the same message; a commit that makes
/// something receivable sends a <c>NOTIFY</c> that each broker's one <c>LISTEN</c> connection turns into a wake-up of
/// its waiting receivers, and a poll at the store's <see cref="PostgresEventStoreOptions.ExternalCommitPollInterval"/>
/// covers a notification lost while that connection was down. Every lease, delay, visibility and retention time comes
/// from the store's <see cref="TimeProvider"/>.
/// </summary>
public sealed partial class PostgresMessageBroker : IMessageBroker, IDisposable, IAsyncDisposable
{
    private readonly PostgresEventStore _store;
    private readonly TimeProvider _time;
    private readonly QueueSignal _signal = new();
    private readonly PostgresListener _listener;
    private readonly string _s;

    /// <summary>Uses the store's database, schema, connections and clock.</summary>
    public PostgresMessageBroker(PostgresEventStore store, ILogger<PostgresMessageBroker>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _time = store.Options.TimeProvider;
        _s = PostgresSchema.Quote(store.Schema);
        Channel = ChannelOf(store.Schema);
        _listener = new PostgresListener(store.PostgresOptions, Channel, PostgresListener.QueueApplicationName, "queue notifications", _signal.Pulse, _signal.PulseAll, logger);
    }

    /// <summary>The channel a commit notifies with the names of the queues it made something receivable in.</summary>
    internal string Channel { get; }

    /// <summary>The connection that listens for other processes' commits.</summary>
    internal PostgresListener Listener => _listener;

    /// <summary>
    /// A channel name per schema, within PostgreSQL's 63 bytes: the schema's name when it fits, else its key. Two schemas
    /// sharing a channel would only wake each other's receivers for nothing.
    /// </summary>
    private static string ChannelOf(string schema) => schema.Length <= 56 ? schema + ".queues" : $"cairn_{PostgresSchema.SchemaKey(schema):x8}.queues";

    private string T(string table) => _s + "." + table;

    /// <inheritdoc />
    public Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(queue);
            queue.Validate();
            var settings = JsonSerializer.Serialize(QueueSettingsData.From(queue), CairnJsonContext.Default.QueueSettingsData);
            return WriteAsync(async work =>
            {
                await using var insert = work.Command($"INSERT INTO {T("queues")} (name, settings) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id");
                insert.Parameters.Add(Pg.Text(queue.Name.Value));
                insert.Parameters.Add(Pg.Text(settings));
                if (await insert.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long)
                {
                    return true;
                }

                await using var select = work.Command($"SELECT id, settings FROM {T("queues")} WHERE name = $1 FOR UPDATE");
                select.Parameters.Add(Pg.Text(queue.Name.Value));
                long id;
                QueueSettingsData existing;
                await using (var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
                {
                    await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                    id = reader.GetInt64(0);
                    existing = ReadSettings(reader.GetString(1));
                }

                if (existing.Fifo != queue.Fifo)
                {
                    throw new QueueDefinitionConflictException(queue.Name, $"it exists as a {(existing.Fifo ? "FIFO" : "standard")} queue, and that cannot change");
                }

                await using var update = work.Command($"UPDATE {T("queues")} SET settings = $2 WHERE id = $1");
                update.Parameters.Add(Pg.Long(id));
                update.Parameters.Add(Pg.Text(settings));
                await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                var change = QueueKeeping.Change(existing.ToDefinition(queue.Name), queue);
                if (change.Retention != 0)
                {
                    await using var keep = work.Command($"UPDATE {T("messages")} SET expires_ticks = expires_ticks + $2 WHERE queue_id = $1");
                    keep.Parameters.Add(Pg.Long(id));
                    keep.Parameters.Add(Pg.Long(change.Retention));
                    await keep.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                if (change.ForgetDeduplication)
                {
                    await using var forget = work.Command($"DELETE FROM {T("deduplication")} WHERE queue_id = $1");
                    forget.Parameters.Add(Pg.Long(id));
                    await forget.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }
                else if (change.DeduplicationWindow != 0)
                {
                    await using var remember = work.Command($"UPDATE {T("deduplication")} SET expires_ticks = expires_ticks + $2 WHERE queue_id = $1");
                    remember.Parameters.Add(Pg.Long(id));
                    remember.Parameters.Add(Pg.Long(change.DeduplicationWindow));
                    await remember.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                // A shorter delay or lease may make something receivable sooner.
                work.Touch(queue.Name.Value);
                return false;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public async Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return (await FindQueueAsync(connection, null, queue, cancellationToken).ConfigureAwait(false))?.Definition;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var select = new NpgsqlCommand($"SELECT name, settings FROM {T("queues")} ORDER BY name COLLATE \"C\"", connection);
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var queues = new List<QueueDefinition>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            queues.Add(ReadSettings(reader.GetString(1)).ToDefinition(new QueueName(reader.GetString(0))));
        }

        return queues;
    }

    /// <inheritdoc />
    public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            return WriteAsync(async work =>
            {
                await using var insert = work.Command($"INSERT INTO {T("topics")} (name) VALUES ($1) ON CONFLICT (name) DO NOTHING");
                insert.Parameters.Add(Pg.Text(topic.Value));
                await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
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
            MessagingNames.RequirePresent(subscription.Topic.Value, "topic");
            MessagingNames.RequirePresent(subscription.Queue.Value, "queue");
            return WriteAsync(async work =>
            {
                var topicId = await RequireTopicIdAsync(work.Connection, work.Transaction, subscription.Topic, cancellationToken).ConfigureAwait(false);
                var queue = await work.RequireQueueAsync(subscription.Queue, cancellationToken).ConfigureAwait(false);
                await using var upsert = work.Command($"""
                    INSERT INTO {T("subscriptions")} (topic_id, name, queue_id, rule) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (topic_id, name) DO UPDATE SET queue_id = excluded.queue_id, rule = excluded.rule
                    """);
                upsert.Parameters.Add(Pg.Long(topicId));
                upsert.Parameters.Add(Pg.Text(subscription.Name));
                upsert.Parameters.Add(Pg.Long(queue.Id));
                upsert.Parameters.Add(Pg.Text(subscription.Rule?.ToString()));
                await upsert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
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
            return WriteAsync(async work =>
            {
                var topicId = await RequireTopicIdAsync(work.Connection, work.Transaction, topic, cancellationToken).ConfigureAwait(false);
                await using var delete = work.Command($"DELETE FROM {T("subscriptions")} WHERE topic_id = $1 AND name = $2");
                delete.Parameters.Add(Pg.Long(topicId));
                delete.Parameters.Add(Pg.Text(subscription));
                return await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<bool>(ex);
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(topic.Value, "topic");
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var topicId = await RequireTopicIdAsync(connection, null, topic, cancellationToken).ConfigureAwait(false);
        await using var select = new NpgsqlCommand(
            $"SELECT s.name, q.name, s.rule FROM {T("subscriptions")} s JOIN {T("queues")} q ON q.id = s.queue_id WHERE s.topic_id = $1 ORDER BY s.name COLLATE \"C\"",
            connection);
        select.Parameters.Add(Pg.Long(topicId));
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var subscriptions = new List<TopicSubscription>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var rule = reader.IsDBNull(2) ? null : reader.GetString(2);
            subscriptions.Add(new TopicSubscription(topic, reader.GetString(0), new QueueName(reader.GetString(1)), rule is null ? null : FilterRule.Parse(rule)));
        }

        return subscriptions;
    }

    /// <inheritdoc />
    public async Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        var now = _time.GetUtcNow().UtcTicks;
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);

        // One snapshot for the counts and the parked ones.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken).ConfigureAwait(false);
        var row = await FindQueueAsync(connection, transaction, queue, cancellationToken).ConfigureAwait(false) ?? throw new QueueNotFoundException(queue);
        await using var select = new NpgsqlCommand(
            $"""
            SELECT
                count(*) FILTER (WHERE m.state < 2 AND m.visible_at <= $2 AND NOT {PostgresMessageRows.Expired}),
                count(*) FILTER (WHERE m.state = 1 AND m.visible_at > $2),
                count(*) FILTER (WHERE m.state = 0 AND m.visible_at > $2 AND NOT {PostgresMessageRows.Expired}),
                count(*) FILTER (WHERE m.state >= 2),
                min(m.enqueued_ticks) FILTER (WHERE (m.state = 1 OR (m.state = 0 AND m.visible_at <= $2)) AND NOT {PostgresMessageRows.Expired})
            FROM {T("messages")} m WHERE m.queue_id = $1
            """,
            connection,
            transaction);
        select.Parameters.Add(Pg.Long(row.Id));
        select.Parameters.Add(Pg.Long(now));
        long visible, leased, delayed, dead;
        long? oldest;
        await using (var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            visible = reader.GetInt64(0);
            leased = reader.GetInt64(1);
            delayed = reader.GetInt64(2);
            dead = reader.GetInt64(3);
            oldest = reader.IsDBNull(4) ? null : reader.GetInt64(4);
        }

        long parked = 0, parkedVisible = 0, parkedLeased = 0;
        if (row.Definition.Fifo && dead > 0)
        {
            await using var count = new NpgsqlCommand(
                $"""
                SELECT count(*), count(*) FILTER (WHERE m.visible_at <= $2), count(*) FILTER (WHERE m.state = 1 AND m.visible_at > $2) FROM {T("messages")} m
                WHERE m.queue_id = $1 AND m.state < 2 AND NOT {PostgresMessageRows.Expired}
                  AND EXISTS (SELECT 1 FROM {T("messages")} d WHERE d.queue_id = $1 AND d.group_key = m.group_key AND d.state = 2 AND d.seq < m.seq)
                """,
                connection,
                transaction);
            count.Parameters.Add(Pg.Long(row.Id));
            count.Parameters.Add(Pg.Long(now));
            await using var reader = await count.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            parked = reader.GetInt64(0);
            parkedVisible = reader.GetInt64(1);
            parkedLeased = reader.GetInt64(2);
        }

        if (parked > 0)
        {
            // The oldest again without the parked: no receive can take them, so they say nothing of whether the
            // consumers keep up (the dead letter before them is counted for itself).
            await using var unparked = new NpgsqlCommand(
                $"""
                SELECT min(m.enqueued_ticks) FROM {T("messages")} m
                WHERE m.queue_id = $1 AND (m.state = 1 OR (m.state = 0 AND m.visible_at <= $2)) AND NOT {PostgresMessageRows.Expired}
                  AND NOT EXISTS (SELECT 1 FROM {T("messages")} d WHERE d.queue_id = $1 AND d.group_key = m.group_key AND d.state = 2 AND d.seq < m.seq)
                """,
                connection,
                transaction);
            unparked.Parameters.Add(Pg.Long(row.Id));
            unparked.Parameters.Add(Pg.Long(now));
            oldest = await unparked.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long ticks ? ticks : null;
        }

        return QueueStats.Counted(queue, visible, leased, delayed, dead, parked, parkedVisible, parkedLeased, oldest, now);
    }

    /// <inheritdoc />
    public async Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken)
    {
        MessagingNames.Validate("consumer", consumer);
        return await WriteAsync(async work =>
        {
            await using var delete = work.Command($"DELETE FROM {T("inbox")} WHERE consumer = $1 AND processed_ticks < $2");
            delete.Parameters.Add(Pg.Text(consumer));
            delete.Parameters.Add(Pg.Long(before.UtcTicks));
            return await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }, cancellationToken, confirmsReplication: false).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken)
    {
        MessagingNames.Validate("consumer", consumer);
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var select = new NpgsqlCommand($"SELECT 1 FROM {T("inbox")} WHERE consumer = $1 AND message_id = $2", connection);
        select.Parameters.Add(Pg.Text(consumer));
        select.Parameters.Add(Pg.Uuid(messageId.Value));
        return await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null;
    }

    /// <summary>Stops listening for other processes' commits.</summary>
    public void Dispose() => _listener.Dispose();

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _listener.DisposeAsync();

    private async Task<QueueRow?> FindQueueAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, QueueName queue, CancellationToken cancellationToken)
    {
        await using var select = new NpgsqlCommand($"SELECT id, settings FROM {T("queues")} WHERE name = $1", connection, transaction);
        select.Parameters.Add(Pg.Text(queue.Value));
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false)
            ? new QueueRow(reader.GetInt64(0), ReadSettings(reader.GetString(1)).ToDefinition(queue))
            : null;
    }

    private async Task<long> RequireTopicIdAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, TopicName topic, CancellationToken cancellationToken)
    {
        await using var select = new NpgsqlCommand($"SELECT id FROM {T("topics")} WHERE name = $1", connection, transaction);
        select.Parameters.Add(Pg.Text(topic.Value));
        return await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as long? ?? throw new TopicNotFoundException(topic);
    }

    private static QueueSettingsData ReadSettings(string json) =>
        JsonSerializer.Deserialize(json, CairnJsonContext.Default.QueueSettingsData)!;


    /// <summary>
    /// Runs <paramref name="work"/> in one transaction of the store's write context. On the way out the transaction
    /// notifies the queues it made something receivable in; once it commits, this process's receivers are woken at
    /// once. A deadlock PostgreSQL broke by rolling this work back runs it again (the writer's): nothing of it was written.
    /// Work that writes whenever it succeeds (a settlement deletes its message or locks its row <c>FOR UPDATE</c>, which
    /// takes a transaction id), or whose writing nothing answers nothing a standby must have (a receive's look that finds
    /// nothing; an inbox prune, whose repeat after an unconfirmed one deletes less: after a failover the pruned records
    /// come back, which only makes the inbox more careful), passes <paramref name="confirmsReplication"/> false: its
    /// batch then asks nothing more of the server before committing (see <see cref="PostgresWriter.ExecuteAsync{T}"/>).
    /// </summary>
    private Task<T> WriteAsync<T>(Func<MessagingWork, Task<T>> work, CancellationToken cancellationToken, bool confirmsReplication = true)
    {
        return _store.WriteAsync(async context =>
        {
            var messaging = new MessagingWork(this, context);
            var result = await work(messaging).ConfigureAwait(false);
            await messaging.FinishAsync(cancellationToken).ConfigureAwait(false);
            return result;
        }, cancellationToken, confirmsReplication);
    }

    /// <summary>A queue as a transaction read it.</summary>
    internal sealed record QueueRow(long Id, QueueDefinition Definition);
}
