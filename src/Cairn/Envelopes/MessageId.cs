namespace Cairn.Envelopes;

/// <summary>
/// The unique id of an event or message (the CloudEvents <c>id</c>). New ids are version 7 GUIDs, so they sort
/// roughly by creation time and index well.
/// </summary>
public readonly record struct MessageId
{
    /// <summary>Wraps a GUID, refusing the empty one.</summary>
    public MessageId(Guid value)
    {
        if (value == Guid.Empty)
        {
            throw new ArgumentException("A message id cannot be the empty GUID.", nameof(value));
        }

        Value = value;
    }

    /// <summary>The id as a GUID.</summary>
    public Guid Value { get; }

    /// <summary>A new, time-ordered id.</summary>
    public static MessageId New() => new(Guid.CreateVersion7());

    /// <summary>Parses an id in any of the GUID formats.</summary>
    public static MessageId Parse(string value) => new(Guid.Parse(value));

    /// <inheritdoc />
    public override string ToString() => Value.ToString("D");

    /// <summary>Wraps a GUID.</summary>
    public static implicit operator MessageId(Guid value) => new(value);
}
