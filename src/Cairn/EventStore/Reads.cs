namespace Cairn.EventStore;

/// <summary>The direction of a stream read.</summary>
public enum ReadDirection
{
    /// <summary>From older to newer versions.</summary>
    Forwards,

    /// <summary>From newer to older versions.</summary>
    Backwards,
}

/// <summary>The rule every backend applies to a read's direction.</summary>
internal static class ReadDirections
{
    /// <summary>Refuses a value that is neither direction, which a backend would otherwise read one way or the other.</summary>
    public static void Validate(ReadDirection direction)
    {
        if (direction is not (ReadDirection.Forwards or ReadDirection.Backwards))
        {
            throw new ArgumentOutOfRangeException(nameof(direction), direction, "A read's direction must be Forwards or Backwards.");
        }
    }
}

/// <summary>The rule every backend applies to the arguments of a <c>$all</c> or query read.</summary>
internal static class ReadArguments
{
    /// <summary>
    /// What such a read refuses, as it is enumerated: a null filter or query (<paramref name="name"/>), or a negative
    /// count; null when there is nothing to refuse.
    /// </summary>
    public static Exception? Refusal(object? filterOrQuery, string name, long maxCount) =>
        filterOrQuery is null ? new ArgumentNullException(name)
        : maxCount < 0 ? new ArgumentOutOfRangeException(nameof(maxCount), maxCount, "The count must not be negative.")
        : null;
}

/// <summary>Which events of <c>$all</c> a read or subscription sees.</summary>
public sealed record EventFilter
{
    private EventFilter(string? stream, string? category, IReadOnlyList<string>? eventTypes, bool includeSystem)
    {
        Stream = stream;
        Category = category;
        EventTypes = eventTypes;
        IncludeSystemEvents = includeSystem;
    }

    /// <summary>Only the events of this stream, if set.</summary>
    public string? Stream { get; }

    /// <summary>Only the events of streams in this category, if set.</summary>
    public string? Category { get; }

    /// <summary>Only events of these types, if set.</summary>
    public IReadOnlyList<string>? EventTypes { get; }

    /// <summary>Whether Cairn's own events (streams whose names start with <c>$</c>) are included.</summary>
    public bool IncludeSystemEvents { get; }

    /// <summary>Every user event.</summary>
    public static EventFilter All { get; } = new(null, null, null, false);

    /// <summary>Every event, Cairn's own stream lifecycle records included.</summary>
    public static EventFilter AllWithSystemEvents { get; } = new(null, null, null, true);

    /// <summary>The events of one stream.</summary>
    public static EventFilter ForStream(StreamName stream) => new(stream.Value, null, null, stream.IsSystem);

    /// <summary>The events of every stream in a category (the part of the name before the first <c>-</c>).</summary>
    public static EventFilter ForCategory(string category)
    {
        if (string.IsNullOrEmpty(category) || category.Contains('-', StringComparison.Ordinal) || Envelopes.StoredText.Refuses(category))
        {
            throw new ArgumentException($"'{category}' is not a category: it must be non-empty and contain no '-', {Envelopes.StoredText.Refused}.", nameof(category));
        }

        return new(null, category, null, category[0] == '$');
    }

    /// <summary>The events of the given types.</summary>
    public static EventFilter ForEventTypes(params string[] eventTypes)
    {
        if (eventTypes is null || eventTypes.Length == 0)
        {
            throw new ArgumentException("Name at least one event type.", nameof(eventTypes));
        }

        return new(null, null, CheckedTypes(eventTypes), false);
    }

    /// <summary>Narrows this filter to the given event types.</summary>
    public EventFilter WithEventTypes(params string[] eventTypes) => new(Stream, Category, CheckedTypes(eventTypes), IncludeSystemEvents);

    /// <summary>
    /// A copy of the types, each checked as appends check them: a backend would otherwise compare a name no event can
    /// have its own way (PostgreSQL refuses a NUL with a raw error, and a subscription would fail for ever).
    /// </summary>
    private static string[] CheckedTypes(string[] eventTypes)
    {
        ArgumentNullException.ThrowIfNull(eventTypes);
        foreach (var type in eventTypes)
        {
            if (EventTypeNames.Validate(type) is { } why)
            {
                throw new ArgumentException($"The filter names the event type '{type}': {why}.", nameof(eventTypes));
            }
        }

        return [.. eventTypes];
    }

    /// <summary>Whether an event passes the filter.</summary>
    public bool Matches(RecordedEvent e)
    {
        if (!IncludeSystemEvents && e.Stream.IsSystem)
        {
            return false;
        }

        if (Stream is not null && e.Stream.Value != Stream)
        {
            return false;
        }

        if (Category is not null && e.Stream.Category != Category)
        {
            return false;
        }

        return EventTypes is null || EventTypes.Contains(e.Type);
    }

    /// <inheritdoc />
    public override string ToString() =>
        Stream is not null ? $"stream {Stream}" :
        Category is not null ? $"category {Category}" :
        EventTypes is not null ? $"types {string.Join(",", EventTypes)}" :
        IncludeSystemEvents ? "$all (with system events)" : "$all";
}

/// <summary>
/// A stream's lifecycle settings. Reads of the stream hide events older than <see cref="MaxAge"/>, all but the last
/// <see cref="MaxCount"/>, and those before <see cref="TruncateBefore"/>. The events stay in <c>$all</c>: the log is
/// the truth, and subscriptions still see them.
/// </summary>
public sealed record StreamMetadata
{
    /// <summary>Keep at most this many of the newest events visible in stream reads.</summary>
    public long? MaxCount { get; init; }

    /// <summary>Hide events older than this from stream reads.</summary>
    public TimeSpan? MaxAge { get; init; }

    /// <summary>Hide versions below this from stream reads. It only moves forward: a lower value is kept at the old one.</summary>
    public long? TruncateBefore { get; init; }

    /// <summary>Refuses impossible settings with <see cref="ArgumentOutOfRangeException"/>.</summary>
    public void Validate()
    {
        if (MaxCount is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxCount), MaxCount, "MaxCount must be 1 or more.");
        }

        if (MaxAge is { } age && age <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAge), MaxAge, "MaxAge must be positive.");
        }

        if (TruncateBefore is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TruncateBefore), TruncateBefore, "TruncateBefore must be 0 or more.");
        }
    }
}

/// <summary>The lifecycle state of a stream.</summary>
public enum StreamState
{
    /// <summary>No event was ever appended.</summary>
    NotFound,

    /// <summary>The stream has events and accepts appends.</summary>
    Active,

    /// <summary>Soft-deleted: reads see nothing; a new append starts it again after its old last version.</summary>
    SoftDeleted,

    /// <summary>Tombstoned: deleted for good; reads fail and appends are refused.</summary>
    Tombstoned,
}

/// <summary>What the store knows of a stream.</summary>
/// <param name="Stream">The stream.</param>
/// <param name="State">Its lifecycle state.</param>
/// <param name="LastVersion">The version of its last event ever appended, or null when none was.</param>
/// <param name="Metadata">Its lifecycle settings.</param>
public sealed record StreamInfo(StreamName Stream, StreamState State, long? LastVersion, StreamMetadata Metadata)
{
    /// <summary>True when the stream has live events (it exists and is not deleted).</summary>
    public bool Exists => State == StreamState.Active;

    /// <summary>The version an append with an exact expectation must name: the last version when the stream exists.</summary>
    public long? CurrentVersion => Exists ? LastVersion : null;
}
