using Cairn.Envelopes;

namespace Cairn.Messaging.InMemory;

public sealed partial class InMemoryMessageBroker
{
    /// <inheritdoc />
    public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            DeadLetterListing.CheckLimit(limit);

            return Run<IReadOnlyList<DeadLetter>>(cancellationToken, _ =>
            {
                var state = RequireQueue(queue);
                return [.. state.Messages.Values.Where(m => m.IsDeadLetter && m.Sequence > afterSequence).Take(limit).Select(m => ToDeadLetter(m, state.Definition.Name))];
            });
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
            return Run(cancellationToken, _ =>
            {
                var state = RequireQueue(queue);
                return FindDeadLetter(state, messageId) is { } message ? ToDeadLetter(message, state.Definition.Name) : null;
            });
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
                (after, chosen, size) => Run(cancellationToken, touched => Redrive(queue, request.Target, after, chosen, size, touched)),
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
            return Run(cancellationToken, touched =>
            {
                var state = RequireQueue(queue);
                var purged = 0;
                if (ids is null)
                {
                    foreach (var message in state.Messages.Values.Where(m => m.IsDeadLetter).ToList())
                    {
                        state.Messages.Remove(message.Sequence);
                        purged++;
                    }
                }
                else
                {
                    // Each id once, as the durable backends take it: one copy of a message sent twice is purged once.
                    foreach (var id in ids.Distinct())
                    {
                        if (FindDeadLetter(state, id) is { } message)
                        {
                            state.Messages.Remove(message.Sequence);
                            purged++;
                        }
                    }
                }

                if (purged > 0)
                {
                    // A purged FIFO head lets its group move on.
                    touched.Add(state.Definition.Name.Value);
                }

                return purged;
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of<int>(ex);
        }
    }

    /// <summary>
    /// Redrives the next dead letters of a queue after <paramref name="afterSequence"/> (the chosen ids only, when given),
    /// at most <paramref name="limit"/>; returns how many moved and the last sequence looked at.
    /// </summary>
    private (int Moved, long LastSequence) Redrive(QueueName sourceName, QueueName? targetName, long afterSequence, IReadOnlyList<MessageId>? ids, int limit, HashSet<string> touched)
    {
        var source = RequireQueue(sourceName);
        var target = targetName is { } name ? RequireQueue(name) : source;
        List<QueuedMessage> letters = ids is null
            ? [.. source.Messages.Values.Where(m => m.IsDeadLetter && m.Sequence > afterSequence).Take(limit)]
            : [.. ids.Select(id => FindDeadLetter(source, id)).OfType<QueuedMessage>().Distinct()];
        var now = Now();
        foreach (var letter in letters)
        {
            if (ReferenceEquals(target, source))
            {
                // Back to its own place: same sequence, so it heads its FIFO group again.
                letter.State = MessageState.Ready;
                letter.VisibleAt = now;
                letter.ReceiveCount = 0;
                letter.Redrives++;
                letter.DeadReason = null;
                letter.DeadLetteredAt = null;
                letter.ExpiresAt = now + source.Definition.Retention.Ticks;
                continue;
            }

            // To another queue: a new place at its end, with the history kept. A message without a group has no order to
            // keep in a FIFO queue either.
            source.Messages.Remove(letter.Sequence);
            var sequence = ++_lastSequence;
            var group = letter.GroupKey;
            target.Messages.Add(sequence, new QueuedMessage(sequence, letter.Message, group)
            {
                State = MessageState.Ready,
                VisibleAt = now,
                Deliveries = letter.Deliveries,
                EnqueuedAt = letter.EnqueuedAt,
                ExpiresAt = now + target.Definition.Retention.Ticks,
                FirstReceivedAt = letter.FirstReceivedAt,
                LastReceivedAt = letter.LastReceivedAt,
                Redrives = letter.Redrives + 1,
                Failure = letter.Failure,
            });
        }

        if (letters.Count > 0)
        {
            touched.Add(target.Definition.Name.Value);
            if (source.Definition.Fifo)
            {
                // Parked groups whose heads left may move on.
                touched.Add(source.Definition.Name.Value);
            }
        }

        return (letters.Count, letters.Count == 0 ? afterSequence : letters[^1].Sequence);
    }

    /// <summary>The first dead letter of a queue with the given message id.</summary>
    private static QueuedMessage? FindDeadLetter(QueueState queue, MessageId id) =>
        queue.Messages.Values.FirstOrDefault(m => m.IsDeadLetter && m.Message.Id == id);

    private static DeadLetter ToDeadLetter(QueuedMessage m, QueueName queue) => new(m.Message, queue, m.Sequence)
    {
        Reason = m.DeadReason ?? "unknown",
        Failure = m.Failure,
        Attempts = m.ReceiveCount,
        FirstReceivedAt = Time(m.FirstReceivedAt),
        LastReceivedAt = Time(m.LastReceivedAt),
        DeadLetteredAt = new DateTimeOffset(m.DeadLetteredAt ?? 0, TimeSpan.Zero),
        EnqueuedAt = new DateTimeOffset(m.EnqueuedAt, TimeSpan.Zero),
        Redrives = m.Redrives,
        ParksGroup = m.State == MessageState.ParkingGroup,
    };

    private static DateTimeOffset? Time(long? ticks) => ticks is { } t ? new DateTimeOffset(t, TimeSpan.Zero) : null;
}
