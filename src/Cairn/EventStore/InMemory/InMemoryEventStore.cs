using System.Runtime.CompilerServices;
using Cairn.Envelopes;

namespace Cairn.EventStore.InMemory;

/// <summary>
/// An event store held in memory, for tests and throwaway tools. It keeps every promise of the conformance suite
/// except durability: one lock serialises appends, so positions commit in order.
/// </summary>
public sealed class InMemoryEventStore : IEventStore
{
    private const int PageSize = 512;

    private readonly object _gate = new();
    private readonly List<RecordedEvent> _log = [];
    private readonly Dictionary<string, StreamEntry> _streams = new(StringComparer.Ordinal);
    private readonly Dictionary<MessageId, int> _ids = [];
    private readonly AppendSignal _signal = new(TimeSpan.FromSeconds(30));
    private readonly EventStoreOptions _options;

    /// <summary>Creates an empty store.</summary>
    public InMemoryEventStore(EventStoreOptions? options = null)
    {
        _options = options ?? new EventStoreOptions();
        _options.Validate();
    }

    /// <inheritdoc />
    public Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken)
    {
        try
        {
            var prepared = PreparedAppend.Prepare(request, _options);
            cancellationToken.ThrowIfCancellationRequested();
            return Task.FromResult(Append(prepared));
        }
        catch (Exception ex)
        {
            // A refusal (bad input, a wrong expected version, a failed condition) comes through the task, as on every backend.
            return Refusal.Of<AppendResult>(ex);
        }
    }

    private AppendResult Append(PreparedAppend prepared)
    {
        if (_inline.Length > 0)
        {
            return AppendAll([prepared], static () => { })[0];
        }

        AppendResult result;
        lock (_gate)
        {
            result = StreamRules.MayBeRetry(prepared, Lookup) ? StreamRules.CheckRetry(prepared, Lookup)! : Write(prepared);
        }

        _signal.Advance(result.LastPosition.Value);
        return result;
    }

    /// <summary>
    /// What applies inline projections to the events an append writes: one per projection store that attached any,
    /// each run under the store's lock before anyone can read the events. Each stages its writes and returns what lands
    /// them; none lands until every one has staged, so one that throws takes the append back and leaves every read
    /// model as it was. Replaced whole under the lock.
    /// </summary>
    private volatile Func<IReadOnlyList<RecordedEvent>, Action>[] _inline = [];

    /// <summary>Has every append from now on run <paramref name="stage"/> (once, however often it is attached).</summary>
    internal void AttachInline(Func<IReadOnlyList<RecordedEvent>, Action> stage)
    {
        lock (_gate)
        {
            if (!_inline.Contains(stage))
            {
                _inline = [.. _inline, stage];
            }
        }
    }

    /// <summary>Stops running <paramref name="stage"/> after appends.</summary>
    internal void DetachInline(Func<IReadOnlyList<RecordedEvent>, Action> stage)
    {
        lock (_gate)
        {
            _inline = [.. _inline.Where(s => s != stage)];
        }
    }

    /// <summary>The lock every append and read takes; the in-memory projection store shares it.</summary>
    internal object Gate => _gate;

    /// <summary>The head; the caller holds <see cref="Gate"/>.</summary>
    internal GlobalPosition HeadLocked => new(_log.Count);

    /// <summary>The events after <paramref name="position"/> that pass <paramref name="filter"/>; the caller holds <see cref="Gate"/>.</summary>
    internal List<RecordedEvent> EventsAfterLocked(GlobalPosition position, EventFilter filter)
    {
        var events = new List<RecordedEvent>();
        for (var i = (int)position.Value; i < _log.Count; i++)
        {
            if (filter.Matches(_log[i]))
            {
                events.Add(_log[i]);
            }
        }

        return events;
    }

    /// <summary>
    /// Up to <paramref name="max"/> events, in position order, whose correlation id is <paramref name="correlationId"/>
    /// (an event that started a flow has its own id); the caller holds <see cref="Gate"/>.
    /// </summary>
    internal List<RecordedEvent> EventsOfCorrelationLocked(string correlationId, int max)
    {
        var events = new List<RecordedEvent>();
        for (var i = 0; i < _log.Count && events.Count < max; i++)
        {
            if (_log[i].CorrelationId == correlationId)
            {
                events.Add(_log[i]);
            }
        }

        return events;
    }

    /// <summary>The options the store was made with; the in-memory broker shares their clock, source and limits.</summary>
    internal EventStoreOptions Options => _options;

    /// <summary>
    /// Appends several prepared requests, then runs <paramref name="check"/>, all under the store's lock and all or
    /// nothing: when an append or the check throws, the events already written are taken back before any reader can see
    /// them, and the error is rethrown. The in-memory broker commits a transaction's appends through this.
    /// </summary>
    internal AppendResult[] AppendAll(IReadOnlyList<PreparedAppend> appends, Action check)
    {
        var results = new AppendResult[appends.Count];
        long head;
        lock (_gate)
        {
            var mark = _log.Count;
            var touched = new List<(string Name, StreamEntry? Entry, int Positions, long? LastVersion, StreamState State)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var part in appends.SelectMany(a => a.Streams))
            {
                if (seen.Add(part.Stream.Value))
                {
                    var entry = _streams.GetValueOrDefault(part.Stream.Value);
                    touched.Add((part.Stream.Value, entry, entry?.Positions.Count ?? 0, entry?.LastVersion, entry?.State ?? StreamState.NotFound));
                }
            }

            try
            {
                for (var i = 0; i < appends.Count; i++)
                {
                    results[i] = StreamRules.MayBeRetry(appends[i], Lookup) ? StreamRules.CheckRetry(appends[i], Lookup)! : Write(appends[i]);
                }

                check();
                if (_inline is { Length: > 0 } inline && _log.Count > mark)
                {
                    var written = _log[mark..];
                    var land = new Action[inline.Length];
                    for (var i = 0; i < inline.Length; i++)
                    {
                        land[i] = inline[i](written);
                    }

                    foreach (var staged in land)
                    {
                        staged();
                    }
                }
            }
            catch
            {
                for (var i = mark; i < _log.Count; i++)
                {
                    _ids.Remove(_log[i].Id);
                }

                _log.RemoveRange(mark, _log.Count - mark);
                foreach (var (name, entry, positions, lastVersion, state) in touched)
                {
                    if (entry is null)
                    {
                        _streams.Remove(name);
                        continue;
                    }

                    entry.Positions.RemoveRange(positions, entry.Positions.Count - positions);
                    entry.LastVersion = lastVersion;
                    entry.State = state;
                }

                throw;
            }

            head = _log.Count;
        }

        _signal.Advance(head);
        return results;
    }

    private StreamRules.StoredId? Lookup(MessageId id) =>
        _ids.TryGetValue(id, out var index) ? new StreamRules.StoredId(_log[index].Stream.Value, _log[index].Version, _log[index].Position.Value) : null;

    private AppendResult Write(PreparedAppend prepared)
    {
        var nextVersions = new long[prepared.Streams.Count];
        for (var s = 0; s < prepared.Streams.Count; s++)
        {
            var part = prepared.Streams[s];
            var entry = _streams.GetValueOrDefault(part.Stream.Value);
            nextVersions[s] = StreamRules.NextVersion(part.Stream, part.ExpectedVersion, entry?.State ?? StreamState.NotFound, entry?.LastVersion);
        }

        if (prepared.Condition is { } condition)
        {
            // The log's index of the first event after the condition's position; a position past the log leaves none.
            var from = (int)Math.Min(condition.After?.Value ?? 0, _log.Count);
            for (var i = from; i < _log.Count; i++)
            {
                if (!_log[i].Stream.IsSystem && condition.FailIfEventsMatch.Matches(_log[i].Type, _log[i].Tags))
                {
                    throw new AppendConditionFailedException(condition, _log[i].Position);
                }
            }
        }

        // Commit times never go backwards along the log, as on every backend.
        // An id reused by an append that is not a retry: refused after the expectations, as the unique index on
        // SQLite refuses it when the event is written.
        foreach (var part in prepared.Streams)
        {
            foreach (var e in part.Events)
            {
                if (_ids.ContainsKey(e.Id))
                {
                    throw new DuplicateEventIdException(e.Id, "was already appended, and this append is not a retry of the one that wrote it");
                }
            }
        }

        var time = _options.TimeProvider.GetUtcNow();
        if (_log.Count > 0 && time < _log[^1].Time)
        {
            time = _log[^1].Time;
        }

        var results = new StreamAppendResult[prepared.Streams.Count];
        var firstPosition = _log.Count + 1;
        for (var s = 0; s < prepared.Streams.Count; s++)
        {
            var part = prepared.Streams[s];
            if (!_streams.TryGetValue(part.Stream.Value, out var entry))
            {
                entry = new StreamEntry();
                _streams.Add(part.Stream.Value, entry);
            }

            var version = nextVersions[s];
            foreach (var e in part.Events)
            {
                var recorded = new RecordedEvent(e.Id, part.Stream, version, new GlobalPosition(_log.Count + 1), e.Type, e.Source, time, e.ContentType, e.Data)
                {
                    DataSchema = e.DataSchema,
                    CorrelationId = e.CorrelationId,
                    CausationId = e.CausationId,
                    TraceParent = e.TraceParent,
                    Tags = e.Tags,
                    Metadata = e.Metadata ?? new Dictionary<string, string>(),
                };
                _ids.Add(e.Id, _log.Count);
                entry.Positions.Add(_log.Count);
                _log.Add(recorded);
                version++;
            }

            entry.LastVersion = version - 1;
            entry.State = StreamState.Active;
            results[s] = new StreamAppendResult(part.Stream, nextVersions[s], version - 1);
        }

        return new AppendResult(results, new GlobalPosition(firstPosition), new GlobalPosition(_log.Count), WasDuplicate: false);
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ReadDirections.Validate(direction);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCount);
        ArgumentOutOfRangeException.ThrowIfNegative(fromVersion ?? 0, nameof(fromVersion));
        cancellationToken.ThrowIfCancellationRequested();
        List<RecordedEvent> page;
        lock (_gate)
        {
            if (!_streams.TryGetValue(stream.Value, out var entry) || entry.State is StreamState.SoftDeleted)
            {
                yield break;
            }

            if (entry.State == StreamState.Tombstoned)
            {
                throw new StreamDeletedException(stream);
            }

            // A stream's events are few enough to copy at once; only the visible ones are kept.
            var firstVisible = StreamRules.FirstVisibleVersion(entry.Metadata, entry.LastVersion);
            var oldest = StreamRules.OldestVisibleTime(entry.Metadata, _options.TimeProvider);
            IEnumerable<RecordedEvent> events = entry.Positions.Select(p => _log[p]).Where(e => e.Version >= firstVisible && (oldest is null || e.Time >= oldest));
            events = direction == ReadDirection.Forwards
                ? events.Where(e => fromVersion is null || e.Version >= fromVersion)
                : events.Reverse().Where(e => fromVersion is null || e.Version <= fromVersion);
            page = [.. events.Take((int)Math.Min(maxCount, int.MaxValue))];
        }

        foreach (var e in page)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return e;
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken)
    {
        if (ReadArguments.Refusal(filter, nameof(filter), maxCount) is { } refused)
        {
            return Refusal.Enumeration<RecordedEvent>(refused);
        }

        return ReadAllCoreAsync(from, filter, maxCount, cancellationToken);
    }

    private async IAsyncEnumerable<RecordedEvent> ReadAllCoreAsync(GlobalPosition from, EventFilter filter, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var e in Scan(Math.Max(from.Value, 1) - 1, e => filter.Matches(e), maxCount, cancellationToken).ConfigureAwait(false))
        {
            yield return e;
        }
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken)
    {
        if (ReadArguments.Refusal(query, nameof(query), maxCount) is { } refused)
        {
            return Refusal.Enumeration<RecordedEvent>(refused);
        }

        return ReadByQueryCoreAsync(query, after, maxCount, cancellationToken);
    }

    private async IAsyncEnumerable<RecordedEvent> ReadByQueryCoreAsync(EventQuery query, GlobalPosition after, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var e in Scan(after.Value, e => !e.Stream.IsSystem && query.Matches(e.Type, e.Tags), maxCount, cancellationToken).ConfigureAwait(false))
        {
            yield return e;
        }
    }

    private async IAsyncEnumerable<RecordedEvent> Scan(long startIndex, Func<RecordedEvent, bool> predicate, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var index = startIndex;
        var remaining = maxCount;
        var page = new List<RecordedEvent>(PageSize);
        var reachedEnd = false;
        while (remaining > 0 && !reachedEnd)
        {
            page.Clear();
            lock (_gate)
            {
                while (index < _log.Count && page.Count < PageSize)
                {
                    var e = _log[(int)index++];
                    if (predicate(e))
                    {
                        page.Add(e);
                    }
                }

                reachedEnd = index >= _log.Count;
            }

            foreach (var e in page)
            {
                cancellationToken.ThrowIfCancellationRequested();
                yield return e;
                if (--remaining == 0)
                {
                    yield break;
                }
            }

            await Task.Yield();
        }
    }

    /// <inheritdoc />
    public ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken)
    {
        try
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<StreamInfo>(cancellationToken);
            }

            lock (_gate)
            {
                return ValueTask.FromResult(_streams.TryGetValue(stream.Value, out var entry)
                    ? new StreamInfo(stream, entry.State, entry.LastVersion, entry.Metadata)
                    : new StreamInfo(stream, StreamState.NotFound, null, new StreamMetadata()));
            }
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<StreamInfo>(ex);
        }
    }

    /// <inheritdoc />
    public ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<GlobalPosition>(cancellationToken);
            }

            lock (_gate)
            {
                return ValueTask.FromResult(new GlobalPosition(_log.Count));
            }
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<GlobalPosition>(ex);
        }
    }

    /// <inheritdoc />
    public Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken) =>
        _signal.WaitAsync(position.Value, cancellationToken);

    /// <inheritdoc />
    public Task SetStreamMetadataAsync(StreamName stream, StreamMetadata metadata, ExpectedVersion expectedMetadataVersion, CancellationToken cancellationToken) =>
        ChangeLifecycle(stream, ExpectedVersion.Any, StreamRules.LifecycleChange.SetMetadata, metadata, expectedMetadataVersion, cancellationToken);

    /// <inheritdoc />
    public Task DeleteStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        ChangeLifecycle(stream, expectedVersion, StreamRules.LifecycleChange.SoftDelete, null, ExpectedVersion.Any, cancellationToken);

    /// <inheritdoc />
    public Task TombstoneStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) =>
        ChangeLifecycle(stream, expectedVersion, StreamRules.LifecycleChange.Tombstone, null, ExpectedVersion.Any, cancellationToken);

    private Task ChangeLifecycle(StreamName stream, ExpectedVersion expected, StreamRules.LifecycleChange change, StreamMetadata? metadata, ExpectedVersion expectedMetadata, CancellationToken cancellationToken)
    {
        try
        {
            StreamRules.CheckLifecycleMetadata(change, metadata);
            cancellationToken.ThrowIfCancellationRequested();
            lock (_gate)
            {
                var entry = _streams.GetValueOrDefault(stream.Value) ?? new StreamEntry();
                StreamRules.CheckMetadataVersion(stream, expectedMetadata, () => _streams.GetValueOrDefault(stream.MetadataStream.Value)?.LastVersion);
                if (StreamRules.ApplyLifecycle(stream, expected, change, entry.State, entry.LastVersion, entry.Metadata, metadata) is not { } next)
                {
                    return Task.CompletedTask;
                }

                var record = PreparedAppend.Prepare(
                    new AppendRequest(stream.MetadataStream, ExpectedVersion.Any, [StreamRules.LifecycleRecord(stream, next.State, next.Metadata)]),
                    _options,
                    allowSystemStreams: true);
                var result = Write(record);
                entry.State = next.State;
                entry.Metadata = next.Metadata;
                _streams.TryAdd(stream.Value, entry);
                _signal.Advance(result.LastPosition.Value);
            }

            return Task.CompletedTask;
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    private sealed class StreamEntry
    {
        public List<int> Positions { get; } = [];

        public long? LastVersion { get; set; }

        public StreamState State { get; set; } = StreamState.NotFound;

        public StreamMetadata Metadata { get; set; } = new();
    }
}
