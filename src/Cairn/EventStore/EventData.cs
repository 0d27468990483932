using Cairn.Envelopes;

namespace Cairn.EventStore;

/// <summary>
/// An event to append: its type's stable name, its data (stored and read back byte for byte) and the envelope
/// attributes the caller chooses to set. Attributes left null are filled in at append: the source from the store's
/// options, the correlation and causation ids from <see cref="MessageContext.Current"/>, the trace context from the
/// current activity, and the time from the commit.
/// </summary>
public sealed record EventData
{
    /// <summary>The content type used when none is given.</summary>
    public const string JsonContentType = "application/json";

    /// <summary>Creates an event with a new id.</summary>
    public EventData(string type, ReadOnlyMemory<byte> data)
        : this(MessageId.New(), type, data)
    {
    }

    /// <summary>Creates an event with the given id (retrying with the same ids makes an append idempotent).</summary>
    public EventData(MessageId id, string type, ReadOnlyMemory<byte> data)
    {
        Id = id;
        Type = type;
        Data = data;
    }

    /// <summary>The CloudEvents <c>id</c>; unique across the store.</summary>
    public MessageId Id { get; init; }

    /// <summary>The CloudEvents <c>type</c>: the event type's stable name, such as <c>order.placed</c>.</summary>
    public string Type { get; init; }

    /// <summary>The event's data, stored as given.</summary>
    public ReadOnlyMemory<byte> Data { get; init; }

    /// <summary>The CloudEvents <c>datacontenttype</c>; JSON by default, in which case the data must be valid JSON.</summary>
    public string ContentType { get; init; } = JsonContentType;

    /// <summary>The CloudEvents <c>dataschema</c>: a URI naming the schema of the data, if known.</summary>
    public string? DataSchema { get; init; }

    /// <summary>The CloudEvents <c>source</c>; the store's configured source when null.</summary>
    public string? Source { get; init; }

    /// <summary>The correlation id; the current <see cref="MessageContext"/>'s, or the event's own id, when null.</summary>
    public string? CorrelationId { get; init; }

    /// <summary>The causation id; the current <see cref="MessageContext"/>'s when null.</summary>
    public string? CausationId { get; init; }

    /// <summary>The W3C trace context; the current activity's when null.</summary>
    public string? TraceParent { get; init; }

    /// <summary>Tags for dynamic consistency boundaries and queries, such as <c>course:c1</c>.</summary>
    public IReadOnlyList<string> Tags { get; init; } = [];

    /// <summary>Free user metadata.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }
}
