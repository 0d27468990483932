using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresMessageBroker
{
    /// <summary>The leasing columns of a receive, then the envelope from <see cref="LeasedEnvelopeAt"/>.</summary>
    private const string LeaseColumns = $"m.seq, m.state, m.receive_count, {PostgresMessageRows.Expired}, m.deliveries, m.first_received_ticks, m.enqueued_ticks, m.failure, m.redrives";

    private const int LeasedEnvelopeAt = 9;

    /// <summary>The pause before a waiting receive looks again after its connection failed; it doubles up to <see cref="MaxLookRetryDelay"/>.</summary>
    private static readonly TimeSpan FirstLookRetryDelay = TimeSpan.FromMilliseconds(50);

    private static readonly TimeSpan MaxLookRetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Whether a receive failed for a reason that may pass by itself: its connection (the server unreachable, restarting
    /// or failing over, or no primary among the hosts yet) or a condition Npgsql counts as transient (the server short of
    /// resources, a lock or serialization conflict). The failed look rolled back, unless its commit was lost.
    /// </summary>
    private static bool IsConnectionFailure(NpgsqlException ex) => ex is not PostgresException || ex.IsTransient;

    /// <inheritdoc />
    public async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Wait > TimeSpan.Zero)
        {
            // Wake-ups from other processes matter only to a receive that waits.
            _listener.Start();
        }

        var deadline = _time.GetUtcNow() + options.Wait;
        var retryDelay = FirstLookRetryDelay;
        while (true)
        {
            // Taken before looking, so a commit between the look and the wait still wakes this receive.
            var woken = _signal.NextAsync(queue.Value);
            List<Delivery> deliveries;
            long? nextVisible;
            try
            {
                // A look that finds nothing writes nothing, and repeats no write: it need not wait for a standby.
                (deliveries, nextVisible) = await WriteAsync(work => ReceiveCoreAsync(work, queue, options.MaxMessages, options.Lease, cancellationToken), cancellationToken, confirmsReplication: false).ConfigureAwait(false);
            }
            catch (NpgsqlException ex) when (IsConnectionFailure(ex) && _time.GetUtcNow() < deadline)
            {
                // The server went away, restarts or fails over: a receive that waits looks again within its wait, as a
                // consumer would, and fails only if its last look does. A look whose commit was lost may have leased
                // messages; they come again when their leases run out (at least once). A look whose commit the
                // synchronous standby did not confirm fails at once (ReplicationNotConfirmedException): looking again
                // would lease more messages the same way and might end empty-handed, hiding the outage.
                var pause = Min(retryDelay, deadline - _time.GetUtcNow());
                retryDelay = Min(retryDelay * 2, MaxLookRetryDelay);
                await Task.Delay(Max(pause, TimeSpan.Zero), _time, cancellationToken).ConfigureAwait(false);
                continue;
            }

            retryDelay = FirstLookRetryDelay;
            var now = _time.GetUtcNow();
            if (deliveries.Count > 0 || now >= deadline)
            {
                return deliveries;
            }

            var wait = deadline - now;
            if (nextVisible is { } ticks)
            {
                wait = Min(wait, new DateTimeOffset(ticks, TimeSpan.Zero) - now);
            }

            // A notification lost while the listening connection was down only delays: look again at the poll interval.
            wait = Min(wait, _store.PostgresOptions.ExternalCommitPollInterval);
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
    /// Leases up to <paramref name="max"/> messages; when none, also says when the next one becomes visible. Candidates
    /// are locked with <c>FOR UPDATE SKIP LOCKED</c>: a row another receiver is leasing is passed over, never waited
    /// for, and never leased twice. In a FIFO queue only a group's head is a candidate, and a head leased, released or
    /// dead-lettered (parking) holds its group back, so one group's messages go to one receiver at a time, in order.
    /// </summary>
    private async Task<(List<Delivery> Deliveries, long? NextVisible)> ReceiveCoreAsync(MessagingWork work, QueueName queueName, int max, TimeSpan? lease, CancellationToken cancellationToken)
    {
        var queue = await work.RequireQueueAsync(queueName, cancellationToken).ConfigureAwait(false);
        var definition = queue.Definition;
        var now = work.Now;
        var leaseEnds = now + (lease ?? definition.Lease).Ticks;
        var select = definition.Fifo
            ? $"""
                SELECT {LeaseColumns}, {PostgresMessageRows.Columns} FROM {T("messages")} m
                WHERE m.queue_id = $1 AND m.visible_at <= $2
                  AND NOT EXISTS (SELECT 1 FROM {T("messages")} h WHERE h.queue_id = $1 AND h.group_key = m.group_key AND h.seq < m.seq AND h.state <> 3)
                ORDER BY m.seq LIMIT $3 FOR UPDATE OF m SKIP LOCKED
                """
            : $"""
                SELECT {LeaseColumns}, {PostgresMessageRows.Columns} FROM {T("messages")} m
                WHERE m.queue_id = $1 AND m.visible_at <= $2
                ORDER BY m.visible_at, m.seq LIMIT $3 FOR UPDATE OF m SKIP LOCKED
                """;
        var deliveries = new List<Delivery>(Math.Min(max, 64));
        var unreadable = new List<(long Seq, string Reason, FailureInfo Failure)>();
        while (deliveries.Count < max)
        {
            var leased = new List<long>();
            var expired = new List<long>();
            var exhausted = new List<(long Seq, string Reason)>();
            var found = 0;
            await using (var command = work.Command(select))
            {
                command.Parameters.Add(Pg.Long(queue.Id));
                command.Parameters.Add(Pg.Long(now));
                command.Parameters.Add(Pg.Long(max - deliveries.Count));
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    found++;
                    var seq = reader.GetInt64(0);
                    var state = reader.GetInt16(1);
                    var receiveCount = reader.GetInt32(2);
                    if (reader.GetBoolean(3))
                    {
                        // Past the queue's retention: dropped, not delivered.
                        expired.Add(seq);
                    }
                    else if (receiveCount >= definition.MaxReceiveCount)
                    {
                        exhausted.Add((seq, state == 1
                            ? $"its lease ran out on the last of its {definition.MaxReceiveCount} allowed receives"
                            : $"it was received the maximum of {definition.MaxReceiveCount} times"));
                    }
                    else
                    {
                        var deliveriesSoFar = reader.GetInt64(4);
                        try
                        {
                            deliveries.Add(new Delivery(PostgresMessageRows.Read(reader, LeasedEnvelopeAt), new LeaseToken(queueName, seq, deliveriesSoFar + 1))
                            {
                                ReceiveCount = receiveCount + 1,
                                FirstReceivedAt = new DateTimeOffset(PostgresMessageRows.LongOrNull(reader, 5) ?? now, TimeSpan.Zero),
                                EnqueuedAt = new DateTimeOffset(reader.GetInt64(6), TimeSpan.Zero),
                                LeaseExpiresAt = new DateTimeOffset(leaseEnds, TimeSpan.Zero),
                                PreviousLeaseExpired = state == 1,
                                LastFailure = PostgresMessageRows.Failure(reader, 7),
                                Redrives = reader.GetInt32(8),
                            });
                            leased.Add(seq);
                        }
                        catch (Exception ex) when (PostgresMessageRows.IsUnreadable(ex))
                        {
                            // A row that cannot be read is dead-lettered with the reason, so it neither blocks the others
                            // nor comes back until its receives run out.
                            unreadable.Add((seq, $"its stored envelope could not be read: {ex.Message}", FailureInfo.From(ex)));
                        }
                    }
                }
            }

            // Leased before the next look, which must not see them again.
            if (leased.Count > 0)
            {
                await using var update = work.Command($"""
                    UPDATE {T("messages")} SET state = 1, visible_at = $2, receive_count = receive_count + 1, deliveries = deliveries + 1,
                        first_received_ticks = coalesce(first_received_ticks, $3), last_received_ticks = $3
                    WHERE seq = ANY($1)
                    """);
                update.Parameters.Add(Pg.Longs([.. leased]));
                update.Parameters.Add(Pg.Long(leaseEnds));
                update.Parameters.Add(Pg.Long(now));
                await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            if (expired.Count > 0)
            {
                await using var delete = work.Command($"DELETE FROM {T("messages")} WHERE seq = ANY($1)");
                delete.Parameters.Add(Pg.Longs([.. expired]));
                await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }

            foreach (var (seq, reason) in exhausted)
            {
                await MoveToDeadLettersAsync(work, queue, seq, reason, null, cancellationToken).ConfigureAwait(false);
            }

            foreach (var (seq, reason, failure) in unreadable)
            {
                await MoveToDeadLettersAsync(work, queue, seq, reason, failure, cancellationToken).ConfigureAwait(false);
            }

            // Rows dropped or dead-lettered make room, and in a FIFO queue may free the next head: look again.
            var dropped = expired.Count + exhausted.Count + unreadable.Count;
            unreadable.Clear();
            if (found == 0 || dropped == 0)
            {
                break;
            }
        }

        if (deliveries.Count > 0)
        {
            return (deliveries, null);
        }

        await using var next = work.Command($"SELECT min(visible_at) FROM {T("messages")} WHERE queue_id = $1 AND visible_at > $2");
        next.Parameters.Add(Pg.Long(queue.Id));
        next.Parameters.Add(Pg.Long(now));
        return (deliveries, await next.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as long?);
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
            return WriteAsync(async work =>
            {
                await AcknowledgeAsync(work, copy, cancellationToken).ConfigureAwait(false);
                return true;
            }, cancellationToken, confirmsReplication: false);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <summary>
    /// Deletes what the leases still hold, one statement per queue; when one is no longer held, finds out why and
    /// fails the transaction, so none is deleted.
    /// </summary>
    private async Task AcknowledgeAsync(MessagingWork work, IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken)
    {
        // In sequence order, so two transactions settling the same messages lock them in the same order.
        foreach (var group in leases.GroupBy(l => l.Queue).OrderBy(g => g.Key.Value, StringComparer.Ordinal))
        {
            var queue = await work.RequireQueueAsync(group.Key, cancellationToken).ConfigureAwait(false);
            var sorted = group.OrderBy(l => l.Sequence).ToArray();
            await using var delete = work.Command($"""
                DELETE FROM {T("messages")} m USING unnest($2, $3) AS l (seq, deliveries)
                WHERE m.seq = l.seq AND m.queue_id = $1 AND m.deliveries = l.deliveries AND m.state = 1
                RETURNING m.seq, m.deliveries
                """);
            delete.Parameters.Add(Pg.Long(queue.Id));
            delete.Parameters.Add(Pg.Longs([.. sorted.Select(l => l.Sequence)]));
            delete.Parameters.Add(Pg.Longs([.. sorted.Select(l => l.Delivery)]));

            // By message and delivery: a message's current lease deletes it, and its stale one beside it must still fail.
            var deleted = new HashSet<(long Sequence, long Delivery)>();
            await using (var reader = await delete.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    deleted.Add((reader.GetInt64(0), reader.GetInt64(1)));
                }
            }

            foreach (var lease in sorted)
            {
                // Remove, not look up: a lease named twice settles its message once, and its second mention fails the
                // batch as on every backend.
                if (!deleted.Remove((lease.Sequence, lease.Delivery)))
                {
                    await HeldLeaseAsync(work, lease, cancellationToken).ConfigureAwait(false);
                    throw new LeaseLostException(lease, "the message is no longer held under this lease");
                }
            }

            if (queue.Definition.Fifo)
            {
                // The next message of each group is now its head: wake the receivers waiting for it.
                work.Touch(queue.Definition.Name.Value);
            }
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

            return WriteAsync(async work =>
            {
                var (queue, receiveCount) = await HeldLeaseAsync(work, lease, cancellationToken).ConfigureAwait(false);
                if (receiveCount >= queue.Definition.MaxReceiveCount)
                {
                    await MoveToDeadLettersAsync(work, queue, lease.Sequence, $"it failed on each of its {queue.Definition.MaxReceiveCount} allowed receives", failure, cancellationToken).ConfigureAwait(false);
                    return true;
                }

                await using var update = work.Command($"UPDATE {T("messages")} SET state = 0, visible_at = $2, failure = coalesce($3, failure) WHERE seq = $1");
                update.Parameters.Add(Pg.Long(lease.Sequence));
                update.Parameters.Add(Pg.Long(work.Now + delay.Ticks));
                update.Parameters.Add(Pg.Text(PostgresMessageRows.FailureJson(failure)));
                await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                work.Touch(queue.Definition.Name.Value);
                return false;
            }, cancellationToken, confirmsReplication: false);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) =>
        WriteAsync(async work =>
        {
            var (queue, _) = await HeldLeaseAsync(work, lease, cancellationToken).ConfigureAwait(false);
            await using var update = work.Command($"UPDATE {T("messages")} SET state = 0, visible_at = $2, receive_count = greatest(receive_count - 1, 0) WHERE seq = $1");
            update.Parameters.Add(Pg.Long(lease.Sequence));
            update.Parameters.Add(Pg.Long(work.Now));
            await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            work.Touch(queue.Definition.Name.Value);
            return true;
        }, cancellationToken, confirmsReplication: false);

    /// <inheritdoc />
    public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
    {
        try
        {
            if (duration < TimeSpan.FromMilliseconds(1) || duration > TimeSpan.FromHours(12))
            {
                throw new InvalidMessageException($"A lease extension of {duration} is refused; it must be between 1 ms and 12 hours.");
            }

            return WriteAsync(async work =>
            {
                await HeldLeaseAsync(work, lease, cancellationToken).ConfigureAwait(false);
                await using var update = work.Command($"UPDATE {T("messages")} SET visible_at = $2 WHERE seq = $1");
                update.Parameters.Add(Pg.Long(lease.Sequence));
                update.Parameters.Add(Pg.Long(work.Now + duration.Ticks));
                await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return true;
            }, cancellationToken, confirmsReplication: false);
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

            return WriteAsync(async work =>
            {
                var (queue, _) = await HeldLeaseAsync(work, lease, cancellationToken).ConfigureAwait(false);
                await MoveToDeadLettersAsync(work, queue, lease.Sequence, reason, failure, cancellationToken).ConfigureAwait(false);
                return true;
            }, cancellationToken, confirmsReplication: false);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <summary>
    /// Checks that a lease is still held, and locks the message until the transaction ends, so no receiver can lease it
    /// again in between; returns the message's queue and receive count.
    /// </summary>
    private async Task<(QueueRow Queue, int ReceiveCount)> HeldLeaseAsync(MessagingWork work, LeaseToken lease, CancellationToken cancellationToken)
    {
        var queue = await work.RequireQueueAsync(lease.Queue, cancellationToken).ConfigureAwait(false);
        await using var select = work.Command($"SELECT queue_id, state, deliveries, receive_count FROM {T("messages")} WHERE seq = $1 FOR UPDATE");
        select.Parameters.Add(Pg.Long(lease.Sequence));
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false) || reader.GetInt64(0) != queue.Id)
        {
            throw new LeaseLostException(lease, "the message is no longer in the queue (acknowledged, dead-lettered, dropped or purged)");
        }

        if (reader.GetInt64(2) != lease.Delivery)
        {
            throw new LeaseLostException(lease, "the lease ran out and the message was delivered again");
        }

        return reader.GetInt16(1) switch
        {
            1 => (queue, reader.GetInt32(3)),
            0 => throw new LeaseLostException(lease, "the message was released"),
            _ => throw new LeaseLostException(lease, "the message was dead-lettered"),
        };
    }

    private async Task MoveToDeadLettersAsync(MessagingWork work, QueueRow queue, long seq, string reason, FailureInfo? failure, CancellationToken cancellationToken)
    {
        await using var update = work.Command($"UPDATE {T("messages")} SET state = $2, visible_at = NULL, dead_reason = $3, dead_ticks = $4, failure = coalesce($5, failure) WHERE seq = $1");
        update.Parameters.Add(Pg.Long(seq));
        update.Parameters.Add(Pg.Short(queue.Definition.Fifo ? (short)2 : (short)3));
        update.Parameters.Add(Pg.Text(reason));
        update.Parameters.Add(Pg.Long(work.Now));
        update.Parameters.Add(Pg.Text(PostgresMessageRows.FailureJson(failure)));
        await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        work.DeadLettered(queue.Definition.Name.Value);
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
