using Cairn.Messaging;

namespace Cairn.Workflows;

/// <summary>
/// One step of a <see cref="Workflow{TState}"/>: what it does (send a command, publish an event, or only wait), which
/// replies move it on and where, its timeout and retries, and the compensation that undoes it.
/// </summary>
/// <typeparam name="TState">The workflow's state.</typeparam>
public sealed class WorkflowStep<TState>
    where TState : class
{
    private readonly List<ReplyRule<TState>> _replies = [];

    internal WorkflowStep(string name) => Name = name;

    /// <summary>The step's name.</summary>
    public string Name { get; }

    internal StepAction? Action { get; private set; }

    internal TimeSpan? Delay { get; private set; }

    internal IReadOnlyList<ReplyRule<TState>> Replies => _replies;

    internal string? NextStep { get; private set; }

    internal bool CompletesWorkflow { get; private set; }

    internal TimeSpan? TimeoutAfter { get; private set; }

    internal int MaxAttempts { get; private set; } = 1;

    internal TimeSpan RetryBackoff { get; private set; } = TimeSpan.FromSeconds(1);

    internal StepFailureAction FailureAction { get; private set; } = StepFailureAction.Compensate;

    internal StepAction? Compensation { get; private set; }

    internal Type? CompensationConfirmation { get; private set; }

    internal TimeSpan CompensationTimeout { get; private set; } = TimeSpan.FromSeconds(30);

    internal int CompensationAttempts { get; private set; } = 5;

    internal string? NoCompensationReason { get; private set; }

    /// <summary>Sends a command, made from the state, to a queue when the step starts (and again on each retry).</summary>
    public WorkflowStep<TState> Send<TCommand>(QueueName queue, Func<TState, TCommand> command)
        where TCommand : class
    {
        ArgumentNullException.ThrowIfNull(command);
        SetAction(new StepAction(StepActionKind.Send, queue.Value, typeof(TCommand), s => command((TState)s)));
        return this;
    }

    /// <summary>Publishes an event, made from the state, to a topic when the step starts (and again on each retry).</summary>
    public WorkflowStep<TState> Publish<TEvent>(TopicName topic, Func<TState, TEvent> @event)
        where TEvent : class
    {
        ArgumentNullException.ThrowIfNull(@event);
        SetAction(new StepAction(StepActionKind.Publish, topic.Value, typeof(TEvent), s => @event((TState)s)));
        return this;
    }

    /// <summary>Waits on a durable timer, then moves to the step's next one (<see cref="Then"/> or <see cref="Complete"/>).</summary>
    public WorkflowStep<TState> Wait(TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero || delay > TimeSpan.FromDays(365))
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': a wait of {delay} is not between 0 and 365 days.");
        }

        Delay = delay;
        return this;
    }

    /// <summary>
    /// Handles a reply of type <typeparamref name="TReply"/> while this step waits: <paramref name="evolve"/> (if any)
    /// folds it into the state, and the returned rule says where the workflow goes.
    /// </summary>
    public ReplyRule<TState, TReply> On<TReply>(Func<TState, TReply, TState>? evolve = null)
    {
        if (_replies.Any(r => r.ReplyType == typeof(TReply)))
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}' handles {typeof(TReply).Name} twice.");
        }

        var rule = new ReplyRule<TState, TReply>(this, evolve);
        _replies.Add(rule);
        return rule;
    }

    /// <summary>The step that follows by default: after a wait, after a reply whose rule names none, and when an operator skips this step.</summary>
    public WorkflowStep<TState> Then(string step)
    {
        NextStep = WorkflowNames.ValidateStep(step);
        CompletesWorkflow = false;
        return this;
    }

    /// <summary>The workflow completes after this step by default.</summary>
    public WorkflowStep<TState> Complete()
    {
        NextStep = null;
        CompletesWorkflow = true;
        return this;
    }

    /// <summary>Each attempt times out after <paramref name="timeout"/> without an expected reply (on a durable timer).</summary>
    public WorkflowStep<TState> Timeout(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero || timeout > TimeSpan.FromDays(365))
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': a timeout of {timeout} is not between 0 and 365 days.");
        }

        TimeoutAfter = timeout;
        return this;
    }

    /// <summary>
    /// Tries the step up to <paramref name="maxAttempts"/> times in all (after a timeout, or a reply whose rule asks for
    /// a retry), waiting <paramref name="backoff"/> (1 s by default) before the second, doubling before each later one.
    /// Each attempt's message has a new id and the same idempotency key.
    /// </summary>
    public WorkflowStep<TState> Retry(int maxAttempts, TimeSpan? backoff = null)
    {
        if (maxAttempts is < 1 or > 100)
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': {maxAttempts} attempts is not between 1 and 100.");
        }

        if (backoff is { } b && (b < TimeSpan.Zero || b > TimeSpan.FromDays(1)))
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': a retry backoff of {b} is not between 0 and a day.");
        }

        MaxAttempts = maxAttempts;
        RetryBackoff = backoff ?? RetryBackoff;
        return this;
    }

    /// <summary>What happens when the step fails for good: compensate (the default) or suspend for an operator.</summary>
    public WorkflowStep<TState> OnFailure(StepFailureAction action)
    {
        if (!Enum.IsDefined(action))
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': {(int)action} is not a failure action; it must be one of {string.Join(", ", Enum.GetNames<StepFailureAction>())}.");
        }

        FailureAction = action;
        return this;
    }

    /// <summary>Undoes the step by sending a command made from the state; it must be harmless when the step's effect never happened.</summary>
    public WorkflowStep<TState> CompensateWith<TCommand>(QueueName queue, Func<TState, TCommand> command)
        where TCommand : class
    {
        ArgumentNullException.ThrowIfNull(command);
        SetCompensation(new StepAction(StepActionKind.Send, queue.Value, typeof(TCommand), s => command((TState)s)));
        return this;
    }

    /// <summary>Undoes the step by publishing an event made from the state.</summary>
    public WorkflowStep<TState> CompensateWithPublish<TEvent>(TopicName topic, Func<TState, TEvent> @event)
        where TEvent : class
    {
        ArgumentNullException.ThrowIfNull(@event);
        SetCompensation(new StepAction(StepActionKind.Publish, topic.Value, typeof(TEvent), s => @event((TState)s)));
        return this;
    }

    /// <summary>
    /// The compensation is done only when a <typeparamref name="TConfirmation"/> arrives: each attempt waits
    /// <paramref name="timeout"/> (30 s by default), up to <paramref name="maxAttempts"/> (5 by default); after the last,
    /// the instance is suspended for an operator. Without a confirmation, a compensation is done once its message is
    /// committed to the outbox.
    /// </summary>
    public WorkflowStep<TState> ConfirmCompensationBy<TConfirmation>(TimeSpan? timeout = null, int maxAttempts = 5)
    {
        if (maxAttempts is < 1 or > 100)
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': {maxAttempts} compensation attempts is not between 1 and 100.");
        }

        if (timeout is { } t && (t <= TimeSpan.Zero || t > TimeSpan.FromDays(365)))
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}': a compensation timeout of {t} is not between 0 and 365 days.");
        }

        CompensationConfirmation = typeof(TConfirmation);
        CompensationTimeout = timeout ?? CompensationTimeout;
        CompensationAttempts = maxAttempts;
        return this;
    }

    /// <summary>Declares that this step's effect needs no undoing, and why (recorded in the definition).</summary>
    public WorkflowStep<TState> NoCompensation(string reason)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        if (Compensation is not null)
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}' has a compensation and says it needs none; it is one or the other.");
        }

        NoCompensationReason = reason;
        return this;
    }

    private void SetAction(StepAction action)
    {
        if (Action is not null)
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}' already sends or publishes; a step has one effect.");
        }

        Action = action;
    }

    private void SetCompensation(StepAction action)
    {
        if (Compensation is not null)
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}' already has a compensation.");
        }

        if (NoCompensationReason is not null)
        {
            throw new InvalidWorkflowDefinitionException($"Step '{Name}' says it needs no compensation ({NoCompensationReason}) and is given one; it is one or the other.");
        }

        Compensation = action;
    }
}

/// <summary>Where a reply takes the workflow.</summary>
/// <typeparam name="TState">The workflow's state.</typeparam>
public abstract class ReplyRule<TState>
    where TState : class
{
    private protected ReplyRule(WorkflowStep<TState> step) => Step = step;

    /// <summary>The step the rule belongs to.</summary>
    public WorkflowStep<TState> Step { get; }

    internal abstract Type ReplyType { get; }

    internal ReplyOutcome Outcome { get; private protected set; } = ReplyOutcome.Default;

    internal string? Target { get; private protected set; }

    internal abstract TState Evolve(TState state, object reply);

    internal abstract string Reason(TState state, object reply);
}

/// <summary>Where a reply of type <typeparamref name="TReply"/> takes the workflow; each method returns the step to go on defining it.</summary>
/// <typeparam name="TState">The workflow's state.</typeparam>
/// <typeparam name="TReply">The reply.</typeparam>
public sealed class ReplyRule<TState, TReply> : ReplyRule<TState>
    where TState : class
{
    private readonly Func<TState, TReply, TState>? _evolve;
    private Func<TState, TReply, string>? _reason;

    internal ReplyRule(WorkflowStep<TState> step, Func<TState, TReply, TState>? evolve)
        : base(step) => _evolve = evolve;

    internal override Type ReplyType => typeof(TReply);

    /// <summary>The step completes and the workflow goes to <paramref name="step"/>.</summary>
    public WorkflowStep<TState> Then(string step)
    {
        Outcome = ReplyOutcome.GoTo;
        Target = WorkflowNames.ValidateStep(step);
        return Step;
    }

    /// <summary>The step completes and so does the workflow.</summary>
    public WorkflowStep<TState> Complete()
    {
        Outcome = ReplyOutcome.Complete;
        return Step;
    }

    /// <summary>The step completes and the workflow goes to the step's default next one.</summary>
    public WorkflowStep<TState> Continue()
    {
        Outcome = ReplyOutcome.Default;
        return Step;
    }

    /// <summary>The step fails for good, with the reason made from the reply: the failure path follows (no retry).</summary>
    public WorkflowStep<TState> Fail(Func<TReply, string> reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        Outcome = ReplyOutcome.Fail;
        _reason = (_, r) => reason(r);
        return Step;
    }

    /// <summary>The attempt failed: the step is tried again if attempts are left, else it fails.</summary>
    public WorkflowStep<TState> Retry(Func<TReply, string>? reason = null)
    {
        Outcome = ReplyOutcome.Retry;
        _reason = reason is null ? null : (_, r) => reason(r);
        return Step;
    }

    internal override TState Evolve(TState state, object reply) => _evolve is null ? state : _evolve(state, (TReply)reply);

    internal override string Reason(TState state, object reply) => _reason?.Invoke(state, (TReply)reply) ?? $"{typeof(TReply).Name} received";
}

internal enum ReplyOutcome
{
    Default,
    GoTo,
    Complete,
    Fail,
    Retry,
}

internal enum StepActionKind
{
    Send,
    Publish,
}

/// <summary>A step's or a compensation's message: where it goes, its declared type (checked at start when concrete), and how it is made.</summary>
internal sealed record StepAction(StepActionKind Kind, string Target, Type MessageType, Func<object, object> Make);
