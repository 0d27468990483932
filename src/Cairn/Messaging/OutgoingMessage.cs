using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>
/// A message to send to a queue or publish to a topic: the same CloudEvents envelope as an event, plus how to deliver
/// it. Attributes left null are filled in when sent: the source from the options, the correlation and causation ids
/// from <see cref="MessageContext.Current"/>, the trace context from the current activity, the time from the commit.
/// </summary>
public sealed record OutgoingMessage
{
    /// <summary>Creates a message with a new id.</summary>
    public OutgoingMessage(string type, ReadOnlyMemory<byte> data)
        : this(MessageId.New(), type, data)
    {
    }

    /// <summary>Creates a message with the given id.</summary>
    public OutgoingMessage(MessageId id, string type, ReadOnlyMemory<byte> data)
    {
        Id = id;
        Type = type;
        Data = data;
    }

    /// <summary>The CloudEvents <c>id</c>; consumers' inboxes recognise a repeated message by it.</summary>
    public MessageId Id { get; init; }

    /// <summary>The CloudEvents <c>type</c>, such as <c>order.placed</c>.</summary>
    public string Type { get; init; }

    /// <summary>The message's data, delivered byte for byte.</summary>
    public ReadOnlyMemory<byte> Data { get; init; }

    /// <summary>The CloudEvents <c>datacontenttype</c>; JSON by default, in which case the data must be valid JSON.</summary>
    public string ContentType { get; init; } = EventData.JsonContentType;

    /// <summary>The CloudEvents <c>dataschema</c>, if known.</summary>
    public string? DataSchema { get; init; }

    /// <summary>The CloudEvents <c>subject</c>, such as the stream an event came from.</summary>
    public string? Subject { get; init; }

    /// <summary>The CloudEvents <c>source</c>; the configured source when null.</summary>
    public string? Source { get; init; }

    /// <summary>The correlation id; the current context's, or the message's own id, when null.</summary>
    public string? CorrelationId { get; init; }

    /// <summary>The causation id; the current context's when null.</summary>
    public string? CausationId { get; init; }

    /// <summary>The W3C trace context; the current activity's when null.</summary>
    public string? TraceParent { get; init; }

    /// <summary>Free attributes, rendered as CloudEvents extension attributes (and matched by filter rules).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>For FIFO queues: the group whose messages are delivered one at a time, in order (1 to 256 characters). Required there.</summary>
    public string? GroupKey { get; init; }

    /// <summary>A send with an id already seen within the queue's deduplication window is dropped.</summary>
    public string? DeduplicationId { get; init; }

    /// <summary>Hides the message for this long after it is sent.</summary>
    public TimeSpan? Delay { get; init; }

    /// <summary>Hides the message until this time; wins over <see cref="Delay"/>.</summary>
    public DateTimeOffset? DeliverAt { get; init; }

    /// <summary>
    /// A stored event published as it is (a route): its <see cref="DataSchema"/>, even a missing one, is what it was
    /// written with. A missing one means written before the registry (read as version 1), not "the current version"
    /// as for a message built by hand.
    /// </summary>
    internal bool IsStoredEvent { get; init; }
}
