using Cairn.Envelopes;

namespace Cairn.Messaging.InMemory;

public sealed partial class InMemoryMessageBroker
{
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
            var woken = _signal.NextAsync(queue.Value);
            var (deliveries, nextVisible) = await Run(cancellationToken, _ => Receive(RequireQueue(queue), options.MaxMessages, options.Lease)).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            if (deliveries.Count > 0 || now >= deadline)
            {
                return deliveries;
            }

            var wait = deadline - now;
            if (nextVisible is { } ticks && new DateTimeOffset(ticks, TimeSpan.Zero) - now < wait)
            {
                wait = new DateTimeOffset(ticks, TimeSpan.Zero) - now;
            }

            try
            {
                await woken.WaitAsync(wait > TimeSpan.FromMilliseconds(1) ? wait : TimeSpan.FromMilliseconds(1), _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Time to look again: a delayed message may be due, or the wait is over.
            }
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
            return Run(cancellationToken, touched => Acknowledge(HeldLeases(copy), touched));
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

            return Run(cancellationToken, touched =>
            {
                var (queue, message) = HeldLease(lease);
                var now = Now();
                var definition = queue.Definition;
                if (message.ReceiveCount >= definition.MaxReceiveCount)
                {
                    MoveToDeadLetters(queue, message, $"it failed on each of its {definition.MaxReceiveCount} allowed receives", failure, now);
                    return;
                }

                message.State = MessageState.Ready;
                message.VisibleAt = now + delay.Ticks;
                message.Failure = failure ?? message.Failure;
                touched.Add(definition.Name.Value);
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) =>
        Run(cancellationToken, touched =>
        {
            var (queue, message) = HeldLease(lease);
            message.State = MessageState.Ready;
            message.VisibleAt = Now();
            message.ReceiveCount = Math.Max(0, message.ReceiveCount - 1);
            touched.Add(queue.Definition.Name.Value);
        });

    /// <inheritdoc />
    public Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
    {
        try
        {
            if (duration < TimeSpan.FromMilliseconds(1) || duration > TimeSpan.FromHours(12))
            {
                throw new InvalidMessageException($"A lease extension of {duration} is refused; it must be between 1 ms and 12 hours.");
            }

            return Run(cancellationToken, _ =>
            {
                var (_, message) = HeldLease(lease);
                message.VisibleAt = Now() + duration.Ticks;
            });
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

            return Run(cancellationToken, _ =>
            {
                var (queue, message) = HeldLease(lease);
                MoveToDeadLetters(queue, message, reason, failure, Now());
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.Validate("consumer", consumer);
            return Run(cancellationToken, _ => _inbox.ContainsKey((consumer, messageId)));
        }
        catch (Exception ex)
        {
            return Refusal.Of<bool>(ex);
        }
    }

    /// <inheritdoc />
    public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.Validate("consumer", consumer);
            return Run(cancellationToken, _ =>
            {
                var old = _inbox.Where(r => r.Key.Consumer == consumer && r.Value.Ticks < before.UtcTicks).Select(r => r.Key).ToList();
                foreach (var key in old)
                {
                    _inbox.Remove(key);
                }

                return old.Count;
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    /// <summary>
    /// Leases up to <paramref name="max"/> messages, dropping those past retention and dead-lettering those out of
    /// receives on the way; when none, also says when the next one becomes visible.
    /// </summary>
    private (IReadOnlyList<Delivery> Deliveries, long? NextVisible) Receive(QueueState queue, int max, TimeSpan? lease)
    {
        var definition = queue.Definition;
        var now = Now();
        var leaseEnds = now + (lease ?? definition.Lease).Ticks;
        var deliveries = new List<Delivery>(Math.Min(max, 64));

        // A standard queue delivers the longest-visible first; a FIFO queue the head of each group, in sequence order,
        // where any earlier message of the group (leased, delayed or dead-lettered) holds the rest back.
        var candidates = definition.Fifo
            ? [.. queue.Messages.Values]
            : queue.Messages.Values.Where(m => !m.IsDeadLetter && m.VisibleAt <= now).OrderBy(m => m.VisibleAt).ThenBy(m => m.Sequence).ToList();
        var heldGroups = definition.Fifo ? new HashSet<string>(StringComparer.Ordinal) : null;
        foreach (var message in candidates)
        {
            if (deliveries.Count == max)
            {
                break;
            }

            var group = heldGroups is null ? null : message.GroupKey;
            if (group is not null && heldGroups!.Contains(group))
            {
                continue;
            }

            if (message.State == MessageState.DeadLettered)
            {
                continue;
            }

            if (message.State == MessageState.ParkingGroup || message.VisibleAt > now)
            {
                Hold(group);
                continue;
            }

            if (message.IsExpired(now))
            {
                // Past the queue's retention: dropped, not delivered.
                queue.Messages.Remove(message.Sequence);
                continue;
            }

            Hold(group);
            if (message.ReceiveCount >= definition.MaxReceiveCount)
            {
                var reason = message.State == MessageState.Leased
                    ? $"its lease ran out on the last of its {definition.MaxReceiveCount} allowed receives"
                    : $"it was received the maximum of {definition.MaxReceiveCount} times";
                MoveToDeadLetters(queue, message, reason, null, now);
                continue;
            }

            var previousLeaseExpired = message.State == MessageState.Leased;
            message.State = MessageState.Leased;
            message.VisibleAt = leaseEnds;
            message.ReceiveCount++;
            message.Deliveries++;
            message.FirstReceivedAt ??= now;
            message.LastReceivedAt = now;
            deliveries.Add(new Delivery(message.Message, new LeaseToken(definition.Name, message.Sequence, message.Deliveries))
            {
                ReceiveCount = message.ReceiveCount,
                FirstReceivedAt = new DateTimeOffset(message.FirstReceivedAt.Value, TimeSpan.Zero),
                EnqueuedAt = new DateTimeOffset(message.EnqueuedAt, TimeSpan.Zero),
                LeaseExpiresAt = new DateTimeOffset(leaseEnds, TimeSpan.Zero),
                PreviousLeaseExpired = previousLeaseExpired,
                LastFailure = message.Failure,
                Redrives = message.Redrives,
            });
        }

        if (deliveries.Count > 0)
        {
            return (deliveries, null);
        }

        long? next = null;
        foreach (var message in queue.Messages.Values)
        {
            if (!message.IsDeadLetter && message.VisibleAt > now && (next is null || message.VisibleAt < next))
            {
                next = message.VisibleAt;
            }
        }

        return (deliveries, next);

        void Hold(string? key)
        {
            if (key is not null)
            {
                heldGroups!.Add(key);
            }
        }
    }

    /// <summary>Checks that every lease is still held, each once; returns their queues and messages.</summary>
    private List<(QueueState Queue, QueuedMessage Message)> HeldLeases(IReadOnlyList<LeaseToken> leases)
    {
        var held = new List<(QueueState, QueuedMessage)>(leases.Count);
        var settled = new HashSet<QueuedMessage>(ReferenceEqualityComparer.Instance);
        foreach (var lease in leases)
        {
            var (queue, message) = HeldLease(lease);
            if (!settled.Add(message))
            {
                // As if the earlier settlement in the same call had already deleted it.
                throw new LeaseLostException(lease, "the message is no longer in the queue (acknowledged, dead-lettered, dropped or purged)");
            }

            held.Add((queue, message));
        }

        return held;
    }

    /// <summary>Checks that a lease is still held; returns the message and its queue.</summary>
    private (QueueState Queue, QueuedMessage Message) HeldLease(LeaseToken lease)
    {
        var queue = RequireQueue(lease.Queue);
        if (!queue.Messages.TryGetValue(lease.Sequence, out var message))
        {
            throw new LeaseLostException(lease, "the message is no longer in the queue (acknowledged, dead-lettered, dropped or purged)");
        }

        if (message.Deliveries != lease.Delivery)
        {
            throw new LeaseLostException(lease, "the lease ran out and the message was delivered again");
        }

        return message.State switch
        {
            MessageState.Leased => (queue, message),
            MessageState.Ready => throw new LeaseLostException(lease, "the message was released"),
            _ => throw new LeaseLostException(lease, "the message was dead-lettered"),
        };
    }

    private static void Acknowledge(List<(QueueState Queue, QueuedMessage Message)> held, HashSet<string> touched)
    {
        foreach (var (queue, message) in held)
        {
            queue.Messages.Remove(message.Sequence);
            if (queue.Definition.Fifo)
            {
                // The rest of its group may go now.
                touched.Add(queue.Definition.Name.Value);
            }
        }
    }

    private static void MoveToDeadLetters(QueueState queue, QueuedMessage message, string reason, FailureInfo? failure, long now)
    {
        message.State = queue.Definition.Fifo ? MessageState.ParkingGroup : MessageState.DeadLettered;
        message.DeadReason = reason;
        message.DeadLetteredAt = now;
        message.Failure = failure ?? message.Failure;

        // Counted at once: the in-memory broker applies every change under its lock, so nothing rolls back later. A
        // metrics listener that throws must not report the change failed, half made.
        try
        {
            Diagnostics.CairnDiagnostics.MessagesDeadLettered.Add(1, new KeyValuePair<string, object?>("queue", queue.Definition.Name.Value));
        }
        catch (Exception)
        {
            // The dead letter stands; only its count is lost.
        }
    }
}
