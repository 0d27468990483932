namespace Cairn.EventStore;

/// <summary>Reads streams, <c>$all</c> and tag queries.</summary>
public interface IEventReader
{
    /// <summary>
    /// Reads a stream from <paramref name="fromVersion"/> (inclusive; null for the start in the direction of reading),
    /// at most <paramref name="maxCount"/> events. A stream that does not exist or is soft-deleted yields nothing; a
    /// tombstoned one fails with <see cref="StreamDeletedException"/>. The stream's metadata (max count, max age,
    /// truncate-before) hides older events.
    /// </summary>
    IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, CancellationToken cancellationToken);

    /// <summary>Reads <c>$all</c> forwards from <paramref name="from"/> (inclusive), through a filter, at most <paramref name="maxCount"/> events.</summary>
    IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken);

    /// <summary>Reads, in position order, the events after <paramref name="after"/> that match a tag and type query.</summary>
    IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken);

    /// <summary>What the store knows of a stream: its state, last version and metadata.</summary>
    ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken);

    /// <summary>The position of the last committed event, or <see cref="GlobalPosition.Start"/> when the log is empty.</summary>
    ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken);
}

/// <summary>Appends events atomically.</summary>
public interface IEventWriter
{
    /// <summary>
    /// Appends the request's events atomically: every stream's expected version and the condition hold, and all
    /// events land, or none do. A retry of an append that succeeded (the same event ids) returns the first result and
    /// writes nothing. Cancellation before the append is committed leaves nothing written.
    /// </summary>
    Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken);
}

/// <summary>Changes a stream's lifecycle. Each change is recorded as an event in the stream's <c>$$</c> metadata stream.</summary>
public interface IStreamLifecycle
{
    /// <summary>
    /// Sets a stream's metadata (max count, max age, truncate-before) when its metadata stream
    /// (<see cref="StreamName.MetadataStream"/>, where every metadata change, delete and tombstone is recorded) is at
    /// <paramref name="expectedMetadataVersion"/>: <see cref="ExpectedVersion.Any"/> to set it whatever it is,
    /// <see cref="ExpectedVersion.NoStream"/> when the stream's lifecycle never changed. Otherwise it fails with
    /// <see cref="WrongExpectedVersionException"/> naming the metadata stream, and changes nothing: a read, change and
    /// write of the metadata loses no change another writer made meanwhile.
    /// </summary>
    Task SetStreamMetadataAsync(StreamName stream, StreamMetadata metadata, ExpectedVersion expectedMetadataVersion, CancellationToken cancellationToken);

    /// <summary>
    /// Soft-deletes a stream: reads see nothing, and a later append starts it again after its old last version (the
    /// old events stay hidden). The stream must satisfy <paramref name="expectedVersion"/>.
    /// </summary>
    Task DeleteStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken);

    /// <summary>Tombstones a stream: it can never be read or appended to again.</summary>
    Task TombstoneStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken);
}

/// <summary>Tells a reader when new events are committed, so live subscriptions need no polling.</summary>
public interface IAppendNotifier
{
    /// <summary>
    /// Completes when the head of the log is past <paramref name="position"/>, or after the backend's fallback poll
    /// interval (which catches writers in other processes), whichever is first.
    /// </summary>
    Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken);
}

/// <summary>The event store: reads, atomic appends, stream lifecycle and commit notifications.</summary>
public interface IEventStore : IEventReader, IEventWriter, IStreamLifecycle, IAppendNotifier
{
}
