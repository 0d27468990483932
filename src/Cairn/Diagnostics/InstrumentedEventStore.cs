using System.Diagnostics;
using Cairn.EventStore;

namespace Cairn.Diagnostics;

/// <summary>
/// Wraps any event store with a span per append and the <c>Cairn.EventStore</c> metrics, so backends stay free of
/// instrumentation and none can forget it. <c>AddCairn</c> registers every backend through it.
/// </summary>
public sealed class InstrumentedEventStore(IEventStore inner) : IEventStore, IDisposable, IAsyncDisposable
{
    private readonly bool _ownsInner = true;

    /// <summary>Wraps a store that another owner (the container's backend registration) disposes.</summary>
    internal InstrumentedEventStore(IEventStore inner, bool ownsInner)
        : this(inner) => _ownsInner = ownsInner;

    /// <summary>The wrapped store.</summary>
    public IEventStore Inner { get; } = inner;

    /// <inheritdoc />
    public async Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken)
    {
        using var activity = CairnDiagnostics.EventStoreSource.StartActivity("cairn.append", ActivityKind.Producer);
        if (activity is not null && request?.Streams is { Count: > 0 } streams)
        {
            activity.SetTag("cairn.stream", streams[0].Stream.ToString());
            activity.SetTag("cairn.streams", streams.Count);
            activity.SetTag("cairn.events", request.EventCount);
        }

        var started = Stopwatch.GetTimestamp();
        string outcome = "error";
        try
        {
            var result = await Inner.AppendAsync(request!, cancellationToken).ConfigureAwait(false);
            outcome = result.WasDuplicate ? "duplicate" : "ok";
            if (!result.WasDuplicate)
            {
                CairnDiagnostics.EventsAppended.Add(request!.EventCount);
            }

            activity?.SetTag("cairn.position", result.LastPosition.Value);
            return result;
        }
        catch (Exception ex) when (ex is WrongExpectedVersionException or AppendConditionFailedException)
        {
            outcome = "conflict";
            CairnDiagnostics.Conflicts.Add(1);
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            throw;
        }
        catch (OperationCanceledException)
        {
            outcome = "cancelled";
            throw;
        }
        catch (Exception ex)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            activity?.AddException(ex);
            throw;
        }
        finally
        {
            var tag = new KeyValuePair<string, object?>("outcome", outcome);
            CairnDiagnostics.Appends.Add(1, tag);
            CairnDiagnostics.AppendDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, tag);
        }
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, CancellationToken cancellationToken) =>
        Inner.ReadStreamAsync(stream, direction, fromVersion, maxCount, cancellationToken);

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken) =>
        Inner.ReadAllAsync(from, filter, maxCount, cancellationToken);

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken) =>
        Inner.ReadByQueryAsync(query, after, maxCount, cancellationToken);

    /// <inheritdoc />
    public ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken) =>
        Inner.GetStreamInfoAsync(stream, cancellationToken);

    /// <inheritdoc />
    public ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken) =>
        Inner.GetHeadPositionAsync(cancellationToken);

    /// <inheritdoc />
    public Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken) =>
        Inner.WaitForAppendAsync(position, cancellationToken);

    /// <inheritdoc />
    public Task SetStreamMetadataAsync(StreamName stream, StreamMetadata metadata, ExpectedVersion expectedMetadataVersion, CancellationToken cancellationToken) =>
        Inner.SetStreamMetadataAsync(stream, metadata, expectedMetadataVersion, cancellationToken);

    /// <inheritdoc />
    public Task DeleteStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        Inner.DeleteStreamAsync(stream, expectedVersion, cancellationToken);

    /// <inheritdoc />
    public Task TombstoneStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        Inner.TombstoneStreamAsync(stream, expectedVersion, cancellationToken);

    /// <summary>Disposes the wrapped store, unless <c>AddCairn</c>'s container owns it (and disposes it once itself).</summary>
    public ValueTask DisposeAsync() => _ownsInner ? Disposal.DisposeAsync(Inner) : ValueTask.CompletedTask;

    /// <summary>As <see cref="DisposeAsync"/>, for a container disposed synchronously.</summary>
    public void Dispose()
    {
        if (_ownsInner)
        {
            Disposal.Dispose(Inner);
        }
    }
}
