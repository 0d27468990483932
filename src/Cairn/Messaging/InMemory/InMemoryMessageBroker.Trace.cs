using Cairn.Diagnostics;
using Cairn.EventStore;

namespace Cairn.Messaging.InMemory;

public sealed partial class InMemoryMessageBroker
{
    /// <inheritdoc />
    public Task<CorrelationRecords> ReadAsync(string correlationId, int limit, CancellationToken cancellationToken)
    {
        try
        {
            CorrelationTraceLimits.Validate(correlationId, limit);

            // Under the broker's lock, and the store's inside it as a commit takes them: one consistent view of the events,
            // the inbox and the queues.
            return Run(cancellationToken, _ =>
            {
                var now = Now();
                List<RecordedEvent> events;
                lock (_store.Gate)
                {
                    events = [.. _store.EventsOfCorrelationLocked(correlationId, limit + 1).Select(WithoutData)];
                }

                var handled = _inbox
                    .Where(r => r.Value.Message is { } m && m.CorrelationId == correlationId)
                    .Select(r => new InboxRecord(r.Key.Consumer, r.Key.MessageId, new DateTimeOffset(r.Value.Ticks, TimeSpan.Zero), r.Value.Message!))
                    .OrderBy(r => r.HandledAt)
                    .Take(limit + 1);
                var queued = _queues.Values
                    .SelectMany(q => q.Messages.Values.Where(m => m.Message.CorrelationId == correlationId).Select(m => Record(q, m, now)))
                    .OrderBy(r => r.Time)
                    .Take(limit + 1);
                return CorrelationRecords.Earliest(events, handled, queued, limit);
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of<CorrelationRecords>(ex);
        }
    }

    /// <summary>A trace carries envelopes, not payloads, as a backend that reads them from disk does.</summary>
    private static RecordedEvent WithoutData(RecordedEvent e) =>
        new(e.Id, e.Stream, e.Version, e.Position, e.Type, e.Source, e.Time, e.ContentType, ReadOnlyMemory<byte>.Empty)
        {
            DataSchema = e.DataSchema,
            CorrelationId = e.CorrelationId,
            CausationId = e.CausationId,
            TraceParent = e.TraceParent,
            Tags = e.Tags,
            Metadata = e.Metadata,
        };

    private static Message WithoutData(Message m) =>
        new(m.Id, m.Type, m.Source, m.Time, m.ContentType, ReadOnlyMemory<byte>.Empty)
        {
            DataSchema = m.DataSchema,
            Subject = m.Subject,
            CorrelationId = m.CorrelationId,
            CausationId = m.CausationId,
            TraceParent = m.TraceParent,
            GroupKey = m.GroupKey,
            Metadata = m.Metadata,
        };

    private static QueuedMessageRecord Record(QueueState queue, QueuedMessage message, long now) =>
        new(WithoutData(message.Message), queue.Definition.Name, message.Sequence, message switch
        {
            { IsDeadLetter: true } => QueuedMessageState.DeadLettered,
            { State: MessageState.Leased } when message.VisibleAt > now => QueuedMessageState.InFlight,
            _ => QueuedMessageState.Waiting,
        }, new DateTimeOffset(message.EnqueuedAt, TimeSpan.Zero))
        {
            ReceiveCount = message.ReceiveCount,
            Failure = message.Failure,
            DeadLetteredAt = message.DeadLetteredAt is { } dead ? new DateTimeOffset(dead, TimeSpan.Zero) : null,
            DeadLetterReason = message.DeadReason,
        };
}
