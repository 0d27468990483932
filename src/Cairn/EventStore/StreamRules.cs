using System.Text.Json;
using System.Text.Json.Serialization;
using Cairn.Envelopes;

namespace Cairn.EventStore;

/// <summary>
/// The rules every backend applies inside its write transaction, in one place so they cannot drift apart:
/// expected versions, tombstones, idempotent retries, read visibility and lifecycle records.
/// </summary>
internal static class StreamRules
{
    /// <summary>The event type of a lifecycle record in a <c>$$</c> metadata stream.</summary>
    public const string MetadataEventType = "$metadata";

    /// <summary>
    /// Checks an expectation against a stream's state and returns the version of the first event to write.
    /// </summary>
    public static long NextVersion(StreamName stream, ExpectedVersion expected, StreamState state, long? lastVersion)
    {
        if (state == StreamState.Tombstoned)
        {
            throw new StreamDeletedException(stream);
        }

        var live = state == StreamState.Active ? lastVersion : null;
        if (!expected.IsSatisfiedBy(live))
        {
            throw new WrongExpectedVersionException(stream, expected, live);
        }

        return (lastVersion ?? -1) + 1;
    }

    /// <summary>Where an already stored event id is.</summary>
    public readonly record struct StoredId(string Stream, long Version, long Position);

    /// <summary>
    /// Whether an append may be a retry: a retry repeats its parts' first ids, so only then is the full check of
    /// <see cref="CheckRetry"/> worth its look-ups. Otherwise a stored id is refused when the event is written.
    /// </summary>
    public static bool MayBeRetry(PreparedAppend append, Func<MessageId, StoredId?> lookup)
    {
        foreach (var part in append.Streams)
        {
            if (lookup(part.Events[0].Id) is not null)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Decides whether an append whose ids were already stored is a retry of that same append. Returns null when no
    /// id is stored; the first result when every id is stored as this request wrote it; and otherwise throws
    /// <see cref="DuplicateEventIdException"/>.
    /// </summary>
    public static AppendResult? CheckRetry(PreparedAppend append, Func<MessageId, StoredId?> lookup)
    {
        var results = new StreamAppendResult[append.Streams.Count];
        long first = long.MaxValue, last = 0;
        var seen = 0;
        var missing = 0;
        for (var s = 0; s < append.Streams.Count; s++)
        {
            var part = append.Streams[s];
            long firstVersion = 0;
            for (var i = 0; i < part.Events.Count; i++)
            {
                var id = part.Events[i].Id;
                if (lookup(id) is not { } stored)
                {
                    missing++;
                    continue;
                }

                seen++;
                if (stored.Stream != part.Stream.Value)
                {
                    throw new DuplicateEventIdException(id, $"was already appended to the stream '{stored.Stream}'");
                }

                if (i == 0)
                {
                    firstVersion = stored.Version;
                }
                else if (stored.Version != firstVersion + i)
                {
                    throw new DuplicateEventIdException(id, $"was already appended to '{stored.Stream}' at version {stored.Version}, not as part of this same append");
                }

                first = Math.Min(first, stored.Position);
                last = Math.Max(last, stored.Position);
            }

            results[s] = new StreamAppendResult(part.Stream, firstVersion, firstVersion + part.Events.Count - 1);
            if (seen > 0 && missing > 0)
            {
                break;
            }
        }

        if (seen == 0)
        {
            return null;
        }

        if (missing > 0)
        {
            throw new DuplicateEventIdException(FirstStored(append, lookup), "was already appended, but other events of this append were not: this is not a retry of the same append");
        }

        return new AppendResult(results, new GlobalPosition(first), new GlobalPosition(last), WasDuplicate: true);
    }

    private static MessageId FirstStored(PreparedAppend append, Func<MessageId, StoredId?> lookup) =>
        append.Streams.SelectMany(s => s.Events).First(e => lookup(e.Id) is not null).Id;

    /// <summary>
    /// The lowest version a stream read shows, given its metadata and last version. Events below it are hidden.
    /// </summary>
    public static long FirstVisibleVersion(StreamMetadata metadata, long? lastVersion)
    {
        var first = metadata.TruncateBefore ?? 0;
        if (metadata.MaxCount is { } maxCount && lastVersion is { } lv)
        {
            first = Math.Max(first, lv + 1 - maxCount);
        }

        return first;
    }

    /// <summary>
    /// The oldest commit time a stream read shows, or null when the stream has no max age, or one reaching back past
    /// the earliest time there is (<see cref="TimeSpan.MaxValue"/> for "forever"), which hides nothing.
    /// </summary>
    public static DateTimeOffset? OldestVisibleTime(StreamMetadata metadata, TimeProvider clock)
    {
        if (metadata.MaxAge is not { } age)
        {
            return null;
        }

        var now = clock.GetUtcNow();
        return age < now - DateTimeOffset.MinValue ? now - age : null;
    }

    /// <summary>
    /// Refuses a lifecycle change whose expectation of the stream's metadata stream does not hold, with
    /// <see cref="WrongExpectedVersionException"/> naming the metadata stream. Its last version is looked up only when
    /// there is an expectation to check.
    /// </summary>
    public static void CheckMetadataVersion(StreamName stream, ExpectedVersion expected, Func<long?> lastVersion)
    {
        if (expected == ExpectedVersion.Any)
        {
            return;
        }

        var last = lastVersion();
        if (!expected.IsSatisfiedBy(last))
        {
            throw new WrongExpectedVersionException(stream.MetadataStream, expected, last);
        }
    }

    /// <summary>The lifecycle record appended to the metadata stream when a stream's state or metadata changes.</summary>
    public static EventData LifecycleRecord(StreamName stream, StreamState state, StreamMetadata metadata)
    {
        var record = new LifecycleRecordData(stream.Value, state.ToString(), metadata.MaxCount, metadata.MaxAge?.TotalSeconds, metadata.TruncateBefore);
        return new EventData(MetadataEventType, JsonSerializer.SerializeToUtf8Bytes(record, CairnJsonContext.Default.LifecycleRecordData));
    }

    /// <summary>Refuses the metadata a change to a stream's metadata sets, when it is missing or out of range.</summary>
    public static void CheckLifecycleMetadata(LifecycleChange change, StreamMetadata? metadata)
    {
        if (change == LifecycleChange.SetMetadata)
        {
            ArgumentNullException.ThrowIfNull(metadata);
            metadata.Validate();
        }
    }

    /// <summary>
    /// A stream's state and metadata after a lifecycle change, or null when the change changes nothing (deleting a
    /// stream that never existed). The expected version is checked first.
    /// </summary>
    public static (StreamState State, StreamMetadata Metadata)? ApplyLifecycle(
        StreamName stream, ExpectedVersion expected, LifecycleChange change, StreamState state, long? lastVersion, StreamMetadata current, StreamMetadata? requested)
    {
        if (stream.IsSystem)
        {
            throw new InvalidStreamNameException(stream.Value, "the lifecycle of Cairn's own streams cannot be changed");
        }

        NextVersion(stream, expected, state, lastVersion);
        (StreamState State, StreamMetadata Metadata) next = change switch
        {
            LifecycleChange.SetMetadata => (state, KeepTruncation(current, requested ?? throw new ArgumentNullException(nameof(requested)))),
            LifecycleChange.SoftDelete when state is StreamState.NotFound or StreamState.SoftDeleted => (state, current),
            LifecycleChange.SoftDelete => (StreamState.SoftDeleted, current with { TruncateBefore = Math.Max((lastVersion ?? -1) + 1, current.TruncateBefore ?? 0) }),
            LifecycleChange.Tombstone => (StreamState.Tombstoned, current),
            _ => throw new ArgumentOutOfRangeException(nameof(change)),
        };
        return next.State == state && next.Metadata == current ? null : next;
    }

    /// <summary>
    /// Truncation only moves forward: new metadata cannot bring back events hidden by an earlier truncation or a soft
    /// delete.
    /// </summary>
    private static StreamMetadata KeepTruncation(StreamMetadata current, StreamMetadata requested) =>
        current.TruncateBefore is { } hidden && (requested.TruncateBefore ?? 0) < hidden ? requested with { TruncateBefore = hidden } : requested;

    /// <summary>A change of a stream's lifecycle.</summary>
    internal enum LifecycleChange
    {
        SetMetadata,
        SoftDelete,
        Tombstone,
    }

    /// <summary>The lifecycle record's JSON shape.</summary>
    internal sealed record LifecycleRecordData(
        [property: JsonPropertyName("stream")] string Stream,
        [property: JsonPropertyName("state")] string State,
        [property: JsonPropertyName("maxCount")] long? MaxCount,
        [property: JsonPropertyName("maxAgeSeconds")] double? MaxAgeSeconds,
        [property: JsonPropertyName("truncateBefore")] long? TruncateBefore);
}
