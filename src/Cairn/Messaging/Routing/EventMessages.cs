using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging.Routing;

/// <summary>Turns stored events into messages, keeping their envelope.</summary>
public static class EventMessages
{
    /// <summary>
    /// The message for an event: the same id, type, data, source, correlation, causation and trace context; the stream
    /// as subject and as FIFO group key (so a FIFO queue keeps each stream's order); the event's metadata as
    /// extension attributes, except names the envelope reserves; the global position in <c>$all</c> under <c>cairnposition</c>.
    /// </summary>
    public static OutgoingMessage ToMessage(RecordedEvent recorded)
    {
        ArgumentNullException.ThrowIfNull(recorded);
        var metadata = new Dictionary<string, string>(recorded.Metadata.Count + 2, StringComparer.Ordinal);
        foreach (var (key, value) in recorded.Metadata)
        {
            if (!PreparedMessageNames.IsReserved(key))
            {
                metadata[key] = value;
            }
        }

        metadata["cairnstream"] = recorded.Stream.Value;
        metadata["cairnposition"] = recorded.Position.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return new OutgoingMessage(recorded.Id, recorded.Type, recorded.Data)
        {
            ContentType = recorded.ContentType,
            DataSchema = recorded.DataSchema,

            // One stored without a dataschema was written before the registry knew its type and reads as version 1, as
            // its message does: the send leaves it so, rather than stamping it as the current version, which it is not.
            IsStoredEvent = true,
            Subject = recorded.Stream.Value,
            Source = recorded.Source,
            CorrelationId = recorded.CorrelationId,
            CausationId = recorded.CausationId,
            // An event stored before traceparents were checked may hold one in no W3C form: not passed on.
            TraceParent = TraceParentText.IsValid(recorded.TraceParent) ? recorded.TraceParent : null,
            Metadata = metadata,
            GroupKey = recorded.Stream.Value,
        };
    }
}
