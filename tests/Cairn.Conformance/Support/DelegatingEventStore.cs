using System.Runtime.CompilerServices;
using Cairn.EventStore;

namespace Cairn.Conformance.Support;

/// <summary>An event store that forwards to another; tests override what they observe or disturb.</summary>
public class DelegatingEventStore(IEventStore inner) : IEventStore
{
    /// <summary>The wrapped store.</summary>
    public IEventStore Inner { get; } = inner;

    /// <inheritdoc />
    public virtual Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken) =>
        Inner.AppendAsync(request, cancellationToken);

    /// <inheritdoc />
    public virtual IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, CancellationToken cancellationToken) =>
        Inner.ReadStreamAsync(stream, direction, fromVersion, maxCount, cancellationToken);

    /// <inheritdoc />
    public virtual IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken) =>
        Inner.ReadAllAsync(from, filter, maxCount, cancellationToken);

    /// <inheritdoc />
    public virtual IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken) =>
        Inner.ReadByQueryAsync(query, after, maxCount, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken) =>
        Inner.GetStreamInfoAsync(stream, cancellationToken);

    /// <inheritdoc />
    public virtual ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken) =>
        Inner.GetHeadPositionAsync(cancellationToken);

    /// <inheritdoc />
    public virtual Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken) =>
        Inner.WaitForAppendAsync(position, cancellationToken);

    /// <inheritdoc />
    public virtual Task SetStreamMetadataAsync(StreamName stream, StreamMetadata metadata, ExpectedVersion expectedMetadataVersion, CancellationToken cancellationToken) =>
        Inner.SetStreamMetadataAsync(stream, metadata, expectedMetadataVersion, cancellationToken);

    /// <inheritdoc />
    public virtual Task DeleteStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        Inner.DeleteStreamAsync(stream, expectedVersion, cancellationToken);

    /// <inheritdoc />
    public virtual Task TombstoneStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        Inner.TombstoneStreamAsync(stream, expectedVersion, cancellationToken);
}

/// <summary>Counts the events <c>ReadAllAsync</c> hands out, and tells a callback of each.</summary>
public sealed class CountingEventStore(IEventStore inner, Action<RecordedEvent>? onRead = null) : DelegatingEventStore(inner)
{
    private long _read;

    /// <summary>Events yielded by <see cref="ReadAllAsync"/> so far.</summary>
    public long EventsRead => Interlocked.Read(ref _read);

    /// <inheritdoc />
    public override async IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var e in Inner.ReadAllAsync(from, filter, maxCount, cancellationToken).ConfigureAwait(false))
        {
            Interlocked.Increment(ref _read);
            onRead?.Invoke(e);
            yield return e;
        }
    }
}

/// <summary>
/// Before each of the first <paramref name="interferences"/> appends, runs a competing write against the inner
/// store, as if another process had appended between the caller's read and its write.
/// </summary>
public sealed class InterferingEventStore(IEventStore inner, int interferences, Func<IEventStore, Task> competingWrite) : DelegatingEventStore(inner)
{
    private int _appends;

    /// <summary>How many appends were attempted through this store.</summary>
    public int Appends => Volatile.Read(ref _appends);

    /// <inheritdoc />
    public override async Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _appends) <= interferences)
        {
            await competingWrite(Inner);
        }

        return await Inner.AppendAsync(request, cancellationToken);
    }
}
