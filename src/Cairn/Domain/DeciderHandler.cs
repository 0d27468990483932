using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Domain;

/// <summary>Settings of a <see cref="DeciderHandler{TCommand, TState, TEvent}"/>.</summary>
public sealed record DeciderHandlerOptions
{
    /// <summary>How many times a command is decided again after a concurrent append changed its stream.</summary>
    public int MaxConflictRetries { get; init; } = 3;
}

/// <summary>
/// Handles commands with a decider: loads the stream, folds it, decides, and appends the events with the version it
/// read as the expected version. On a conflict it reloads and decides again, a bounded number of times, then lets
/// <see cref="WrongExpectedVersionException"/> through.
/// </summary>
/// <typeparam name="TCommand">The commands.</typeparam>
/// <typeparam name="TState">The state.</typeparam>
/// <typeparam name="TEvent">The base type of the events; each concrete type is registered with a stable name.</typeparam>
public sealed class DeciderHandler<TCommand, TState, TEvent>
    where TEvent : class
{
    private readonly IEventStore _store;
    private readonly EventSerializer _serializer;
    private readonly DeciderHandlerOptions _options;

    /// <summary>Creates a handler.</summary>
    public DeciderHandler(IEventStore store, EventSerializer serializer, Decider<TCommand, TState, TEvent> decider, DeciderHandlerOptions? options = null)
    {
        _store = store;
        _serializer = serializer;
        Decider = decider;
        _options = options ?? new DeciderHandlerOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxConflictRetries);
    }

    /// <summary>The decider.</summary>
    public Decider<TCommand, TState, TEvent> Decider { get; }

    /// <summary>Decides a command against the stream's current state and appends the result.</summary>
    public async Task<CommandResult<TState, TEvent>> HandleAsync(StreamName stream, TCommand command, CancellationToken cancellationToken = default)
    {
        for (var attempt = 1; ; attempt++)
        {
            var loaded = await LoadAsync(stream, cancellationToken).ConfigureAwait(false);
            var events = Decider.Decide(command, loaded.State).ToList();
            if (events.Count == 0)
            {
                return new CommandResult<TState, TEvent>(loaded.State, events, null, attempt);
            }

            var data = events.Select(e => _serializer.ToEventData(e)).ToList();
            try
            {
                var result = await _store.AppendToStreamAsync(stream, loaded.ExpectedVersion, data, cancellationToken).ConfigureAwait(false);
                return new CommandResult<TState, TEvent>(Decider.Fold(loaded.State, events), events, result, attempt);
            }
            catch (WrongExpectedVersionException) when (attempt <= _options.MaxConflictRetries)
            {
                // Someone appended in between: decide again on the new state.
            }
        }
    }

    /// <summary>Loads the stream's current state.</summary>
    public Task<LoadedState<TState>> LoadAsync(StreamName stream, CancellationToken cancellationToken = default) =>
        FoldAsync(stream, _ => true, current: true, cancellationToken);

    /// <summary>Loads the state as it was after <paramref name="version"/> (inclusive).</summary>
    public Task<LoadedState<TState>> LoadAsOfVersionAsync(StreamName stream, long version, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        return FoldAsync(stream, e => e.Version <= version, current: false, cancellationToken);
    }

    /// <summary>Loads the state as it was at <paramref name="time"/>: every event committed at or before it.</summary>
    public Task<LoadedState<TState>> LoadAsOfTimeAsync(StreamName stream, DateTimeOffset time, CancellationToken cancellationToken = default) =>
        FoldAsync(stream, e => e.Time <= time, current: false, cancellationToken);

    private async Task<LoadedState<TState>> FoldAsync(StreamName stream, Func<RecordedEvent, bool> include, bool current, CancellationToken cancellationToken)
    {
        var state = Decider.InitialState;
        long? version = null;
        await foreach (var recorded in _store.ReadStreamAsync(stream, cancellationToken).ConfigureAwait(false))
        {
            if (!include(recorded))
            {
                // Events are in version (and commit) order, so nothing later qualifies.
                break;
            }

            state = Decider.Evolve(state, _serializer.Deserialize<TEvent>(recorded));
            version = recorded.Version;
        }

        if (version is null && current)
        {
            // Metadata (max age, truncation) can hide every event of a live stream; the next append must still
            // expect its real last version.
            version = await _store.GetStreamVersionAsync(stream, cancellationToken).ConfigureAwait(false);
        }

        return new LoadedState<TState>(state, version);
    }
}
