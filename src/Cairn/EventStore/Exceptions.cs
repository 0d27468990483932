namespace Cairn.EventStore;

/// <summary>The base of every error Cairn raises on purpose.</summary>
public class CairnException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CairnException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    public CairnException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>A stream name broke a rule; nothing was written.</summary>
public sealed class InvalidStreamNameException(string? name, string reason)
    : ArgumentException($"Invalid stream name '{Printable(name)}': {reason}.")
{
    /// <summary>The refused name.</summary>
    public string? StreamName { get; } = name;

    /// <summary>The rule it broke.</summary>
    public string Reason { get; } = reason;

    private static string Printable(string? name) =>
        name is null ? "(null)" :
        new string([.. (name.Length > 64 ? name[..64] + "…" : name).Select(c => char.IsControl(c) ? '?' : c)]);
}

/// <summary>An append's expected version did not match the stream; nothing was written.</summary>
public sealed class WrongExpectedVersionException(StreamName stream, ExpectedVersion expected, long? actual)
    : CairnException($"Append to '{stream}' expected version {expected}, but the stream is at {(actual is null ? "NoStream" : actual.Value.ToString(System.Globalization.CultureInfo.InvariantCulture))}.")
{
    /// <summary>The stream.</summary>
    public StreamName Stream { get; } = stream;

    /// <summary>What the append expected.</summary>
    public ExpectedVersion Expected { get; } = expected;

    /// <summary>The stream's last live version, or null when it does not exist (or is soft-deleted).</summary>
    public long? Actual { get; } = actual;
}

/// <summary>A dynamic consistency boundary condition failed: a matching event was appended after the given position.</summary>
public sealed class AppendConditionFailedException(AppendCondition condition, GlobalPosition conflictingPosition)
    : CairnException($"The append condition failed: an event matching the query was appended at position {conflictingPosition}, after {(condition.After?.ToString() ?? "the start")}.")
{
    /// <summary>The condition that failed.</summary>
    public AppendCondition Condition { get; } = condition;

    /// <summary>The position of the first matching event after the condition's position.</summary>
    public GlobalPosition ConflictingPosition { get; } = conflictingPosition;
}

/// <summary>The stream is tombstoned: it can never be read or written again.</summary>
public sealed class StreamDeletedException(StreamName stream)
    : CairnException($"The stream '{stream}' is tombstoned: it cannot be read or appended to.")
{
    /// <summary>The stream.</summary>
    public StreamName Stream { get; } = stream;
}

/// <summary>An event broke a rule of the store (its type name, content, tags or metadata); nothing was written.</summary>
public class InvalidEventException : CairnException
{
    /// <summary>Creates the exception.</summary>
    public InvalidEventException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    public InvalidEventException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>An append's events together are larger than the backend takes in one append; nothing was written.</summary>
public sealed class AppendTooLargeException(long size, long limit)
    : InvalidEventException($"The append is {size} bytes of events (data, metadata and envelopes), over the backend's limit of {limit} bytes for one append; split it into several.")
{
    /// <summary>The append's size in bytes (every event's data, metadata and envelope).</summary>
    public long Size { get; } = size;

    /// <summary>The backend's limit.</summary>
    public long Limit { get; } = limit;
}

/// <summary>An event's data is larger than the store's limit; nothing was written.</summary>
public sealed class EventTooLargeException(Envelopes.MessageId eventId, string type, long size, long limit)
    : InvalidEventException($"Event {eventId} of type '{type}' is {size} bytes, over the limit of {limit} bytes.")
{
    /// <summary>The event's id.</summary>
    public Envelopes.MessageId EventId { get; } = eventId;

    /// <summary>Its size in bytes (data, metadata and tags).</summary>
    public long Size { get; } = size;

    /// <summary>The configured limit.</summary>
    public long Limit { get; } = limit;
}

/// <summary>An event's data is not valid JSON although its content type says JSON; nothing was written.</summary>
public sealed class InvalidEventDataException(Envelopes.MessageId eventId, string type, string reason, Exception? inner)
    : InvalidEventException($"Event {eventId} of type '{type}' has content type JSON but its data is not valid JSON: {reason}", inner)
{
    /// <summary>The event's id.</summary>
    public Envelopes.MessageId EventId { get; } = eventId;
}

/// <summary>
/// An event id appears twice in one append, or was already appended in a way that is not a retry of the same
/// append; nothing was written.
/// </summary>
public sealed class DuplicateEventIdException(Envelopes.MessageId eventId, string reason)
    : InvalidEventException($"Event id {eventId} {reason}.")
{
    /// <summary>The duplicated id.</summary>
    public Envelopes.MessageId EventId { get; } = eventId;
}
