using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Domain;

/// <summary>Settings of a <see cref="DeciderHandler{TCommand, TState, TEvent}"/>.</summary>
public sealed record DeciderHandlerOptions
{
    /// <summary>How many times a command is decided again after a concurrent append changed its stream.</summary>
    public int MaxConflictRetries { get; init; } = 3;

    /// <summary>
    /// When and how the state is snapshotted; null for no snapshots. A policy needs a snapshot store: use the
    /// constructor that takes an <see cref="ISnapshotStore"/>.
    /// </summary>
    public SnapshotPolicy? Snapshots { get; init; }
}

/// <summary>
/// Handles commands with a decider: loads the stream, folds it, decides, and appends the events with the version it
/// read as the expected version. On a conflict it reloads and decides again, a bounded number of times, then lets
/// <see cref="WrongExpectedVersionException"/> through.
/// </summary>
/// <remarks>
/// With a <see cref="SnapshotPolicy"/>, a load starts from the stream's latest snapshot and folds only the events after
/// it. A snapshot is used only when it is exactly the fold of what the stream shows up to its version: of the policy's
/// schema version, readable, and taken from the events the stream still shows (none of them hidden since, the stream
/// not deleted or recreated). Any other is passed over and counted, and the state is folded from the events, so a load
/// returns the same state with or without snapshots.
/// </remarks>
/// <typeparam name="TCommand">The commands.</typeparam>
/// <typeparam name="TState">The state.</typeparam>
/// <typeparam name="TEvent">The base type of the events; each concrete type is registered with a stable name.</typeparam>
public sealed class DeciderHandler<TCommand, TState, TEvent>
    where TEvent : class
{
    private readonly IEventStore _store;
    private readonly EventSerializer _serializer;
    private readonly DeciderHandlerOptions _options;
    private readonly ISnapshotStore? _snapshots;
    private readonly SnapshotPolicy? _policy;
    private readonly JsonTypeInfo<TState>? _stateInfo;
    private readonly KeyValuePair<string, object?> _kindTag;
    private readonly ILogger _logger;

    /// <summary>Creates a handler without snapshots.</summary>
    /// <exception cref="ArgumentException">The options name a snapshot policy, which needs a snapshot store.</exception>
    public DeciderHandler(IEventStore store, EventSerializer serializer, Decider<TCommand, TState, TEvent> decider, DeciderHandlerOptions? options = null)
        : this(store, serializer, decider, options, null, null)
    {
        if (_options.Snapshots is not null)
        {
            throw new ArgumentException("DeciderHandlerOptions.Snapshots needs a snapshot store: use the constructor that takes an ISnapshotStore.", nameof(options));
        }
    }

    /// <summary>Creates a handler that loads from, and takes, snapshots as <see cref="DeciderHandlerOptions.Snapshots"/> says.</summary>
    /// <exception cref="ArgumentException">The options name no snapshot policy.</exception>
    /// <exception cref="InvalidSnapshotKindException">The policy's kind breaks the rules of <see cref="SnapshotKinds"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The policy's schema version or interval is below 1.</exception>
    /// <exception cref="SnapshotSerializationException">The JSON options have no contract for <typeparamref name="TState"/>.</exception>
    public DeciderHandler(IEventStore store, ISnapshotStore snapshots, EventSerializer serializer, Decider<TCommand, TState, TEvent> decider, DeciderHandlerOptions options, ILogger? logger = null)
        : this(store, serializer, decider, options ?? throw new ArgumentNullException(nameof(options)), snapshots ?? throw new ArgumentNullException(nameof(snapshots)), logger)
    {
        if (options.Snapshots is null)
        {
            throw new ArgumentException("Set DeciderHandlerOptions.Snapshots to say when and how the state is snapshotted.", nameof(options));
        }
    }

    private DeciderHandler(IEventStore store, EventSerializer serializer, Decider<TCommand, TState, TEvent> decider, DeciderHandlerOptions? options, ISnapshotStore? snapshots, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(serializer);
        ArgumentNullException.ThrowIfNull(decider);
        _store = store;
        _serializer = serializer;
        Decider = decider;
        _options = options ?? new DeciderHandlerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxConflictRetries, nameof(DeciderHandlerOptions.MaxConflictRetries));
        _logger = logger ?? NullLogger.Instance;
        if (snapshots is null || _options.Snapshots is not { } policy)
        {
            return;
        }

        policy.Validate();
        _snapshots = snapshots;
        _policy = policy;
        _kindTag = new KeyValuePair<string, object?>("kind", policy.Kind);
        var json = serializer.Options;
        if (policy.JsonOptions is { } own)
        {
            // A copy: the caller's options are not made read-only behind its back.
            json = new JsonSerializerOptions(own);
            json.TypeInfoResolver ??= new DefaultJsonTypeInfoResolver();
            json.MakeReadOnly();
        }

        try
        {
            _stateInfo = (JsonTypeInfo<TState>)json.GetTypeInfo(typeof(TState));
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException)
        {
            throw new SnapshotSerializationException(typeof(TState), ex);
        }

        if (JsonRoundTrip.LostMembers(_stateInfo) is { Count: > 0 } lost)
        {
            throw new SnapshotSerializationException(typeof(TState), lost);
        }
    }

    /// <summary>The decider.</summary>
    public Decider<TCommand, TState, TEvent> Decider { get; }

    /// <summary>
    /// Decides a command against the stream's current state and appends the result. With a snapshot interval, an
    /// append that brings the stream to or past a multiple of it is followed by a snapshot of the new state; failing
    /// to save that snapshot is logged and does not fail the command.
    /// </summary>
    public async Task<CommandResult<TState, TEvent>> HandleAsync(StreamName stream, TCommand command, CancellationToken cancellationToken = default)
    {
        for (var attempt = 1; ; attempt++)
        {
            var loaded = await LoadCoreAsync(stream, null, cancellationToken).ConfigureAwait(false);
            var events = Decider.DecideChecked(command, loaded.State);
            if (events.Count == 0)
            {
                return new CommandResult<TState, TEvent>(loaded.State, events, null, attempt);
            }

            // Folded before anything is written: an Evolve that throws on the events Decide just made is a decider
            // fault, and the command fails with nothing appended rather than leave the stream with events it cannot fold.
            var state = Decider.Fold(loaded.State, events);
            var data = events.Select(e => _serializer.ToEventData(e)).ToList();
            AppendResult result;
            try
            {
                result = await _store.AppendToStreamAsync(stream, loaded.ToLoadedState().ExpectedVersion, data, cancellationToken).ConfigureAwait(false);
            }
            catch (WrongExpectedVersionException) when (attempt <= _options.MaxConflictRetries)
            {
                // Someone appended in between: decide again on the new state.
                continue;
            }

            var written = result.Streams[0];
            if (_policy?.Every is { } every && ReachesMultiple(loaded.Version, written.LastVersion, every))
            {
                await TrySnapshotAsync(stream, written.LastVersion, cancellationToken).ConfigureAwait(false);
            }

            return new CommandResult<TState, TEvent>(state, events, result, attempt);
        }
    }

    /// <summary>Loads the stream's current state, from its latest usable snapshot when there is one.</summary>
    public async Task<LoadedState<TState>> LoadAsync(StreamName stream, CancellationToken cancellationToken = default) =>
        (await LoadCoreAsync(stream, null, cancellationToken).ConfigureAwait(false)).ToLoadedState();

    /// <summary>
    /// Loads the state as it was after <paramref name="version"/> (inclusive); a snapshot is used only when it was
    /// taken at or before that version.
    /// </summary>
    public async Task<LoadedState<TState>> LoadAsOfVersionAsync(StreamName stream, long version, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        return (await LoadCoreAsync(stream, version, cancellationToken).ConfigureAwait(false)).ToLoadedState();
    }

    /// <summary>
    /// Loads the state as it was at <paramref name="time"/>: every event committed at or before it. Snapshots are not
    /// used: a snapshot does not say when the events it folded were committed.
    /// </summary>
    public async Task<LoadedState<TState>> LoadAsOfTimeAsync(StreamName stream, DateTimeOffset time, CancellationToken cancellationToken = default) =>
        (await FoldAsync(stream, e => e.Time <= time, current: false, cancellationToken).ConfigureAwait(false)).ToLoadedState();

    /// <summary>
    /// Loads the stream's current state and saves it as a snapshot now. Returns the snapshot, or null when the stream
    /// shows no event to snapshot, the state is null, or the store already holds a later one. A failure to save is thrown.
    /// </summary>
    /// <exception cref="InvalidOperationException">The handler has no snapshot policy.</exception>
    public async Task<StoredSnapshot?> TakeSnapshotAsync(StreamName stream, CancellationToken cancellationToken = default)
    {
        if (_policy is null)
        {
            throw new InvalidOperationException("This handler takes no snapshots: create it with an ISnapshotStore and DeciderHandlerOptions.Snapshots.");
        }

        var loaded = await LoadCoreAsync(stream, null, cancellationToken).ConfigureAwait(false);
        return loaded.FirstFolded is null ? null : await SaveSnapshotAsync(stream, loaded, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Whether the stream's event count went from below a multiple of <paramref name="every"/> to at least it.</summary>
    private static bool ReachesMultiple(long? before, long after, int every) => (after + 1) / every > ((before ?? -1) + 1) / every;

    private async Task<Folded> LoadCoreAsync(StreamName stream, long? maxVersion, CancellationToken cancellationToken)
    {
        if (_policy is not null && await TryLoadFromSnapshotAsync(stream, maxVersion, cancellationToken).ConfigureAwait(false) is { } fromSnapshot)
        {
            return fromSnapshot;
        }

        return maxVersion is { } max
            ? await FoldAsync(stream, e => e.Version <= max, current: false, cancellationToken).ConfigureAwait(false)
            : await FoldAsync(stream, _ => true, current: true, cancellationToken).ConfigureAwait(false);
    }

    private async Task<Folded> FoldAsync(StreamName stream, Func<RecordedEvent, bool> include, bool current, CancellationToken cancellationToken)
    {
        var state = Decider.InitialState;
        long? version = null;
        long? first = null;
        var position = GlobalPosition.Start;
        await foreach (var recorded in _store.ReadStreamAsync(stream, cancellationToken).ConfigureAwait(false))
        {
            if (!include(recorded))
            {
                // Events are in version (and commit) order, so nothing later qualifies.
                break;
            }

            state = Decider.Evolve(state, _serializer.Deserialize<TEvent>(recorded));
            version = recorded.Version;
            first ??= recorded.Version;
            position = recorded.Position;
        }

        if (version is null && current)
        {
            // Metadata (max age, truncation) can hide every event of a live stream; the next append must still
            // expect its real last version.
            version = await _store.GetStreamVersionAsync(stream, cancellationToken).ConfigureAwait(false);
        }

        return new Folded(state, version, first, position);
    }

    /// <summary>
    /// Starts from the stream's snapshot and folds the events after it, or returns null when there is no snapshot
    /// fit to use: then the caller folds every event.
    /// </summary>
    private async Task<Folded?> TryLoadFromSnapshotAsync(StreamName stream, long? maxVersion, CancellationToken cancellationToken)
    {
        var policy = _policy!;
        StoredSnapshot? snapshot;
        try
        {
            snapshot = await _snapshots!.LoadAsync(stream, policy.Kind, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning(ex, "The {Kind} snapshot of {Stream} could not be loaded; its state is folded from every event.", policy.Kind, stream);
            Ignored("unreadable");
            return null;
        }

        if (snapshot is null || (maxVersion is { } max && snapshot.StreamVersion > max))
        {
            return null;
        }

        if (snapshot.SchemaVersion != policy.SchemaVersion)
        {
            // Never deserialized: old JSON can fit the new shape and still mean something else.
            _logger.LogDebug("The {Kind} snapshot of {Stream} has schema version {Found}, not {Expected}; it is ignored.", policy.Kind, stream, snapshot.SchemaVersion, policy.SchemaVersion);
            Ignored("schema_version");
            return null;
        }

        TState? state;
        try
        {
            state = JsonSerializer.Deserialize(snapshot.Data.Span, _stateInfo!);
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "The {Kind} snapshot of {Stream} at version {Version} could not be deserialized; it is ignored.", policy.Kind, stream, snapshot.StreamVersion);
            Ignored("unreadable");
            return null;
        }

        if (state is null)
        {
            _logger.LogWarning("The {Kind} snapshot of {Stream} at version {Version} is JSON null; it is ignored.", policy.Kind, stream, snapshot.StreamVersion);
            Ignored("unreadable");
            return null;
        }

        // The snapshot is the fold of the events from its first version to its own. The stream must still show
        // exactly those: its first visible event the snapshot's first (nothing hidden by truncation, max count, max
        // age or a soft delete since, nothing shown again), and the event at the snapshot's version the very one it
        // was taken after (not another history under the same name).
        RecordedEvent? first = null;
        await foreach (var recorded in _store.ReadStreamAsync(stream, ReadDirection.Forwards, null, 1, cancellationToken).ConfigureAwait(false))
        {
            first = recorded;
        }

        if (first is null || first.Version != snapshot.FirstVersion)
        {
            await IgnoreForHistoryAsync(stream, snapshot, cancellationToken).ConfigureAwait(false);
            return null;
        }

        var version = snapshot.StreamVersion;
        var position = snapshot.Position;
        var atSnapshot = true;
        // The snapshot's event and those after it up to the version asked for; a version past any stream (up to
        // long.MaxValue) reads to the end rather than overflowing the count.
        var count = maxVersion is { } until && until - snapshot.StreamVersion < long.MaxValue - 1 ? until - snapshot.StreamVersion + 1 : long.MaxValue;
        await foreach (var recorded in _store.ReadStreamAsync(stream, ReadDirection.Forwards, snapshot.StreamVersion, count, cancellationToken).ConfigureAwait(false))
        {
            if (atSnapshot)
            {
                if (recorded.Version != snapshot.StreamVersion || recorded.Position != snapshot.Position)
                {
                    await IgnoreForHistoryAsync(stream, snapshot, cancellationToken).ConfigureAwait(false);
                    return null;
                }

                atSnapshot = false;
                continue;
            }

            state = Decider.Evolve(state, _serializer.Deserialize<TEvent>(recorded));
            version = recorded.Version;
            position = recorded.Position;
        }

        if (atSnapshot)
        {
            await IgnoreForHistoryAsync(stream, snapshot, cancellationToken).ConfigureAwait(false);
            return null;
        }

        CairnDiagnostics.SnapshotsUsed.Add(1, _kindTag);
        return new Folded(state, version, snapshot.FirstVersion, position);
    }

    /// <summary>
    /// Passes over a snapshot the stream no longer matches. One beyond the stream's version (deleted, or recreated
    /// from scratch) is deleted too: it would keep every earlier snapshot from being saved.
    /// </summary>
    private async Task IgnoreForHistoryAsync(StreamName stream, StoredSnapshot snapshot, CancellationToken cancellationToken)
    {
        var current = await _store.GetStreamVersionAsync(stream, cancellationToken).ConfigureAwait(false);
        if (current is { } v && v >= snapshot.StreamVersion)
        {
            _logger.LogDebug("The {Kind} snapshot of {Stream} at version {Version} no longer matches the events the stream shows; it is ignored.", snapshot.Kind, stream, snapshot.StreamVersion);
            Ignored("history_changed");
            return;
        }

        _logger.LogInformation("The {Kind} snapshot of {Stream} at version {Version} is beyond the stream's version ({Current}); it is ignored and deleted.", snapshot.Kind, stream, snapshot.StreamVersion, current);
        Ignored("beyond_stream");
        try
        {
            await _snapshots!.DeleteAsync(stream, snapshot.Kind, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning(ex, "The stale {Kind} snapshot of {Stream} could not be deleted.", snapshot.Kind, stream);
        }
    }

    /// <summary>
    /// Snapshots the stream as of <paramref name="version"/>, folded from what the store gives back (its snapshot and
    /// the events after it) rather than from the events the command decided in memory: what their JSON would not bring
    /// back, or an upcaster would change, must not live on in the snapshot alone.
    /// </summary>
    private async Task TrySnapshotAsync(StreamName stream, long version, CancellationToken cancellationToken)
    {
        try
        {
            var folded = await LoadCoreAsync(stream, version, cancellationToken).ConfigureAwait(false);
            if (folded.FirstFolded is not null && folded.Version == version)
            {
                await SaveSnapshotAsync(stream, folded, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            // The events are committed: the command succeeded. A later multiple takes the next snapshot.
            _logger.LogWarning(ex, "The {Kind} snapshot of {Stream} at version {Version} could not be saved; the command succeeded.", _policy!.Kind, stream, version);
        }
    }

    private async Task<StoredSnapshot?> SaveSnapshotAsync(StreamName stream, Folded folded, CancellationToken cancellationToken)
    {
        var policy = _policy!;

        // A null state (a state machine's end, say) is not saved: its JSON null would be passed over as unreadable at
        // every load. The snapshot before it, if any, stands, and the fold goes on from there.
        if (folded.State is null)
        {
            return null;
        }

        // A state of a type derived from TState is written by TState's contract, which drops what the derived type
        // adds, unless the contract names it as a derived type: loaded back, it would not be the state the events fold to.
        // Not so for a nullable value (boxed as its underlying type) or a collection, which its contract writes item by item
        // whatever the collection's own type (the read-back comparison below still checks them).
        if (_stateInfo!.Kind == JsonTypeInfoKind.Object
            && folded.State?.GetType() is { } runtime && runtime != typeof(TState) && runtime != Nullable.GetUnderlyingType(typeof(TState))
            && _stateInfo.PolymorphismOptions?.DerivedTypes.Any(d => d.DerivedType == runtime) != true)
        {
            throw new SnapshotSerializationException(typeof(TState), runtime);
        }

        // What the state's contract cannot bring back shows in its JSON written again after a read (a property over a
        // hand-written field no constructor parameter fills, a converter that rounds): such a snapshot would load
        // another state than the events fold to.
        // A private field no JSON carries (state read through a method) is in neither JSON: the state read back is
        // compared with the folded one by value, field by field, too.
        // The state's own equality is not trusted here: an entity equal by its id says nothing of the rest it holds.
        byte[] json;
        bool sameJson;
        TState? readBack;
        try
        {
            json = JsonSerializer.SerializeToUtf8Bytes(folded.State, _stateInfo!);
            readBack = JsonSerializer.Deserialize(json, _stateInfo!);
            sameJson = json.AsSpan().SequenceEqual(JsonSerializer.SerializeToUtf8Bytes(readBack, _stateInfo!));
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A value JSON cannot hold (NaN), a member no contract can read back (an interface): named as the state's fault.
            throw SnapshotSerializationException.NotWritable(typeof(TState), ex);
        }

        if (!sameJson || !ValueEquality.SameForSnapshot(folded.State, readBack))
        {
            throw SnapshotSerializationException.NotRoundTripped(typeof(TState));
        }

        var snapshot = new StoredSnapshot(
            stream,
            policy.Kind,
            folded.Version!.Value,
            folded.FirstFolded!.Value,
            folded.LastPosition,
            policy.SchemaVersion,
            json);
        if (!await _snapshots!.SaveAsync(snapshot, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        CairnDiagnostics.SnapshotsTaken.Add(1, _kindTag);
        return snapshot;
    }

    private void Ignored(string reason) => CairnDiagnostics.SnapshotsIgnored.Add(1, _kindTag, new KeyValuePair<string, object?>("reason", reason));

    /// <summary>A fold: the state, the last version folded (or the stream's), and the first version and last position folded.</summary>
    private readonly record struct Folded(TState State, long? Version, long? FirstFolded, GlobalPosition LastPosition)
    {
        public LoadedState<TState> ToLoadedState() => new(State, Version);
    }
}
