using Cairn.Envelopes;

namespace Cairn.EventStore;

/// <summary>
/// A stored event with its whole envelope: the CloudEvents 1.0 attributes (<c>id</c>, <c>source</c>, <c>type</c>,
/// <c>time</c>, <c>subject</c>, <c>datacontenttype</c>, <c>dataschema</c>), the extensions <c>correlationid</c>,
/// <c>causationid</c> and <c>traceparent</c>, and Cairn's own stream, version and global position.
/// </summary>
public sealed class RecordedEvent
{
    private static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();
    private string? _correlationId;

    /// <summary>Creates a recorded event; backends call this when they read.</summary>
    public RecordedEvent(
        MessageId id,
        StreamName stream,
        long version,
        GlobalPosition position,
        string type,
        string source,
        DateTimeOffset time,
        string contentType,
        ReadOnlyMemory<byte> data)
    {
        Id = id;
        Stream = stream;
        Version = version;
        Position = position;
        Type = type;
        Source = source;
        Time = time;
        ContentType = contentType;
        Data = data;
    }

    /// <summary>The CloudEvents <c>id</c>.</summary>
    public MessageId Id { get; }

    /// <summary>The stream the event belongs to.</summary>
    public StreamName Stream { get; }

    /// <summary>The CloudEvents <c>subject</c>: the stream's name.</summary>
    public string Subject => Stream.Value;

    /// <summary>The event's version in its stream, gap-free from 0.</summary>
    public long Version { get; }

    /// <summary>The event's position in <c>$all</c>.</summary>
    public GlobalPosition Position { get; }

    /// <summary>The CloudEvents <c>type</c>: the stable name of the event's type.</summary>
    public string Type { get; }

    /// <summary>The CloudEvents <c>source</c>.</summary>
    public string Source { get; }

    /// <summary>The CloudEvents <c>time</c>: when the event was committed, unless the writer said otherwise.</summary>
    public DateTimeOffset Time { get; }

    /// <summary>The CloudEvents <c>datacontenttype</c>.</summary>
    public string ContentType { get; }

    /// <summary>The event's data, byte for byte as appended.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>The CloudEvents <c>dataschema</c>, if any.</summary>
    public string? DataSchema { get; init; }

    /// <summary>The correlation id; the event's own id when it started a flow of its own.</summary>
    [System.Diagnostics.CodeAnalysis.AllowNull]
    public string CorrelationId
    {
        // Backends may store nothing when the correlation is the event's own id; the string is made on demand.
        get => _correlationId ??= Id.ToString();
        init => _correlationId = value;
    }

    /// <summary>The causation id: the id of the message whose handling produced this event.</summary>
    public string? CausationId { get; init; }

    /// <summary>The W3C trace context of the append.</summary>
    public string? TraceParent { get; init; }

    /// <summary>The event's tags.</summary>
    public IReadOnlyList<string> Tags { get; init; } = [];

    /// <summary>Free user metadata.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = NoMetadata;

    /// <summary>
    /// About how much memory the event's data and metadata hold (metadata as .NET strings, two bytes a character): what
    /// a read counts against its page's byte cap, since metadata counts against an event's size as its data does.
    /// </summary>
    internal long HeldBytes
    {
        get
        {
            long bytes = Data.Length;
            foreach (var (key, value) in Metadata)
            {
                bytes += 2L * (key.Length + value.Length);
            }

            return bytes;
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Stream}@{Version} #{Position} {Type}";
}
