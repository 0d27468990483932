using System.Text.Json;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>
/// Reads one correlation id's events, inbox records and queued messages from a Cairn SQLite file, in one read
/// transaction, through the indexes of schema versions 4 and 6: events by <c>cairn_event_flows</c> (or by id, for the
/// event that started the flow) and the inbox by the correlation's key in <c>cairn_correlations</c>, the queues by
/// their correlation column.
/// </summary>
public sealed class SqliteCorrelationTraceReader : ICorrelationTraceReader
{
    private readonly SqliteEventStore _store;
    private readonly EventReader _rows = new();

    /// <summary>The event columns a trace reads: envelopes, not payloads.</summary>
    private const string Columns = "e.position, e.envelope, X''";

    /// <summary>Events read at a time while following a run.</summary>
    private const int RunPage = 64;

    /// <summary>Reads from the file of <paramref name="store"/>.</summary>
    public SqliteCorrelationTraceReader(SqliteEventStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
    }

    /// <inheritdoc />
    public Task<CorrelationRecords> ReadAsync(string correlationId, int limit, CancellationToken cancellationToken)
    {
        // Synchronous work, refused through the task as every async call of Cairn is.
        try
        {
            return Task.FromResult(Read(correlationId, limit, cancellationToken));
        }
        catch (OperationCanceledException ex) when (ex.CancellationToken == cancellationToken && cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<CorrelationRecords>(cancellationToken);
        }
        catch (Exception ex)
        {
            return Task.FromException<CorrelationRecords>(ex);
        }
    }

    private CorrelationRecords Read(string correlationId, int limit, CancellationToken cancellationToken)
    {
        CorrelationTraceLimits.Validate(correlationId, limit);
        cancellationToken.ThrowIfCancellationRequested();
        using var lease = _store.RentReadConnection();
        var db = lease.Db;

        // One snapshot for the three reads, so a handling that commits meanwhile is either wholly in or wholly out.
        Execute(db, "BEGIN");
        try
        {
            var key = CorrelationKey(db, correlationId);
            var events = ReadEvents(db, correlationId, key, limit + 1);
            var handled = ReadInbox(db, correlationId, key, limit + 1);
            var queued = ReadQueued(db, correlationId, limit + 1, _store.Options.TimeProvider.GetUtcNow().UtcTicks);
            return CorrelationRecords.Earliest(events, handled, queued, limit);
        }
        finally
        {
            Execute(db, "COMMIT");
        }
    }

    /// <summary>The correlation's key, or null when nothing was ever indexed under it.</summary>
    private static long? CorrelationKey(sqlite3 db, string correlationId)
    {
        using var select = new RawStatement(db, "SELECT id FROM cairn_correlations WHERE value = ?1");
        select.Bind(1, correlationId);
        return select.ExecuteInt64();
    }

    private List<RecordedEvent> ReadEvents(sqlite3 db, string correlationId, long? key, int max)
    {
        var starts = new List<long>();
        if (key is { } known)
        {
            using var select = new RawStatement(db, "SELECT position FROM cairn_event_flows WHERE correlation_id = ?1 ORDER BY position LIMIT ?2");
            select.Bind(1, known);
            select.Bind(2, (long)max);
            while (select.Step())
            {
                starts.Add(select.Int64(0));
            }
        }

        // Each row marks the first event of a run with this correlation: read on until the correlation changes.
        var events = new List<RecordedEvent>();
        using var run = new RawStatement(db, $"SELECT {Columns} FROM cairn_events e WHERE e.position >= ?1 ORDER BY e.position LIMIT ?2");
        var next = 0L;
        foreach (var start in starts)
        {
            if (start < next)
            {
                // Read already, as part of the run before it.
                continue;
            }

            var from = start;
            var inRun = true;
            while (inRun && events.Count < max)
            {
                run.Bind(1, from);
                run.Bind(2, (long)Math.Min(RunPage, max - events.Count + 1));
                var read = 0;
                try
                {
                    while (run.Step())
                    {
                        read++;
                        var e = _rows.Read(run, db);
                        if (e.CorrelationId != correlationId)
                        {
                            inRun = false;
                            break;
                        }

                        events.Add(e);
                        from = e.Position.Value + 1;
                    }
                }
                finally
                {
                    run.Reset();
                }

                inRun &= read > 0;
            }

            next = from;
            if (events.Count >= max)
            {
                break;
            }
        }

        // The event that started the flow has its own id as correlation, stored as nothing: found by its id.
        if (RootId(correlationId) is { } rootId)
        {
            using var byId = new RawStatement(db, $"SELECT {Columns} FROM cairn_events e WHERE e.id = ?1");
            Span<byte> id = stackalloc byte[16];
            SqliteRows.WriteId(rootId, id);
            byId.Bind(1, id);
            if (byId.Step() && _rows.Read(byId, db) is { } root && root.CorrelationId == correlationId && events.All(e => e.Position != root.Position))
            {
                events.Insert(events.FindIndex(e => e.Position.Value > root.Position.Value) is var at and >= 0 ? at : events.Count, root);
            }
        }

        return events;
    }

    /// <summary>The id a correlation id names when it is a message's own (it started its flow), else null.</summary>
    private static MessageId? RootId(string correlationId) =>
        Guid.TryParseExact(correlationId, "D", out var guid) && guid != Guid.Empty && new MessageId(guid).ToString() == correlationId
            ? new MessageId(guid)
            : null;

    /// <summary>The inbox records under the correlation's key, and those of the message that started the flow, if any.</summary>
    private static List<InboxRecord> ReadInbox(sqlite3 db, string correlationId, long? key, int max)
    {
        var records = new List<InboxRecord>();
        if (key is { } known)
        {
            using var select = new RawStatement(db, """
                SELECT consumer, message_id, processed_ticks, queue, message_type, causation FROM cairn_inbox
                WHERE correlation_id = ?1 ORDER BY processed_ticks LIMIT ?2
                """);
            select.Bind(1, known);
            select.Bind(2, (long)max);
            ReadInboxRows(select, correlationId, records);
        }

        if (RootId(correlationId) is { } root)
        {
            using var select = new RawStatement(db, """
                SELECT consumer, message_id, processed_ticks, queue, message_type, causation FROM cairn_inbox
                WHERE message_id = ?1 AND correlation_id IS NULL AND queue IS NOT NULL
                """);
            Span<byte> id = stackalloc byte[16];
            SqliteRows.WriteId(root, id);
            select.Bind(1, id);
            ReadInboxRows(select, correlationId, records);
            return [.. records.OrderBy(r => r.HandledAt).Take(max)];
        }

        return records;
    }

    private static void ReadInboxRows(RawStatement select, string correlationId, List<InboxRecord> records)
    {
        while (select.Step())
        {
            records.Add(new InboxRecord(
                select.Text(0),
                new MessageId(new Guid(select.Blob(1), bigEndian: true)),
                new DateTimeOffset(select.Int64(2), TimeSpan.Zero),
                new HandledMessage(new QueueName(select.Text(3)), select.Text(4), correlationId, select.TextOrNull(5))));
        }
    }

    /// <summary>
    /// The correlation's queued messages, earliest first by the time a trace orders them by (a dead letter's, else its
    /// enqueueing), so that a trace cut at its limit keeps the earliest: in queue order, one sent first and
    /// dead-lettered later pushed out one enqueued before that.
    /// </summary>
    private static List<QueuedMessageRecord> ReadQueued(sqlite3 db, string correlationId, int max, long nowTicks)
    {
        using var select = new RawStatement(db, """
            SELECT m.seq, m.id, m.state, m.visible_at, m.receive_count, m.enqueued_ticks, m.failure, m.dead_reason, m.dead_ticks, m.envelope, q.name
            FROM cairn_messages m JOIN cairn_queues q ON q.id = m.queue_id
            WHERE m.correlation = ?1 ORDER BY coalesce(m.dead_ticks, m.enqueued_ticks), m.seq LIMIT ?2
            """);
        select.Bind(1, correlationId);
        select.Bind(2, (long)max);
        var records = new List<QueuedMessageRecord>();
        while (select.Step())
        {
            var id = new MessageId(new Guid(select.Blob(1), bigEndian: true));
            Message message;
            try
            {
                message = MessageCodec.Read(id, select.Blob(9), ReadOnlyMemory<byte>.Empty);
            }
            catch (CairnException)
            {
                // As the dead-letter listing does: an unreadable envelope still shows, by its id.
                message = new Message(id, SqliteMessageBroker.UnreadableType, "urn:cairn:unreadable", new DateTimeOffset(select.Int64(5), TimeSpan.Zero), "application/octet-stream", ReadOnlyMemory<byte>.Empty)
                {
                    CorrelationId = correlationId,
                };
            }

            var state = select.Int64(2) switch
            {
                >= 2 => QueuedMessageState.DeadLettered,
                1 when !select.IsNull(3) && select.Int64(3) > nowTicks => QueuedMessageState.InFlight,
                _ => QueuedMessageState.Waiting,
            };
            records.Add(new QueuedMessageRecord(message, new QueueName(select.Text(10)), select.Int64(0), state, new DateTimeOffset(select.Int64(5), TimeSpan.Zero))
            {
                ReceiveCount = (int)select.Int64(4),
                Failure = select.IsNull(6) ? null : JsonSerializer.Deserialize(select.Blob(6), CairnJsonContext.Default.FailureInfo),
                DeadLetterReason = select.TextOrNull(7),
                DeadLetteredAt = select.IsNull(8) ? null : new DateTimeOffset(select.Int64(8), TimeSpan.Zero),
            });
        }

        return records;
    }

    private static void Execute(sqlite3 db, string sql)
    {
        using var statement = new RawStatement(db, sql);
        statement.Execute();
    }
}
