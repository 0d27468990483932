using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>
/// What an inbox record keeps of the message it records besides its id: the queue it came from, its type, correlation
/// and causation. The message leaves its queue when it is acknowledged; this is what a correlation trace still knows of
/// it afterwards.
/// </summary>
/// <param name="Queue">The queue it was received from.</param>
/// <param name="Type">Its CloudEvents <c>type</c>.</param>
/// <param name="CorrelationId">Its correlation id (its own id when it started a flow).</param>
/// <param name="CausationId">The id of the message or event whose handling sent it, if any.</param>
public sealed record HandledMessage(QueueName Queue, string Type, string CorrelationId, string? CausationId)
{
    /// <summary>What a delivery's inbox record keeps.</summary>
    public static HandledMessage From(Delivery delivery)
    {
        ArgumentNullException.ThrowIfNull(delivery);
        return new HandledMessage(delivery.Queue, delivery.Message.Type, delivery.Message.CorrelationId, delivery.Message.CausationId);
    }

    /// <summary>Refuses what no stored message could carry: names as the envelope's own rules.</summary>
    internal void Validate()
    {
        if (Queue == default)
        {
            throw new InvalidMessageException("An inbox record names no queue.");
        }

        if (EventTypeNames.Validate(Type) is { } fault)
        {
            throw new InvalidMessageException($"An inbox record has an invalid message type '{Type}': {fault}.");
        }

        Attribute(nameof(CorrelationId), CorrelationId);
        if (CausationId is not null)
        {
            Attribute(nameof(CausationId), CausationId);
        }
    }

    private static void Attribute(string name, string? value)
    {
        if (value is null || value.Length is 0 or > 256 || StoredText.Refuses(value))
        {
            throw new InvalidMessageException($"An inbox record has an invalid {name}: it is 1 to 256 characters with no {StoredText.Refused}.");
        }
    }
}
