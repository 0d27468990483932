using Cairn.Envelopes;

namespace Cairn.Messaging;

/// <summary>A message as stored in a queue: its full envelope and data.</summary>
public sealed class Message
{
    internal static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();
    private string? _correlationId;

    /// <summary>Creates a message; backends call this when they read.</summary>
    public Message(MessageId id, string type, string source, DateTimeOffset time, string contentType, ReadOnlyMemory<byte> data)
    {
        Id = id;
        Type = type;
        Source = source;
        Time = time;
        ContentType = contentType;
        Data = data;
    }

    /// <summary>The CloudEvents <c>id</c>.</summary>
    public MessageId Id { get; }

    /// <summary>The CloudEvents <c>type</c>.</summary>
    public string Type { get; }

    /// <summary>The CloudEvents <c>source</c>.</summary>
    public string Source { get; }

    /// <summary>The CloudEvents <c>time</c>: when the message was sent (committed).</summary>
    public DateTimeOffset Time { get; }

    /// <summary>The CloudEvents <c>datacontenttype</c>.</summary>
    public string ContentType { get; }

    /// <summary>The data, byte for byte as sent.</summary>
    public ReadOnlyMemory<byte> Data { get; }

    /// <summary>The CloudEvents <c>dataschema</c>, if any.</summary>
    public string? DataSchema { get; init; }

    /// <summary>The CloudEvents <c>subject</c>, if any.</summary>
    public string? Subject { get; init; }

    /// <summary>The correlation id; the message's own id when it started a flow of its own.</summary>
    [System.Diagnostics.CodeAnalysis.AllowNull]
    public string CorrelationId
    {
        get => _correlationId ??= Id.ToString();
        init => _correlationId = value;
    }

    /// <summary>The id of the message whose handling sent this one, if any.</summary>
    public string? CausationId { get; init; }

    /// <summary>The W3C trace context of the sender.</summary>
    public string? TraceParent { get; init; }

    /// <summary>Extension attributes.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = NoMetadata;

    /// <summary>The FIFO group, if any.</summary>
    public string? GroupKey { get; init; }

    /// <inheritdoc />
    public override string ToString() => $"{Id} {Type}";
}

/// <summary>
/// Proof of one delivery of one message: acknowledging, releasing or extending needs it, and it stops working the moment
/// the message is delivered again, so a consumer that lost its lease cannot settle what another now holds.
/// </summary>
public readonly record struct LeaseToken(QueueName Queue, long Sequence, long Delivery)
{
    /// <inheritdoc />
    public override string ToString() => $"{Queue}/{Sequence}/{Delivery}";

    /// <summary>Parses the form <see cref="ToString"/> writes.</summary>
    public static LeaseToken Parse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var parts = value.Split('/');
        if (parts.Length != 3 || !long.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var sequence)
            || !long.TryParse(parts[2], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var delivery))
        {
            throw new FormatException($"'{value}' is not a lease token (queue/sequence/delivery).");
        }

        return new LeaseToken(new QueueName(parts[0]), sequence, delivery);
    }
}

/// <summary>A message received from a queue, leased to the receiver until <see cref="LeaseExpiresAt"/>.</summary>
public sealed class Delivery(Message message, LeaseToken lease)
{
    /// <summary>The message.</summary>
    public Message Message { get; } = message;

    /// <summary>The lease this delivery holds.</summary>
    public LeaseToken Lease { get; } = lease;

    /// <summary>The queue it came from.</summary>
    public QueueName Queue => Lease.Queue;

    /// <summary>How many times the message has been received, this time included (reset by a redrive).</summary>
    public int ReceiveCount { get; init; }

    /// <summary>When the message was first received.</summary>
    public DateTimeOffset FirstReceivedAt { get; init; }

    /// <summary>When the message entered the queue.</summary>
    public DateTimeOffset EnqueuedAt { get; init; }

    /// <summary>When the lease runs out and the message becomes visible again.</summary>
    public DateTimeOffset LeaseExpiresAt { get; init; }

    /// <summary>True when the previous delivery's lease ran out without a settlement.</summary>
    public bool PreviousLeaseExpired { get; init; }

    /// <summary>The failure recorded by the last release, if any.</summary>
    public FailureInfo? LastFailure { get; init; }

    /// <summary>How many times the message was redriven from dead letters; 0 for one never dead-lettered.</summary>
    public int Redrives { get; init; }

    /// <inheritdoc />
    public override string ToString() => $"{Message} from {Queue} (receive {ReceiveCount})";
}
