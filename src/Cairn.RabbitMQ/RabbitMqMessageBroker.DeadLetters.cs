using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.Messaging;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Cairn.RabbitMQ;

/// <summary>
/// Dead letters live in a quorum queue beside each queue, <c>&lt;queue&gt;.dlq</c>, each with its reason, failure,
/// attempts and times in <c>cairn-*</c> headers. AMQP 0-9-1 cannot look at a queue without taking from it, so listing
/// and finding read the whole dead-letter queue with <c>basic.get</c> and give every message back (a nack with requeue)
/// at the end: the cost grows with the dead-letter queue's length, and while a listing runs, the messages it holds are
/// not visible to another listing.
/// </summary>
public sealed partial class RabbitMqMessageBroker
{
    private long _lastDeadLetterSequence;

    private long NextDeadLetterSequence()
    {
        // Time-based so that sequences grow across processes and restarts; strictly increasing within a process.
        var candidate = _time.GetUtcNow().UtcTicks;
        while (true)
        {
            var last = Interlocked.Read(ref _lastDeadLetterSequence);
            var next = Math.Max(candidate, last + 1);
            if (Interlocked.CompareExchange(ref _lastDeadLetterSequence, next, last) == last)
            {
                return next;
            }
        }
    }

    private async Task MoveToDeadLettersAsync(HeldLease held, string reason, FailureInfo? failure, int attempts, CancellationToken cancellationToken)
    {
        var properties = AmqpMessageCodec.Copy(held.Buffered.Properties);
        var headers = properties.Headers!;
        var now = _time.GetUtcNow();
        headers[AmqpMessageCodec.DeadLetterReason] = AmqpMessageCodec.Capped(reason, AmqpMessageCodec.MaxFailureTextLength);
        headers[AmqpMessageCodec.DeadLetteredAt] = AmqpMessageCodec.Format(now);
        headers[AmqpMessageCodec.DeadLetterSequence] = NextDeadLetterSequence();
        headers[AmqpMessageCodec.DeadLetterQueue] = held.Queue.Name.Value;
        headers[AmqpMessageCodec.Receives] = (long)Math.Max(0, attempts);
        headers[AmqpMessageCodec.FirstReceivedAt] = AmqpMessageCodec.Format(held.Delivery.FirstReceivedAt);
        headers[AmqpMessageCodec.LastReceivedAt] = AmqpMessageCodec.Format(held.ReceivedAt);
        AmqpMessageCodec.SetFailure(headers, failure);
        // A dead-letter queue deleted in RabbitMQ behind Cairn's back is declared again, as a delay queue is: otherwise
        // every dead-lettering of the queue would fail, and a poison message would be delivered for ever.
        var deadLetters = DeadLettersIn(held.Queue.Name);
        await ReplaceDeliveryAsync(held, deadLetters, properties, cancellationToken, () => _connection.DeclareAsync(deadLetters, QuorumArguments(), cancellationToken)).ConfigureAwait(false);
        CairnDiagnostics.MessagesDeadLettered.Add(1, new KeyValuePair<string, object?>("queue", held.Queue.Name.Value));
    }

    private static DeadLetter? ToDeadLetter(QueueName queue, BasicGetResult result)
    {
        var headers = result.BasicProperties.Headers;
        var deadLetteredAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.DeadLetteredAt);
        var enqueuedAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.EnqueuedAt);
        var firstReceivedAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.FirstReceivedAt);
        var message = AmqpMessageCodec.ToMessage(result.BasicProperties, result.Body, firstReceivedAt ?? deadLetteredAt ?? enqueuedAt, out _);
        if (message is null)
        {
            return null;
        }

        // A dead letter that came other than through Cairn (RabbitMQ's own dead-lettering, a shovel, a tool) has no
        // sequence: its time stands in, on the same scale as Cairn's sequences, so every page from the start lists it.
        // Plus a number from its id below a millisecond, so two such dead letters of one time (a shovel's, another
        // publisher's whole seconds) page apart rather than one hiding the other.
        var sequence = AmqpMessageCodec.GetLong(headers, AmqpMessageCodec.DeadLetterSequence) is > 0 and var stored
            ? stored
            : Math.Max(1, (deadLetteredAt ?? enqueuedAt ?? message.Time).UtcTicks) + (long)(BitConverter.ToUInt64(message.Id.Value.ToByteArray(), 8) % 10_000);
        return new DeadLetter(message, queue, sequence)
        {
            Reason = AmqpMessageCodec.GetString(headers, AmqpMessageCodec.DeadLetterReason) ?? "dead-lettered outside Cairn",
            Failure = AmqpMessageCodec.GetFailure(headers),
            Attempts = AmqpMessageCodec.GetCount(headers, AmqpMessageCodec.Receives),
            FirstReceivedAt = firstReceivedAt,
            LastReceivedAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.LastReceivedAt),
            DeadLetteredAt = deadLetteredAt ?? message.Time,
            EnqueuedAt = enqueuedAt ?? message.Time,
            Redrives = AmqpMessageCodec.GetCount(headers, AmqpMessageCodec.Redrives),
        };
    }

    /// <summary>Reads the dead-letter queue from its head; <paramref name="visit"/> says whether to go on. Every message is given back when the channel closes.</summary>
    private async Task ScanDeadLettersAsync(QueueName queue, Func<IChannel, BasicGetResult, DeadLetter?, Task<(bool GoOn, bool Settled)>> visit, CancellationToken cancellationToken, bool confirms = false, Func<Task>? beforeGet = null)
    {
        await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        await WhileDeclaredAsync(queue, () => _connection.WithChannelAsync(
            async channel =>
            {
                // What this channel took stays unacknowledged until the scan ends, so basic.get never returns it twice.
                var held = new List<ulong>();
                while (true)
                {
                    if (beforeGet is not null)
                    {
                        await beforeGet().ConfigureAwait(false);
                    }

                    var result = await channel.BasicGetAsync(DeadLettersIn(queue), autoAck: false, cancellationToken).ConfigureAwait(false);
                    if (result is null)
                    {
                        break;
                    }

                    var (goOn, settled) = await visit(channel, result, ToDeadLetter(queue, result)).ConfigureAwait(false);
                    if (!settled)
                    {
                        held.Add(result.DeliveryTag);
                    }

                    if (!goOn)
                    {
                        break;
                    }
                }

                if (held.Count > 0)
                {
                    // Give the rest back, and wait (boundedly) until the queue counts them again, so that the next
                    // listing, redrive or purge, on another channel, sees them.
                    foreach (var tag in held)
                    {
                        await channel.BasicNackAsync(tag, multiple: false, requeue: true, cancellationToken).ConfigureAwait(false);
                    }

                    var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
                    while ((await channel.QueueDeclarePassiveAsync(DeadLettersIn(queue), cancellationToken).ConfigureAwait(false)).MessageCount < held.Count && DateTime.UtcNow < deadline)
                    {
                        await Task.Delay(5, cancellationToken).ConfigureAwait(false);
                    }
                }

                return true;
            },
            cancellationToken,
            confirms), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        DeadLetterListing.CheckLimit(limit);

        if (await IsKeptAsync(queue, cancellationToken).ConfigureAwait(false))
        {
            return await _backend.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken).ConfigureAwait(false);
        }

        var found = new List<DeadLetter>();
        await ScanDeadLettersAsync(
            queue,
            (_, _, deadLetter) =>
            {
                if (deadLetter is not null && deadLetter.Sequence > afterSequence)
                {
                    found.Add(deadLetter);
                }

                return Task.FromResult((true, false));
            },
            cancellationToken).ConfigureAwait(false);
        return [.. found.OrderBy(d => d.Sequence).Take(limit)];
    }

    /// <inheritdoc />
    public async Task<DeadLetter?> GetDeadLetterAsync(QueueName queue, MessageId messageId, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        if (await IsKeptAsync(queue, cancellationToken).ConfigureAwait(false))
        {
            return await _backend.GetDeadLetterAsync(queue, messageId, cancellationToken).ConfigureAwait(false);
        }

        DeadLetter? found = null;
        await ScanDeadLettersAsync(
            queue,
            (_, _, deadLetter) =>
            {
                if (deadLetter?.Message.Id == messageId)
                {
                    found = deadLetter;
                }

                return Task.FromResult((found is null, false));
            },
            cancellationToken).ConfigureAwait(false);
        return found;
    }

    /// <summary>
    /// Moves dead letters back: each chosen one is published to its queue (or the target), with its receive count reset
    /// and its redrive count raised, confirmed, and only then taken off the dead-letter queue. It joins the end of the
    /// queue: RabbitMQ cannot put it back in its old place. Every copy of a chosen message is moved (RabbitMQ can deliver
    /// a message twice, and both copies can fail), and a copy this redrive moved that consumers dead-letter again while
    /// it runs is left for the next: the scan ends.
    /// </summary>
    public async Task<int> RedriveAsync(QueueName queue, RedriveRequest request, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        var target = request.Target ?? queue;
        var targetIsKept = (await RequireQueueAsync(target, cancellationToken).ConfigureAwait(false)).Fifo;
        if (await IsKeptAsync(queue, cancellationToken).ConfigureAwait(false))
        {
            // A FIFO queue's dead letters are the backend's; to a queue in RabbitMQ they go through its outbox.
            var redriven = await _backend.RedriveAsync(queue, request with { Target = targetIsKept ? target : OutboxOf(target) }, cancellationToken).ConfigureAwait(false);
            if (!targetIsKept && redriven > 0)
            {
                OutboxWritten?.Invoke([target]);
            }

            return redriven;
        }

        if (targetIsKept)
        {
            throw new InvalidMessageException($"Dead letters of '{queue}' are in RabbitMQ; they cannot be redriven to the FIFO queue '{target}', which the backend keeps. Redrive them to a queue in RabbitMQ.");
        }

        // A FIFO queue's redrive (above) writes the backend alone; this one publishes, which would wait out the
        // client's time-out while RabbitMQ blocks publishing: say why at once.
        if (_connection.PublishingBlocked is { } blocked)
        {
            throw new RabbitMqBlockedException(blocked);
        }

        await EnsureDeclaredAsync(target, cancellationToken).ConfigureAwait(false);
        var chosen = request.MessageIds?.ToHashSet();
        var pause = request.MessagesPerSecond is { } rate ? TimeSpan.FromSeconds(1 / rate) : TimeSpan.Zero;
        var moved = 0;
        var paceNext = false;
        var run = Guid.NewGuid().ToString("N");
        await ScanDeadLettersAsync(
            queue,
            async (channel, result, deadLetter) =>
            {
                if (deadLetter is null || (chosen is not null && !chosen.Contains(deadLetter.Message.Id))
                    || AmqpMessageCodec.GetString(result.BasicProperties.Headers, AmqpMessageCodec.RedriveRun) == run)
                {
                    return (true, false);
                }

                var properties = AmqpMessageCodec.Copy(result.BasicProperties);
                var headers = properties.Headers!;
                // The receive count starts again; the times of its receives stay, as the backends keep them.
                foreach (var key in new[] { AmqpMessageCodec.DeadLetterReason, AmqpMessageCodec.DeadLetteredAt, AmqpMessageCodec.DeadLetterSequence, AmqpMessageCodec.DeadLetterQueue, AmqpMessageCodec.Receives, AmqpMessageCodec.LeaseExpired })
                {
                    headers.Remove(key);
                }

                headers[AmqpMessageCodec.Redrives] = deadLetter.Redrives + 1L;
                headers[AmqpMessageCodec.RedriveRun] = run;
                headers[AmqpMessageCodec.EnqueuedAt] = AmqpMessageCodec.Format(_time.GetUtcNow());
                AmqpMessageCodec.FitCopy(headers);
                try
                {
                    await channel.BasicPublishAsync("", AmqpName(target), true, properties, result.Body, cancellationToken).ConfigureAwait(false);
                }
                catch (PublishReturnException)
                {
                    // Not routed: the queue was deleted in RabbitMQ behind Cairn's back. Declared again, it takes the copy.
                    QueueFoundMissing(target);
                    await EnsureDeclaredAsync(target, cancellationToken).ConfigureAwait(false);
                    await channel.BasicPublishAsync("", AmqpName(target), true, properties, result.Body, cancellationToken).ConfigureAwait(false);
                }

                await channel.BasicAckAsync(result.DeliveryTag, false, cancellationToken).ConfigureAwait(false);
                moved++;
                paceNext = true;
                return (true, true);
            },
            cancellationToken,
            confirms: true,
            beforeGet: async () =>
            {
                // Paced before taking the next one, so a dead letter waiting its turn stays counted in the queue.
                if (paceNext && pause > TimeSpan.Zero)
                {
                    await Task.Delay(pause, _time, cancellationToken).ConfigureAwait(false);
                }

                paceNext = false;
            }).ConfigureAwait(false);
        return moved;
    }

    /// <inheritdoc />
    public async Task<int> PurgeDeadLettersAsync(QueueName queue, IReadOnlyList<MessageId>? messageIds, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        if (await IsKeptAsync(queue, cancellationToken).ConfigureAwait(false))
        {
            return await _backend.PurgeDeadLettersAsync(queue, messageIds, cancellationToken).ConfigureAwait(false);
        }

        if (messageIds is null)
        {
            await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false);
            return (int)await WhileDeclaredAsync(queue, () => _connection.WithChannelAsync(c => c.QueuePurgeAsync(DeadLettersIn(queue), cancellationToken), cancellationToken), cancellationToken).ConfigureAwait(false);
        }

        var chosen = messageIds.ToHashSet();
        var purged = 0;
        await ScanDeadLettersAsync(
            queue,
            async (channel, result, deadLetter) =>
            {
                if (deadLetter is not null && chosen.Contains(deadLetter.Message.Id))
                {
                    await channel.BasicAckAsync(result.DeliveryTag, false, cancellationToken).ConfigureAwait(false);
                    purged++;

                    // On to the end: another copy of the same message may be dead-lettered too.
                    return (true, true);
                }

                return (true, false);
            },
            cancellationToken).ConfigureAwait(false);
        return purged;
    }
}
