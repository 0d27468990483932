using Cairn.EventStore;
using Cairn.Messaging.Filtering;

namespace Cairn.Messaging.Routing;

/// <summary>Which archived events to replay into a queue.</summary>
/// <param name="Queue">The queue that receives them.</param>
/// <param name="From">The earliest commit time replayed (inclusive).</param>
/// <param name="To">The latest commit time replayed (inclusive).</param>
public sealed record ReplayRequest(QueueName Queue, DateTimeOffset From, DateTimeOffset To)
{
    /// <summary>Which events, by category, stream or type; every user event when null.</summary>
    public EventFilter? Filter { get; init; }

    /// <summary>A filter rule on the events rendered as messages; every event passes when null.</summary>
    public FilterRule? Rule { get; init; }

    /// <summary>The most messages sent per commit.</summary>
    public int BatchSize { get; init; } = 500;

    /// <summary>Refuses impossible settings.</summary>
    public void Validate()
    {
        if (Queue == default)
        {
            throw new InvalidMessageException("A replay names no queue.");
        }

        if (To < From)
        {
            throw new InvalidMessageException($"A replay's range is empty: To ({To:O}) is before From ({From:O}).");
        }

        if (BatchSize is < 1 or > 10_000)
        {
            throw new InvalidMessageException($"A replay's BatchSize is {BatchSize}; it must be between 1 and 10,000.");
        }
    }
}

/// <summary>Replays archived events from the log into a queue: the log is the archive.</summary>
public static class EventReplay
{
    /// <summary>
    /// Sends every event committed within the request's time range that passes its filter and rule to its queue, in log
    /// order, as messages keeping the events' ids (so consumers' inboxes recognise events they already handled).
    /// Returns how many were sent.
    /// </summary>
    public static async Task<long> ReplayAsync(this IMessageSender broker, IEventReader store, ReplayRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();

        // Each message keeps its event's correlation and causation, also none: the caller's context (an operator's
        // request, a handler) must not stamp itself on archived events as their cause.
        using var detached = Envelopes.MessageContext.Detach();
        var sent = 0L;
        var transaction = new MessageTransaction();
        await foreach (var recorded in store.ReadAllAsync(GlobalPosition.Start, request.Filter ?? EventFilter.All, long.MaxValue, cancellationToken).ConfigureAwait(false))
        {
            if (recorded.Time < request.From)
            {
                continue;
            }

            // Commit times never decrease along the log: the first event past the range ends it.
            if (recorded.Time > request.To)
            {
                break;
            }

            var message = EventMessages.ToMessage(recorded);
            if (request.Rule is { } rule)
            {
                using var rendered = PreparedMessage.Prepare(message, new EventStoreOptions { Source = recorded.Source }).RenderDocument(recorded.Time);
                if (!rule.Matches(rendered.RootElement))
                {
                    continue;
                }
            }

            transaction.Send(request.Queue, message);
            if (transaction.Sends.Count >= request.BatchSize)
            {
                sent += (await broker.CommitAsync(transaction, cancellationToken).ConfigureAwait(false)).MessagesEnqueued;
                transaction = new MessageTransaction();
            }
        }

        if (!transaction.IsEmpty)
        {
            sent += (await broker.CommitAsync(transaction, cancellationToken).ConfigureAwait(false)).MessagesEnqueued;
        }

        return sent;
    }
}
