using System.Runtime.CompilerServices;

namespace Cairn.EventStore;

/// <summary>The everyday overloads of the event store contract.</summary>
public static class EventStoreExtensions
{
    /// <summary>Appends events to one stream atomically.</summary>
    public static Task<AppendResult> AppendToStreamAsync(this IEventWriter store, StreamName stream, ExpectedVersion expectedVersion, IReadOnlyList<EventData> events, CancellationToken cancellationToken = default) =>
        store.AppendAsync(new AppendRequest(stream, expectedVersion, events), cancellationToken);

    /// <summary>Appends events to several streams in one atomic call, each with its own expected version.</summary>
    public static Task<AppendResult> AppendToStreamsAsync(this IEventWriter store, IReadOnlyList<StreamAppend> streams, CancellationToken cancellationToken = default) =>
        store.AppendAsync(new AppendRequest(streams), cancellationToken);

    /// <summary>Appends events to one stream if no event matching the condition's query was appended after its position.</summary>
    public static Task<AppendResult> AppendWithConditionAsync(this IEventWriter store, StreamName stream, IReadOnlyList<EventData> events, AppendCondition condition, CancellationToken cancellationToken = default) =>
        store.AppendAsync(new AppendRequest(stream, ExpectedVersion.Any, events, condition), cancellationToken);

    /// <summary>Reads a whole stream forwards.</summary>
    public static IAsyncEnumerable<RecordedEvent> ReadStreamAsync(this IEventReader store, StreamName stream, CancellationToken cancellationToken = default) =>
        store.ReadStreamAsync(stream, ReadDirection.Forwards, null, long.MaxValue, cancellationToken);

    /// <summary>Reads a stream backwards from its last version.</summary>
    public static IAsyncEnumerable<RecordedEvent> ReadStreamBackwardsAsync(this IEventReader store, StreamName stream, long maxCount = long.MaxValue, CancellationToken cancellationToken = default) =>
        store.ReadStreamAsync(stream, ReadDirection.Backwards, null, maxCount, cancellationToken);

    /// <summary>Reads every user event of <c>$all</c> from a position (inclusive).</summary>
    public static IAsyncEnumerable<RecordedEvent> ReadAllAsync(this IEventReader store, GlobalPosition from = default, CancellationToken cancellationToken = default) =>
        store.ReadAllAsync(from, EventFilter.All, long.MaxValue, cancellationToken);

    /// <summary>Sets a stream's metadata whatever its metadata stream's version.</summary>
    public static Task SetStreamMetadataAsync(this IStreamLifecycle store, StreamName stream, StreamMetadata metadata, CancellationToken cancellationToken = default) =>
        store.SetStreamMetadataAsync(stream, metadata, ExpectedVersion.Any, cancellationToken);

    /// <summary>The version of the stream's metadata stream (<see cref="StreamName.MetadataStream"/>), or null when its lifecycle never changed.</summary>
    public static async ValueTask<long?> GetStreamMetadataVersionAsync(this IEventReader store, StreamName stream, CancellationToken cancellationToken = default) =>
        await store.GetStreamVersionAsync(stream.MetadataStream, cancellationToken).ConfigureAwait(false);

    /// <summary>The last version of a stream with live events, or null when it has none.</summary>
    public static async ValueTask<long?> GetStreamVersionAsync(this IEventReader store, StreamName stream, CancellationToken cancellationToken = default) =>
        (await store.GetStreamInfoAsync(stream, cancellationToken).ConfigureAwait(false)).CurrentVersion;

    /// <summary>Whether a stream has live events.</summary>
    public static async ValueTask<bool> StreamExistsAsync(this IEventReader store, StreamName stream, CancellationToken cancellationToken = default) =>
        (await store.GetStreamInfoAsync(stream, cancellationToken).ConfigureAwait(false)).Exists;

    /// <summary>
    /// Reads the events after <paramref name="after"/> that pass the filter, first the history and then, without a
    /// gap, a duplicate or a reordering, every event as it is committed, until cancelled. Memory stays bounded by the
    /// page size: the next page is read only when the caller has taken the last. <paramref name="onProgress"/> hears
    /// the head of the log before each page, and whether the reader has caught up with it.
    /// </summary>
    public static async IAsyncEnumerable<RecordedEvent> SubscribeAsync(
        this IEventStore store,
        GlobalPosition after,
        EventFilter filter,
        [EnumeratorCancellation] CancellationToken cancellationToken,
        int pageSize = 512,
        Action<GlobalPosition, bool>? onProgress = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 1);
        var scanned = after;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();

            // Every event up to the head read here is committed (positions commit in order), so a short page below
            // means the scan has passed the head even when the filter skipped the events between.
            var head = await store.GetHeadPositionAsync(cancellationToken).ConfigureAwait(false);
            onProgress?.Invoke(head, false);
            var count = 0;
            await foreach (var e in store.ReadAllAsync(scanned.Next, filter, pageSize, cancellationToken).ConfigureAwait(false))
            {
                count++;
                scanned = e.Position;
                yield return e;
            }

            if (count == pageSize)
            {
                continue;
            }

            if (head > scanned)
            {
                scanned = head;
            }

            onProgress?.Invoke(head, true);
            await store.WaitForAppendAsync(scanned, cancellationToken).ConfigureAwait(false);
        }
    }
}
