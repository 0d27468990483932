namespace Cairn.Domain;

/// <summary>
/// A decider: the command side of an aggregate as three pure functions. <see cref="Decide"/> turns a command and the
/// current state into events (or throws to refuse it); <see cref="Evolve"/> folds one event into the state;
/// <see cref="InitialState"/> is the state of a stream with no events.
/// </summary>
/// <typeparam name="TCommand">The commands it decides on.</typeparam>
/// <typeparam name="TState">The state folded from its events.</typeparam>
/// <typeparam name="TEvent">The base type of its events.</typeparam>
/// <param name="Decide">Turns a command and the state into the events to append.</param>
/// <param name="Evolve">Folds one event into the state.</param>
/// <param name="InitialState">The state before any event.</param>
public sealed record Decider<TCommand, TState, TEvent>(
    Func<TCommand, TState, IEnumerable<TEvent>> Decide,
    Func<TState, TEvent, TState> Evolve,
    TState InitialState)
{
    /// <summary>Folds events into a state, starting from <paramref name="state"/>.</summary>
    public TState Fold(TState state, IEnumerable<TEvent> events)
    {
        foreach (var e in events)
        {
            state = Evolve(state, e);
        }

        return state;
    }

    /// <summary>
    /// Decides, refusing a null sequence or a null event: either would fail later with an error naming neither the
    /// command nor the decider (an append's argument check, a serializer's).
    /// </summary>
    internal List<TEvent> DecideChecked(TCommand command, TState state) => Checked(DecideAll(command, state), command);

    /// <summary>Decides and takes every event (a lazy sequence runs, and throws, here); null when Decide returned null.</summary>
    internal List<TEvent>? DecideAll(TCommand command, TState state) => Decide(command, state)?.ToList();

    /// <summary>Refuses what <see cref="DecideAll"/> returned when it breaks the decider's contract.</summary>
    internal static List<TEvent> Checked(List<TEvent>? decided, TCommand command)
    {
        var events = decided
            ?? throw new InvalidOperationException($"The decider of {typeof(TState).Name} decided null for the command {Describe(command)}; decide no events to change nothing.");
        if (events.FindIndex(e => e is null) is var at and >= 0)
        {
            throw new InvalidOperationException($"The decider of {typeof(TState).Name} decided a null event (at {at}) for the command {Describe(command)}.");
        }

        return events;

        static string Describe(TCommand command) => command?.GetType().Name ?? "null";
    }
}

/// <summary>A decider's state loaded from its stream.</summary>
/// <typeparam name="TState">The state type.</typeparam>
/// <param name="State">The folded state.</param>
/// <param name="Version">The version of the last event folded, or null when the stream had none.</param>
public sealed record LoadedState<TState>(TState State, long? Version)
{
    /// <summary>The expected version for an append based on this state.</summary>
    public EventStore.ExpectedVersion ExpectedVersion => Version is { } v ? EventStore.ExpectedVersion.Exactly(v) : EventStore.ExpectedVersion.NoStream;
}

/// <summary>The outcome of a handled command.</summary>
/// <typeparam name="TState">The state type.</typeparam>
/// <typeparam name="TEvent">The event type.</typeparam>
/// <param name="State">The state after the new events.</param>
/// <param name="Events">The events decided (none when the command changed nothing).</param>
/// <param name="Append">The append's result, or null when no event was decided.</param>
/// <param name="Attempts">How many times the command was decided: more than one after conflicts.</param>
public sealed record CommandResult<TState, TEvent>(TState State, IReadOnlyList<TEvent> Events, EventStore.AppendResult? Append, int Attempts);
