using Cairn.Envelopes;
using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresMessageBroker
{
    private const string DeadLetterColumns = "m.seq, m.dead_reason, m.failure, m.receive_count, m.first_received_ticks, m.last_received_ticks, m.dead_ticks, m.enqueued_ticks, m.redrives, m.state";

    private const int DeadEnvelopeAt = 10;

    /// <inheritdoc />
    public async Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        DeadLetterListing.CheckLimit(limit);

        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var row = await FindQueueAsync(connection, null, queue, cancellationToken).ConfigureAwait(false) ?? throw new QueueNotFoundException(queue);
        await using var select = new NpgsqlCommand(
            $"SELECT {DeadLetterColumns}, {PostgresMessageRows.Columns} FROM {T("messages")} m WHERE m.queue_id = $1 AND m.state >= 2 AND m.seq > $2 ORDER BY m.seq LIMIT $3",
            connection);
        select.Parameters.Add(Pg.Long(row.Id));
        select.Parameters.Add(Pg.Long(afterSequence));
        select.Parameters.Add(Pg.Long(limit));
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var letters = new List<DeadLetter>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            letters.Add(ReadDeadLetter(reader, queue));
        }

        return letters;
    }

    /// <inheritdoc />
    public async Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var row = await FindQueueAsync(connection, null, queue, cancellationToken).ConfigureAwait(false) ?? throw new QueueNotFoundException(queue);
        await using var select = new NpgsqlCommand(
            $"SELECT {DeadLetterColumns}, {PostgresMessageRows.Columns} FROM {T("messages")} m WHERE m.queue_id = $1 AND m.state >= 2 AND m.id = $2 ORDER BY m.seq LIMIT 1",
            connection);
        select.Parameters.Add(Pg.Long(row.Id));
        select.Parameters.Add(Pg.Uuid(messageId.Value));
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? ReadDeadLetter(reader, queue) : null;
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
                (after, chosen, size) => WriteAsync(work => RedriveStepAsync(work, queue, request.Target, after, chosen, size, cancellationToken), cancellationToken),
                cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    /// <summary>
    /// Redrives the next dead letters of a queue after <paramref name="afterSeq"/> (the chosen ids only, when given), at
    /// most <paramref name="limit"/>; returns how many moved and the last sequence looked at. The dead letters are
    /// locked first, so two redrives at once never move one twice.
    /// </summary>
    private async Task<(int Moved, long LastSeq)> RedriveStepAsync(MessagingWork work, QueueName sourceName, QueueName? targetName, long afterSeq, IReadOnlyList<MessageId>? ids, int limit, CancellationToken cancellationToken)
    {
        var source = await work.RequireQueueAsync(sourceName, cancellationToken).ConfigureAwait(false);
        var target = targetName is { } t ? await work.RequireQueueAsync(t, cancellationToken).ConfigureAwait(false) : source;
        var letters = new List<(long Seq, Guid Id, string? Group)>(limit);
        await using (var select = ids is null
            ? work.Command($"SELECT seq, id, group_key FROM {T("messages")} WHERE queue_id = $1 AND state >= 2 AND seq > $2 ORDER BY seq LIMIT $3 FOR UPDATE")
            : work.Command($"SELECT seq, id, group_key FROM {T("messages")} WHERE queue_id = $1 AND state >= 2 AND id = ANY($2) ORDER BY seq FOR UPDATE"))
        {
            select.Parameters.Add(Pg.Long(source.Id));
            if (ids is null)
            {
                select.Parameters.Add(Pg.Long(afterSeq));
                select.Parameters.Add(Pg.Long(limit));
            }
            else
            {
                select.Parameters.Add(Pg.Uuids([.. ids.Select(i => i.Value)]));
            }

            await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            var seen = new HashSet<Guid>();
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                // By id, the first dead letter with it, as on every backend.
                var id = reader.GetGuid(1);
                if (ids is null || seen.Add(id))
                {
                    letters.Add((reader.GetInt64(0), id, reader.IsDBNull(2) ? null : reader.GetString(2)));
                }
            }
        }

        if (letters.Count == 0)
        {
            return (0, afterSeq);
        }

        var seqs = letters.Select(l => l.Seq).ToArray();
        if (target.Id == source.Id)
        {
            // Back to its own place: same sequence, so it heads its FIFO group again.
            await using var update = work.Command($"""
                UPDATE {T("messages")} SET state = 0, visible_at = $2, receive_count = 0, redrives = redrives + 1, dead_reason = NULL, dead_ticks = NULL, expires_ticks = $3
                WHERE seq = ANY($1)
                """);
            update.Parameters.Add(Pg.Longs(seqs));
            update.Parameters.Add(Pg.Long(work.Now));
            update.Parameters.Add(Pg.Long(work.Now + source.Definition.Retention.Ticks));
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        else
        {
            if (target.Definition.Fifo)
            {
                await LockGroupsAsync(work, letters.Where(l => l.Group is not null).Select(l => (target.Id, l.Group!)), cancellationToken).ConfigureAwait(false);
            }

            // Moved in queue order, so they keep it in their new queue.
            await using var move = work.Command($"""
                INSERT INTO {T("messages")} (queue_id, state, visible_at, receive_count, deliveries, enqueued_ticks, expires_ticks,
                    first_received_ticks, last_received_ticks, redrives, failure, {PostgresMessageRows.InsertColumns})
                SELECT $2, 0, $3, 0, deliveries, enqueued_ticks, $4,
                    first_received_ticks, last_received_ticks, redrives + 1, failure, {PostgresMessageRows.InsertColumns}
                FROM {T("messages")} WHERE seq = ANY($1) ORDER BY seq
                """);
            move.Parameters.Add(Pg.Longs(seqs));
            move.Parameters.Add(Pg.Long(target.Id));
            move.Parameters.Add(Pg.Long(work.Now));
            move.Parameters.Add(Pg.Long(work.Now + target.Definition.Retention.Ticks));
            await move.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            await using var delete = work.Command($"DELETE FROM {T("messages")} WHERE seq = ANY($1)");
            delete.Parameters.Add(Pg.Longs(seqs));
            await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        work.Touch(target.Definition.Name.Value);

        // Moved elsewhere, a parked FIFO head lets its group move on here.
        work.Touch(source.Definition.Name.Value);
        return (letters.Count, letters[^1].Seq);
    }

    /// <inheritdoc />
    public Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            Guid[]? ids = messageIds is null ? null : [.. messageIds.Select(i => i.Value).Distinct()];
            return WriteAsync(async work =>
            {
                var row = await work.RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false);
                // The state is checked in the DELETE's own condition too: PostgreSQL checks that again on the row's newest
                // version when the delete waited for its lock, whereas the subquery keeps the statement's older snapshot,
                // so a redrive committed meanwhile (the message live again) would not have stopped the delete.
                await using var delete = ids is null
                    ? work.Command($"DELETE FROM {T("messages")} WHERE queue_id = $1 AND state >= 2")
                    : work.Command($"""
                        DELETE FROM {T("messages")} WHERE state >= 2 AND seq IN (
                            SELECT min(seq) FROM {T("messages")} WHERE queue_id = $1 AND state >= 2 AND id = ANY($2) GROUP BY id)
                        """);
                delete.Parameters.Add(Pg.Long(row.Id));
                if (ids is not null)
                {
                    delete.Parameters.Add(Pg.Uuids(ids));
                }

                var purged = await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                if (purged > 0)
                {
                    // A purged FIFO head lets its group move on.
                    work.Touch(row.Definition.Name.Value);
                }

                return purged;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    private static DeadLetter ReadDeadLetter(NpgsqlDataReader reader, QueueName queue)
    {
        var deadAt = new DateTimeOffset(reader.GetInt64(6), TimeSpan.Zero);
        Message message;
        try
        {
            message = PostgresMessageRows.Read(reader, DeadEnvelopeAt);
        }
        catch (Exception ex) when (PostgresMessageRows.IsUnreadable(ex))
        {
            // A corrupt envelope must not hide the dead letter that holds it, nor the others listed with it.
            message = PostgresMessageRows.Unreadable(reader, DeadEnvelopeAt, deadAt);
        }

        FailureInfo? failure;
        try
        {
            failure = PostgresMessageRows.Failure(reader, 2);
        }
        catch (Exception ex) when (PostgresMessageRows.IsUnreadable(ex))
        {
            failure = new FailureInfo("unreadable", $"the stored failure could not be read: {ex.Message}", null);
        }

        return new DeadLetter(message, queue, reader.GetInt64(0))
        {
            Reason = PostgresMessageRows.TextOrNull(reader, 1) ?? "unknown",
            Failure = failure,
            Attempts = reader.GetInt32(3),
            FirstReceivedAt = PostgresMessageRows.LongOrNull(reader, 4) is { } first ? new DateTimeOffset(first, TimeSpan.Zero) : null,
            LastReceivedAt = PostgresMessageRows.LongOrNull(reader, 5) is { } last ? new DateTimeOffset(last, TimeSpan.Zero) : null,
            DeadLetteredAt = deadAt,
            EnqueuedAt = new DateTimeOffset(reader.GetInt64(7), TimeSpan.Zero),
            Redrives = reader.GetInt32(8),
            ParksGroup = reader.GetInt16(9) == 2,
        };
    }
}
