using Cairn.Envelopes;

namespace Cairn.EventStore;

/// <summary>Events to append to one stream, with what the append expects of that stream.</summary>
/// <param name="Stream">The stream written to.</param>
/// <param name="ExpectedVersion">What the stream's state must be for the append to land.</param>
/// <param name="Events">The events, at least one.</param>
public sealed record StreamAppend(StreamName Stream, ExpectedVersion ExpectedVersion, IReadOnlyList<EventData> Events);

/// <summary>
/// One atomic append: events to one or more streams, each with its own expected version, and optionally a dynamic
/// consistency boundary condition. All of it lands, or none of it.
/// </summary>
public sealed record AppendRequest
{
    /// <summary>Creates a request for the given streams.</summary>
    public AppendRequest(IReadOnlyList<StreamAppend> streams, AppendCondition? condition = null)
    {
        Streams = streams;
        Condition = condition;
    }

    /// <summary>Creates a request for one stream.</summary>
    public AppendRequest(StreamName stream, ExpectedVersion expectedVersion, IReadOnlyList<EventData> events, AppendCondition? condition = null)
        : this([new StreamAppend(stream, expectedVersion, events)], condition)
    {
    }

    /// <summary>The streams written, each at most once.</summary>
    public IReadOnlyList<StreamAppend> Streams { get; }

    /// <summary>The dynamic consistency boundary condition, if any.</summary>
    public AppendCondition? Condition { get; }

    /// <summary>The number of events in the request.</summary>
    public int EventCount
    {
        get
        {
            var count = 0;
            foreach (var s in Streams)
            {
                count += s.Events.Count;
            }

            return count;
        }
    }
}

/// <summary>What an append wrote to one stream.</summary>
/// <param name="Stream">The stream.</param>
/// <param name="FirstVersion">The version of the first event written.</param>
/// <param name="LastVersion">The version of the last event written: the expected version for the next append.</param>
public sealed record StreamAppendResult(StreamName Stream, long FirstVersion, long LastVersion);

/// <summary>The outcome of an append.</summary>
/// <param name="Streams">Per stream, the versions written, in the order of the request.</param>
/// <param name="FirstPosition">The global position of the first event written.</param>
/// <param name="LastPosition">The global position of the last event written; wait for a projection to reach it to read your writes.</param>
/// <param name="WasDuplicate">True when the same event ids had already been appended: the first result is returned and nothing is written again.</param>
public sealed record AppendResult(
    IReadOnlyList<StreamAppendResult> Streams,
    GlobalPosition FirstPosition,
    GlobalPosition LastPosition,
    bool WasDuplicate)
{
    /// <summary>The last version written to the (first) stream: the expected version for its next append.</summary>
    public long NextExpectedVersion => Streams[0].LastVersion;
}

/// <summary>
/// A dynamic consistency boundary condition (dcb.events): the append fails with
/// <see cref="AppendConditionFailedException"/> if any user event (Cairn's own are never matched) matching <see cref="FailIfEventsMatch"/> was appended
/// after <see cref="After"/> (or at all, when <see cref="After"/> is null).
/// </summary>
/// <param name="FailIfEventsMatch">The query whose matches, after the position, fail the append.</param>
/// <param name="After">The position up to which the caller has seen the query's events; null for none.</param>
public sealed record AppendCondition(EventQuery FailIfEventsMatch, GlobalPosition? After)
{
    private readonly EventQuery _failIfEventsMatch = FailIfEventsMatch ?? throw NoQuery();

    /// <summary>The query whose matching events fail the append; refused when null, as a caller's mistake (in a <c>with</c> too).</summary>
    public EventQuery FailIfEventsMatch
    {
        get => _failIfEventsMatch;
        init => _failIfEventsMatch = value ?? throw NoQuery();
    }

    private static ArgumentNullException NoQuery() => new(nameof(FailIfEventsMatch), "An append condition needs a query (EventQuery.All for every event).");
}

/// <summary>
/// A query over events by type and tag: an event matches when it matches any of the items. An empty query matches
/// every event.
/// </summary>
public sealed record EventQuery
{
    /// <summary>
    /// The most types and tags a query names, its items' together: what every backend answers in one statement
    /// (SQLite binds at most 32,766 values to one, PostgreSQL 65,535, and a query binds at most two per name).
    /// </summary>
    public const int MaxNames = 30_000;

    /// <summary>Creates a query of the given items.</summary>
    /// <exception cref="ArgumentNullException">The list, or one of its items, is null.</exception>
    /// <exception cref="ArgumentException">The items name more than <see cref="MaxNames"/> types and tags together.</exception>
    public EventQuery(params IReadOnlyList<EventQueryItem> items)
    {
        ArgumentNullException.ThrowIfNull(items);

        // A copy: a list the caller changes afterwards (cleared, grown) must not change a condition already made.
        items = [.. items];
        long names = 0;
        for (var i = 0; i < items.Count; i++)
        {
            if (items[i] is null)
            {
                throw new ArgumentNullException(nameof(items), $"Item {i} of the query is null.");
            }

            names += items[i].Types.Count + items[i].Tags.Count;
        }

        if (names > MaxNames)
        {
            throw new ArgumentException($"The query names {names:N0} types and tags in its {items.Count:N0} items; at most {MaxNames:N0} (EventQuery.MaxNames) are answered in one statement by every backend. Split the decision, or read by a coarser tag.", nameof(items));
        }

        Items = items;
    }

    /// <summary>The items; an event matches if it matches any.</summary>
    public IReadOnlyList<EventQueryItem> Items { get; }

    /// <summary>The query matching every event.</summary>
    public static EventQuery All { get; } = new();

    /// <summary>True when the query matches every event.</summary>
    public bool MatchesAll => Items.Count == 0;

    /// <summary>Whether an event of the given type and tags matches.</summary>
    public bool Matches(string type, IReadOnlyList<string> tags)
    {
        if (MatchesAll)
        {
            return true;
        }

        foreach (var item in Items)
        {
            if (item.Matches(type, tags))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// One item of an <see cref="EventQuery"/>: an event matches when its type is one of <see cref="Types"/> (or
/// <see cref="Types"/> is empty) and it carries every tag of <see cref="Tags"/>. An item must name at least one type
/// or tag.
/// </summary>
public sealed record EventQueryItem
{
    /// <summary>Creates an item, refusing one that names neither types nor tags.</summary>
    public EventQueryItem(IReadOnlyList<string>? types = null, IReadOnlyList<string>? tags = null)
    {
        // Copied: an item is a value, and a caller's list changed later must not change it.
        Types = types is null ? [] : [.. types];
        Tags = tags is null ? [] : [.. tags];
        if (Types.Count == 0 && Tags.Count == 0)
        {
            throw new ArgumentException("A query item must name at least one event type or tag.", nameof(types));
        }

        // Checked as appends check them: a backend would otherwise store or compare such a name its own way (SQLite
        // turned an unpaired surrogate into U+FFFD and matched another type; PostgreSQL refused a NUL with a raw error).
        foreach (var type in Types)
        {
            if (EventTypeNames.Validate(type) is { } why)
            {
                throw new InvalidEventException($"The query names the event type '{type}': {why}.");
            }
        }

        foreach (var tag in Tags)
        {
            EventTags.Validate(tag);
        }
    }

    /// <summary>The event types, any of which matches; empty for any type.</summary>
    public IReadOnlyList<string> Types { get; }

    /// <summary>The tags, all of which an event must carry.</summary>
    public IReadOnlyList<string> Tags { get; }

    /// <summary>An item matching events of the given types.</summary>
    public static EventQueryItem OfTypes(params string[] types) => new(types);

    /// <summary>An item matching events carrying all the given tags.</summary>
    public static EventQueryItem WithTags(params string[] tags) => new(null, tags);

    /// <summary>Whether an event of the given type and tags matches.</summary>
    public bool Matches(string type, IReadOnlyList<string> tags)
    {
        if (Types.Count > 0 && !Types.Contains(type))
        {
            return false;
        }

        foreach (var tag in Tags)
        {
            if (!tags.Contains(tag))
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>Rules for event tags.</summary>
public static class EventTags
{
    /// <summary>The longest tag accepted.</summary>
    public const int MaxLength = 256;

    /// <summary>Refuses an empty, over-long or control-character tag with <see cref="InvalidEventException"/>.</summary>
    public static void Validate(string tag)
    {
        if (string.IsNullOrEmpty(tag) || tag.Length > MaxLength || StoredText.Refuses(tag))
        {
            throw new InvalidEventException($"The tag '{tag}' is invalid: a tag is 1 to {MaxLength} characters with no {StoredText.Refused}.");
        }
    }
}
