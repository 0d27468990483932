using System.Data;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// Reads one correlation id's events, inbox records and queued messages (dead letters included) from a Cairn PostgreSQL
/// schema, in one read-only REPEATABLE READ transaction: a handling that commits meanwhile, in any process, is wholly in
/// or wholly out. Events are found by their correlation index (or by id, for the event that started the flow).
/// </summary>
public sealed class PostgresCorrelationTraceReader : ICorrelationTraceReader
{
    /// <summary>The event columns a trace reads: envelopes, not payloads (the data is read as empty).</summary>
    private const string EventColumns = "e.position, e.id, e.stream, e.version, e.type, e.source, e.time_ticks, e.content_type, e.data_schema, e.correlation_id, e.causation_id, e.trace_parent, e.tags, e.metadata, ''::bytea";

    private readonly PostgresEventStore _store;
    private readonly string _s;

    /// <summary>Reads from the schema of <paramref name="store"/>.</summary>
    public PostgresCorrelationTraceReader(PostgresEventStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _s = PostgresSchema.Quote(store.Schema);
    }

    /// <inheritdoc />
    public async Task<CorrelationRecords> ReadAsync(string correlationId, int limit, CancellationToken cancellationToken)
    {
        CorrelationTraceLimits.Validate(correlationId, limit);
        var now = _store.Options.TimeProvider.GetUtcNow().UtcTicks;
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken).ConfigureAwait(false);
        await using (var readOnly = new NpgsqlCommand("SET TRANSACTION READ ONLY", connection, transaction))
        {
            await readOnly.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        var events = await ReadEventsAsync(connection, transaction, correlationId, limit + 1, cancellationToken).ConfigureAwait(false);
        var handled = await ReadInboxAsync(connection, transaction, correlationId, limit + 1, cancellationToken).ConfigureAwait(false);
        var queued = await ReadQueuedAsync(connection, transaction, correlationId, limit + 1, now, cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return CorrelationRecords.Earliest(events, handled, queued, limit);
    }

    private async Task<List<RecordedEvent>> ReadEventsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string correlationId, int max, CancellationToken cancellationToken)
    {
        // The event that started the flow has its own id as correlation, stored as nothing: found by its id.
        Guid? root = Guid.TryParseExact(correlationId, "D", out var guid) && guid != Guid.Empty && new MessageId(guid).ToString() == correlationId ? guid : null;
        await using var select = new NpgsqlCommand(
            root is null
                ? $"SELECT {EventColumns} FROM {_s}.events e WHERE e.correlation_id = $1 ORDER BY e.position LIMIT $2"
                : $"""
                    SELECT {EventColumns} FROM {_s}.events e WHERE e.correlation_id = $1
                    UNION ALL
                    SELECT {EventColumns} FROM {_s}.events e WHERE e.id = $3 AND e.correlation_id IS NULL
                    ORDER BY 1 LIMIT $2
                    """,
            connection,
            transaction);
        select.Parameters.Add(Pg.Text(correlationId));
        select.Parameters.Add(Pg.Long(max));
        if (root is { } id)
        {
            select.Parameters.Add(Pg.Uuid(id));
        }

        var events = new List<RecordedEvent>();
        var rows = new EventRowReader();
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            events.Add(rows.Read(reader));
        }

        return events;
    }

    private async Task<List<InboxRecord>> ReadInboxAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string correlationId, int max, CancellationToken cancellationToken)
    {
        await using var select = new NpgsqlCommand(
            $"""
            SELECT consumer, message_id, processed_ticks, queue, message_type, causation_id FROM {_s}.inbox
            WHERE correlation_id = $1 ORDER BY processed_ticks LIMIT $2
            """,
            connection,
            transaction);
        select.Parameters.Add(Pg.Text(correlationId));
        select.Parameters.Add(Pg.Long(max));
        var records = new List<InboxRecord>();
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            records.Add(new InboxRecord(
                reader.GetString(0),
                new MessageId(reader.GetGuid(1)),
                new DateTimeOffset(reader.GetInt64(2), TimeSpan.Zero),
                new HandledMessage(new QueueName(reader.GetString(3)), reader.GetString(4), correlationId, PostgresMessageRows.TextOrNull(reader, 5))));
        }

        return records;
    }

    /// <summary>
    /// The correlation's queued messages, earliest first by the time a trace orders them by (a dead letter's, else its
    /// enqueueing), so that a trace cut at its limit keeps the earliest.
    /// </summary>
    private async Task<List<QueuedMessageRecord>> ReadQueuedAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string correlationId, int max, long nowTicks, CancellationToken cancellationToken)
    {
        await using var select = new NpgsqlCommand(
            $"""
            SELECT m.seq, m.state, m.visible_at, m.receive_count, m.enqueued_ticks, m.failure, m.dead_reason, m.dead_ticks, q.name, {PostgresMessageRows.Columns}
            FROM {_s}.messages m JOIN {_s}.queues q ON q.id = m.queue_id
            WHERE m.correlation_id = $1 ORDER BY coalesce(m.dead_ticks, m.enqueued_ticks), m.seq LIMIT $2
            """,
            connection,
            transaction);
        select.Parameters.Add(Pg.Text(correlationId));
        select.Parameters.Add(Pg.Long(max));
        var records = new List<QueuedMessageRecord>();
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var enqueued = new DateTimeOffset(reader.GetInt64(4), TimeSpan.Zero);
            Message message;
            try
            {
                message = PostgresMessageRows.Read(reader, 9, withData: false);
            }
            catch (Exception ex) when (ex is CairnException or System.Text.Json.JsonException)
            {
                // As the dead-letter listing does: an unreadable envelope still shows, by its id.
                message = PostgresMessageRows.Unreadable(reader, 9, enqueued, withData: false);
            }

            var state = reader.GetInt16(1) switch
            {
                >= 2 => QueuedMessageState.DeadLettered,
                1 when PostgresMessageRows.LongOrNull(reader, 2) is { } visibleAt && visibleAt > nowTicks => QueuedMessageState.InFlight,
                _ => QueuedMessageState.Waiting,
            };
            records.Add(new QueuedMessageRecord(message, new QueueName(reader.GetString(8)), reader.GetInt64(0), state, enqueued)
            {
                ReceiveCount = reader.GetInt32(3),
                Failure = PostgresMessageRows.Failure(reader, 5),
                DeadLetterReason = PostgresMessageRows.TextOrNull(reader, 6),
                DeadLetteredAt = PostgresMessageRows.LongOrNull(reader, 7) is { } dead ? new DateTimeOffset(dead, TimeSpan.Zero) : null,
            });
        }

        return records;
    }
}
