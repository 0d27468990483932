namespace Cairn.Domain;

/// <summary>
/// Given/when/then for deciders, with no test framework needed:
/// <c>DeciderSpecification.For(decider).Given(opened).When(deposit).Then(deposited)</c>. A mismatch throws
/// <see cref="DeciderSpecificationException"/> describing expected and actual events.
/// </summary>
public static class DeciderSpecification
{
    /// <summary>Starts a specification of a decider.</summary>
    public static DeciderSpecification<TCommand, TState, TEvent> For<TCommand, TState, TEvent>(Decider<TCommand, TState, TEvent> decider) =>
        new(decider, [], default, hasCommand: false);
}

/// <summary>A specification being built: the past events and the command.</summary>
/// <typeparam name="TCommand">The commands.</typeparam>
/// <typeparam name="TState">The state.</typeparam>
/// <typeparam name="TEvent">The events.</typeparam>
public sealed class DeciderSpecification<TCommand, TState, TEvent>
{
    private readonly Decider<TCommand, TState, TEvent> _decider;
    private readonly IReadOnlyList<TEvent> _given;
    private readonly TCommand? _command;
    private readonly bool _hasCommand;

    internal DeciderSpecification(Decider<TCommand, TState, TEvent> decider, IReadOnlyList<TEvent> given, TCommand? command, bool hasCommand)
    {
        _decider = decider;
        _given = given;
        _command = command;
        _hasCommand = hasCommand;
    }

    /// <summary>The events already in the stream; a second <c>Given</c> adds its events after those given before.</summary>
    public DeciderSpecification<TCommand, TState, TEvent> Given(params TEvent[] events)
    {
        ArgumentNullException.ThrowIfNull(events);
        return new(_decider, [.. _given, .. events], _command, _hasCommand);
    }

    /// <summary>The command decided.</summary>
    public DeciderSpecification<TCommand, TState, TEvent> When(TCommand command) => new(_decider, _given, command, hasCommand: true);

    /// <summary>Asserts the decided events equal <paramref name="expected"/> (by value, in order) and returns the new state.</summary>
    public TState Then(params TEvent[] expected)
    {
        var (state, actual) = Run();
        if (actual.Count != expected.Length || actual.Where((e, i) => !SameValue(e, expected[i])).Any())
        {
            throw new DeciderSpecificationException(
                $"Expected the events [{string.Join(", ", expected.Select(Render))}] but the decider decided [{string.Join(", ", actual.Select(Render))}].");
        }

        return _decider.Fold(state, actual);
    }

    /// <summary>Equal by value (<see cref="ValueEquality"/>): a record's own equality compares a list member by reference.</summary>
    private static bool SameValue(TEvent actual, TEvent expected) => ValueEquality.Same(actual, expected);

    /// <summary>An event as a mismatch shows it: as itself, and as JSON, which shows what a collection holds.</summary>
    private static string Render(TEvent e) => e is null
        ? "null"
        : $"{e} {System.Text.Json.JsonSerializer.Serialize(e, e.GetType(), RenderOptions)}";

    /// <summary>The web defaults with fields, so that a value tuple shows its items.</summary>
    private static readonly System.Text.Json.JsonSerializerOptions RenderOptions = new(System.Text.Json.JsonSerializerOptions.Web) { IncludeFields = true };

    /// <summary>Asserts the decider refuses the command with <typeparamref name="TException"/>, and returns it.</summary>
    public TException ThenThrows<TException>()
        where TException : Exception
    {
        if (!_hasCommand)
        {
            throw new InvalidOperationException("Call When(command) before ThenThrows.");
        }

        // The given events are folded outside the try, and the failure thrown outside it: an exception of the folding
        // (an impossible history) is not the command's refusal, and a broad TException (Exception, say) would
        // otherwise catch the failure.
        var state = Given();
        List<TEvent>? decided;
        try
        {
            decided = _decider.DecideAll(_command!, state);
        }
        catch (TException ex)
        {
            return ex;
        }

        // A null sequence or event breaks the decider's contract: no refusal, however broad TException is.
        List<TEvent> actual;
        try
        {
            actual = Decider<TCommand, TState, TEvent>.Checked(decided, _command!);
        }
        catch (InvalidOperationException ex)
        {
            throw new DeciderSpecificationException($"Expected {typeof(TException).Name} but {ex.Message}");
        }

        throw new DeciderSpecificationException(
            $"Expected {typeof(TException).Name} but the decider decided [{string.Join(", ", actual)}].");
    }

    private (TState State, List<TEvent> Events) Run()
    {
        if (!_hasCommand)
        {
            throw new InvalidOperationException("Call When(command) before Then.");
        }

        var state = Given();
        return (state, _decider.DecideChecked(_command!, state));
    }

    private TState Given() => _decider.Fold(_decider.InitialState, _given);
}

/// <summary>A decider specification did not hold.</summary>
public sealed class DeciderSpecificationException(string message) : Exception(message);
