using Cairn.Envelopes;
using Cairn.Messaging;
using Cairn.Serialization;

namespace Cairn.Workflows;

/// <summary>A message a decision sends or publishes, committed with the decision's events.</summary>
internal sealed record WorkflowEffect(StepActionKind Kind, string Target, OutgoingMessage Message);

/// <summary>
/// Decides what one trigger (a start, a reply, a timer, an operator's action) does to one instance: the events to
/// append and the messages to send with them. Pure but for the clock: the coordinator commits the result with the
/// instance's expected version, so a decision taken twice commits once.
/// </summary>
internal sealed class WorkflowDecider
{
    /// <summary>The metadata key naming the queue replies go to.</summary>
    public const string ReplyToKey = "replyto";

    /// <summary>The metadata key of a step's idempotency key, the same on each attempt.</summary>
    public const string IdempotencyKey = "idempotencykey";

    private readonly WorkflowModel _model;
    private readonly EventSerializer _serializer;
    private readonly DateTimeOffset _now;
    private readonly string _instanceId;
    private readonly List<(string Step, double Seconds)> _stepDurations = [];
    private object? _state;
    private readonly string _stream;

    public WorkflowDecider(WorkflowModel model, EventSerializer serializer, WorkflowInstance instance, string instanceId, DateTimeOffset now)
    {
        _model = model;
        _serializer = serializer;
        Instance = instance;
        _instanceId = instanceId;
        _stream = model.StreamOf(instanceId).Value;
        _now = now;
        ExpectedVersion = instance.StreamVersion;
        _versionOffset = instance.VersionOffset;
        _run = instance.Run;
    }

    private readonly long _versionOffset;

    /// <summary>The instance's run (<see cref="WorkflowInstance.Run"/>), set by the start for a new instance.</summary>
    private string _run;

    /// <summary>The instance's id.</summary>
    public string InstanceId => _instanceId;

    /// <summary>The steps completed by the decision, with the time since their first attempt started.</summary>
    public IReadOnlyList<(string Step, double Seconds)> StepDurations => _stepDurations;

    /// <summary>The instance, with the decision's events applied.</summary>
    public WorkflowInstance Instance { get; }

    /// <summary>The stream version the decision was taken on (-1 for a new instance).</summary>
    public long ExpectedVersion { get; }

    public List<WorkflowEvent> Events { get; } = [];

    public List<WorkflowEffect> Effects { get; } = [];

    /// <summary>The times the decision stopped the instance for an operator: a refusal of a step already suspended is not one.</summary>
    public int Suspensions { get; private set; }

    /// <summary>
    /// Where the instance stands for an operator's retry or skip: its status, and the step visit or compensation with
    /// its attempt. An action decided again after a conflict must find it unchanged.
    /// </summary>
    public string OperatorPosition
    {
        get
        {
            var instance = Instance;
            var attempt = instance.CurrentStep is not null ? instance.Attempt : instance.CompensationAttempt;
            return $"{instance.Status.ToString().ToLowerInvariant()}, {instance.Answerable?.ToString() ?? "nothing running"}, attempt {attempt}";
        }
    }

    /// <summary>Starts a new instance with <paramref name="state"/>.</summary>
    /// <exception cref="WorkflowStateException">The state is null (a start rule that made none).</exception>
    public void Start(object state, string? startedBy)
    {
        if (state is null)
        {
            throw new WorkflowStateException($"Workflow '{_model.Name}': {(startedBy is null ? "the start" : $"the start rule for {startedBy}")} gave no state.");
        }

        Emit(new WorkflowStarted(_model.Name, _model.Version, _instanceId, _model.WriteState(state), startedBy, _now));
        StartStep(_model.FirstStep, 1, null);
    }

    /// <summary>A start message for an instance that exists already: recorded, nothing else.</summary>
    public void StartAgain(string messageType, string messageId) =>
        Emit(new ReplyIgnored(messageType, messageId, "the instance was already started"));

    /// <summary>
    /// Applies a reply. A confirmation answering a message the instance sent for another compensation (its causation id
    /// says which) is ignored: a confirmation type two compensations share would otherwise confirm one with the other's
    /// answer. So is a reply to an earlier visit of the step now running (a loop): it answers a request that is over.
    /// </summary>
    public void Reply(string type, string id, object reply, string? causationId = null)
    {
        var instance = Instance;
        if (instance.HasSeen(id))
        {
            Emit(new ReplyIgnored(type, id, "a duplicate of a reply already applied"));
            return;
        }

        if (instance.IsFinished)
        {
            Emit(new ReplyIgnored(type, id, $"the instance had already {instance.Status.ToString().ToLowerInvariant()}"));
            return;
        }

        if (causationId is not null && instance.SentForMessage(causationId) is { } answered && instance.Answerable is { } now
            && (answered.Excludes(now) || IsRepeatAnswer(answered, now, type)))
        {
            Emit(new ReplyIgnored(type, id, $"an answer to {answered}, which is over"));
            return;
        }

        // A compensation suspended after its last attempt timed out still takes its confirmation, as a step does.
        if (instance.Status is WorkflowStatus.Compensating or WorkflowStatus.Suspended && instance.CurrentCompensation is { } compensating
            && _model.Step(compensating).CompensationConfirmation == type)
        {
            Emit(new CompensationCompleted(compensating, type, id));
            NextCompensation();
            return;
        }

        if (instance.Status is WorkflowStatus.Running or WorkflowStatus.Suspended && instance.CurrentStep is { } current
            && _model.Step(current).Replies.TryGetValue(type, out var rule))
        {
            var answersReplacedAttempt = causationId is not null && causationId != instance.CurrentMessageId
                && instance.SentForMessage(causationId) is { Compensation: false } earlier && earlier.Step == current;

            // "Try again" from an attempt that a later one has replaced (it timed out, or an operator retried) asks for
            // what is already under way: it would spend one more attempt, and send it, for nothing.
            if (rule.Outcome == ReplyOutcome.Retry && answersReplacedAttempt)
            {
                Emit(new ReplyIgnored(type, id, $"a retryable failure of an earlier attempt of step '{current}', which attempt {instance.Attempt} has replaced"));
                return;
            }

            ApplyRule(_model.Step(current), rule, type, id, reply, answersReplacedAttempt);
            return;
        }

        var waiting = instance.CurrentStep is { } s ? $"step '{s}' waits for {string.Join(", ", _model.Step(s).Replies.Keys)}"
            : instance.CurrentCompensation is { } c ? $"the compensation of '{c}' waits for {_model.Step(c).CompensationConfirmation ?? "nothing"}"
            : "nothing waits for a reply";
        Emit(new ReplyIgnored(type, id, $"not expected now ({instance.Status.ToString().ToLowerInvariant()}; {waiting})"));
    }

    /// <summary>
    /// Applies a fired timer, armed by the run <paramref name="run"/> of the instance id (null for a timer that does not
    /// say, armed before runs were recorded in timers: it is told by its token alone).
    /// </summary>
    public void Timer(string token, string? run = null)
    {
        var instance = Instance;
        if (run is not null && run != instance.Run)
        {
            // Its token counts versions from its own run's start, as the current run's do: it could match.
            Emit(new TimerIgnored(token, "it was armed by an earlier instance with this id, whose history was deleted"));
            return;
        }

        if (instance.ArmedTimer != token)
        {
            var why = instance.IsFinished ? $"the instance had already {instance.Status.ToString().ToLowerInvariant()}" : "its step or compensation had moved on";
            Emit(new TimerIgnored(token, why));
            return;
        }

        if (instance.Status == WorkflowStatus.Compensating && instance.CurrentCompensation is { } compensating)
        {
            var step = _model.Step(compensating);
            Emit(new CompensationTimedOut(compensating, instance.CompensationAttempt));
            if (instance.CompensationAttempt < step.CompensationAttempts)
            {
                StartCompensation(step, instance.CompensationAttempt + 1, _now + step.BackoffBefore(instance.CompensationAttempt + 1));
            }
            else
            {
                Emit(new WorkflowSuspended(compensating, $"the compensation of '{compensating}' was not confirmed after {step.CompensationAttempts} attempts"));
            }

            return;
        }

        var current = _model.Step(instance.CurrentStep!);
        if (current.Delay is not null)
        {
            Emit(new StepCompleted(current.Name, instance.Attempt, null, null, null, current.Next));
            MoveOn(current.Next);
            return;
        }

        Emit(new StepTimedOut(current.Name, instance.Attempt));
        RetryOrFail(current, $"step '{current.Name}' timed out after {instance.Attempt} attempt(s)", null, null, effectUncertain: true);
    }

    /// <summary>An operator cancels the instance: its completed steps (and the running one's effect, if any) are compensated.</summary>
    public void Cancel(string reason)
    {
        var instance = Instance;
        if (instance.IsFinished)
        {
            throw new WorkflowStateException($"Workflow instance {_model.Name}/{_instanceId} cannot be cancelled: it has already {instance.Status.ToString().ToLowerInvariant()}.");
        }

        if (instance.Status == WorkflowStatus.Compensating || (instance.Status == WorkflowStatus.Suspended && instance.CurrentCompensation is not null))
        {
            throw new WorkflowStateException($"Workflow instance {_model.Name}/{_instanceId} cannot be cancelled: it is already compensating; retry or skip the compensation of '{instance.CurrentCompensation}'.");
        }

        Emit(new WorkflowCancelRequested(reason));

        // The current step may have had its effect, unless it stands suspended after its service said no (a reply
        // failed it): then, as on the failure path, it is not compensated. One suspended after a timeout is.
        var refused = instance.Status == WorkflowStatus.Suspended && instance.UncertainStep != instance.CurrentStep;
        var running = instance.CurrentStep is { } s && _model.Step(s).Action is not null && !refused ? s : null;

        BeginCompensation(reason, cancelled: true, running);
    }

    /// <summary>An operator retries the current step (suspended or waiting) or the suspended compensation.</summary>
    public void Retry(string? reason)
    {
        var instance = Instance;
        if (instance.Status == WorkflowStatus.Suspended && instance.CurrentCompensation is { } compensating)
        {
            Emit(new StepRetryRequested(compensating, reason));
            StartCompensation(_model.Step(compensating), instance.CompensationAttempt + 1, null);
            return;
        }

        if (instance.Status is WorkflowStatus.Running or WorkflowStatus.Suspended && instance.CurrentStep is { } step)
        {
            Emit(new StepRetryRequested(step, reason));
            StartStep(step, instance.Attempt + 1, null);
            return;
        }

        throw new WorkflowStateException($"Workflow instance {_model.Name}/{_instanceId} has no step to retry: it is {instance.Status.ToString().ToLowerInvariant()}.");
    }

    /// <summary>An operator skips the current step (to its next one) or the suspended compensation.</summary>
    public void Skip(string reason)
    {
        var instance = Instance;
        if (instance.Status == WorkflowStatus.Suspended && instance.CurrentCompensation is { } compensating)
        {
            Emit(new CompensationSkipped(compensating, reason));
            NextCompensation();
            return;
        }

        if (instance.Status is WorkflowStatus.Running or WorkflowStatus.Suspended && instance.CurrentStep is { } name)
        {
            var step = _model.Step(name);
            if (!step.TryGetSkipTarget(out var next))
            {
                var why = step.Replies.Values.Any(r => r.Outcome is not (ReplyOutcome.Fail or ReplyOutcome.Retry)) ? "its replies lead to different steps" : "none of its replies leads on";
                throw new WorkflowStateException($"Step '{name}' of workflow '{_model.Name}' cannot be skipped: {why} and it names no next step (Then or Complete).");
            }

            Emit(new StepSkipped(name, reason));
            MoveOn(next);
            return;
        }

        throw new WorkflowStateException($"Workflow instance {_model.Name}/{_instanceId} has no step to skip: it is {instance.Status.ToString().ToLowerInvariant()}.");
    }

    /// <summary>
    /// Applies a reply's rule. <paramref name="answersReplacedAttempt"/>: it answers an attempt a later one replaced, so a
    /// refusal speaks for that attempt alone, and the later one, sent and never recalled, may still take effect.
    /// </summary>
    private void ApplyRule(StepModel step, ReplyModel rule, string type, string id, object reply, bool answersReplacedAttempt)
    {
        var attempt = Instance.Attempt;
        switch (rule.Outcome)
        {
            case ReplyOutcome.Fail:
                Emit(new StepFailed(step.Name, attempt, rule.Reason(CurrentState(), reply), type, id, EffectUncertain: answersReplacedAttempt));
                FailurePath(step, Instance.Reason!, effectUncertain: answersReplacedAttempt);
                return;
            case ReplyOutcome.Retry:
                var reason = rule.Reason(CurrentState(), reply);
                Emit(new StepAttemptFailed(step.Name, attempt, type, id, reason));
                RetryOrFail(step, reason, type, id, effectUncertain: false);
                return;
            default:
                var before = CurrentState();
                var after = rule.Evolve(before, reply) ?? throw new WorkflowStateException($"Workflow '{_model.Name}': the rule of step '{step.Name}' for reply {type} gave no state.");
                var next = rule.Completes ? null : rule.Target;
                Emit(new StepCompleted(step.Name, attempt, type, id, ReferenceEquals(before, after) ? null : _model.WriteState(after), next));
                MoveOn(next);
                return;
        }
    }

    private void RetryOrFail(StepModel step, string reason, string? replyType, string? replyId, bool effectUncertain)
    {
        var attempt = Instance.Attempt;
        if (attempt < step.MaxAttempts)
        {
            StartStep(step.Name, attempt + 1, _now + step.BackoffBefore(attempt + 1));
            return;
        }

        Emit(new StepFailed(step.Name, attempt, reason, replyType, replyId, effectUncertain));
        FailurePath(step, reason, effectUncertain);
    }

    private void FailurePath(StepModel step, string reason, bool effectUncertain)
    {
        if (step.FailureAction == StepFailureAction.Suspend)
        {
            Emit(new WorkflowSuspended(step.Name, reason));
            return;
        }

        BeginCompensation(reason, cancelled: false, effectUncertain ? step.Name : null);
    }

    /// <summary>
    /// Begins compensating the completed steps, and <paramref name="uncertainStep"/> (the running step, whose effect
    /// may have happened) first when given.
    /// </summary>
    private void BeginCompensation(string reason, bool cancelled, string? uncertainStep)
    {
        var steps = Instance.CompletedSteps.Append(uncertainStep).OfType<string>()
            .Where(s => _model.Step(s).Compensation is not null)
            .Reverse()
            .ToList();

        // An attempt of the running step sent for later (a retry's backoff, also one an operator's retry overtook) cannot
        // be recalled: it is delivered all the same, so the compensations are sent for no earlier, not to be carried out
        // before the effect they undo.
        var notBefore = uncertainStep is not null && Instance.LastSendAt is { } due && due > _now ? due : (DateTimeOffset?)null;
        Emit(new CompensationBegan(steps, reason, cancelled));
        NextCompensation(notBefore);
    }

    /// <summary>Starts the next pending compensation, sent at <paramref name="sendAt"/> when given, or ends the instance.</summary>
    private void NextCompensation(DateTimeOffset? sendAt = null)
    {
        var instance = Instance;
        if (instance.PendingCompensations.Count > 0)
        {
            StartCompensation(_model.Step(instance.PendingCompensations[0]), 1, sendAt);
            return;
        }

        var reason = instance.CompensationReason ?? instance.Reason;
        Emit(instance.CancelledPath ? new WorkflowCancelled(reason ?? "cancelled") : new WorkflowFailed(reason ?? "failed"));
    }

    /// <summary>
    /// Whether a reply answering a step's command repeats the reply type that already completed that visit of the step:
    /// the second answer to a retried step (its service answers each attempt of one idempotency key). It would otherwise
    /// settle a later step waiting for the same type before that step's own command was answered. Replies of other types
    /// are the command's other consequences, which later steps may wait for (an order placed, then shipped).
    /// </summary>
    private bool IsRepeatAnswer(SentFor answered, SentFor now, string type) =>
        !answered.Compensation && !now.Compensation && answered != now && Instance.SettledBy(answered) == type;

    private void StartCompensation(StepModel step, int attempt, DateTimeOffset? sendAt)
    {
        if (step.Compensation is not { } compensation)
        {
            // Pending under an earlier version of the definition, whose step compensated: the hosted one says there is
            // nothing to undo, and the instance follows the definition hosted now.
            Emit(new CompensationSkipped(step.Name, $"the hosted definition of workflow '{_model.Name}' no longer compensates step '{step.Name}'"));
            NextCompensation(sendAt);
            return;
        }

        var version = NextVersion;
        // One key for every attempt of one compensation; a step compensated again (it completed on several visits) has
        // its later compensations numbered, so a service that keys its work by it carries out each.
        var occurrence = Instance.CompensationOccurrence(step.Name);
        var key = occurrence == 1 ? $"{_stream}/{_run}/compensate/{step.Name}" : $"{_stream}/{_run}/compensate/{step.Name}/{occurrence}";
        var message = MakeMessage(compensation, version, key, sendAt);
        DateTimeOffset? timeoutAt = step.CompensationConfirmation is null ? null : (sendAt ?? _now) + step.CompensationTimeout;
        Emit(new CompensationStarted(step.Name, attempt, message.Id.ToString(), message.Type, compensation.Target, timeoutAt, sendAt));
        Effects.Add(new WorkflowEffect(compensation.Kind, compensation.Target, message));
        if (timeoutAt is { } due)
        {
            ArmTimer(WorkflowInstance.TimerToken("compensation", step.Name, version), due);
            return;
        }

        // Unconfirmed: the next compensation goes out with this one, in order.
        Emit(new CompensationCompleted(step.Name, null, null));
        NextCompensation(sendAt);
    }

    private void MoveOn(string? next)
    {
        if (next is null)
        {
            Emit(new WorkflowCompleted());
            return;
        }

        StartStep(next, 1, null);
    }

    private void StartStep(string name, int attempt, DateTimeOffset? sendAt)
    {
        var step = _model.Step(name);
        var version = NextVersion;
        if (step.Delay is { } delay)
        {
            var due = _now + delay;
            Emit(new StepStarted(name, attempt, null, null, null, due, null));
            ArmTimer(WorkflowInstance.TimerToken("step", name, version), due);
            return;
        }

        OutgoingMessage? message = null;
        if (step.Action is { } action)
        {
            // The key is the same for every attempt of one visit of the step, so the receiver can tell a retry from a new
            // request; the run tells an id used again after its history was deleted from its earlier runs, whose keys a
            // service would take for repeats.
            var visit = attempt == 1 || Instance.CurrentStep != name ? version : Instance.StepVisit;
            message = MakeMessage(action, version, $"{_stream}/{_run}/{name}/{visit}", sendAt);
        }

        DateTimeOffset? timeoutAt = step.Timeout is { } timeout ? (sendAt ?? _now) + timeout : null;
        Emit(new StepStarted(name, attempt, message?.Id.ToString(), message?.Type, step.Action?.Target, timeoutAt, sendAt));
        if (message is not null)
        {
            Effects.Add(new WorkflowEffect(step.Action!.Kind, step.Action.Target, message));
        }

        if (timeoutAt is { } due2)
        {
            ArmTimer(WorkflowInstance.TimerToken("step", name, version), due2);
        }

        if (step.CompletesAtOnce)
        {
            Emit(new StepCompleted(name, attempt, null, null, null, step.Next));
            MoveOn(step.Next);
        }
    }

    private OutgoingMessage MakeMessage(StepAction action, long version, string idempotencyKey, DateTimeOffset? sendAt)
    {
        var body = action.Make(CurrentState());
        var message = _serializer.ToOutgoingMessage(body, DeterministicId($"{_stream}@{version}"));
        return message with
        {
            CorrelationId = _instanceId,
            DeliverAt = sendAt,
            Metadata = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                [ReplyToKey] = _model.Queue.Value,
                [IdempotencyKey] = idempotencyKey,
            },
        };
    }

    private void ArmTimer(string token, DateTimeOffset due)
    {
        var timer = _serializer.ToOutgoingMessage(new WorkflowTimer(_model.Name, _instanceId, token, _run), DeterministicId($"{_stream}@{token}"));
        Effects.Add(new WorkflowEffect(StepActionKind.Send, _model.Queue.Value, timer with { CorrelationId = _instanceId, DeliverAt = due }));
    }

    /// <summary>The state, deserialized once per decision and again only after an event changed it.</summary>
    private object CurrentState() => _state ??= _model.ReadState(Instance.State);

    /// <summary>
    /// The version the next emitted event gets, counted from the instance's start (<see cref="WorkflowInstance.VersionOffset"/>):
    /// what its timer tokens, message ids and step visits are made of.
    /// </summary>
    private long NextVersion => ExpectedVersion - _versionOffset + Events.Count + 1;

    private void Emit(WorkflowEvent e)
    {
        if (e is StepCompleted completed)
        {
            // The step's start is its event's stored time, which another host's clock, ahead of this one's, may have set.
            _stepDurations.Add((completed.Step, Math.Max(0, (_now - Instance.StepStartedAt).TotalSeconds)));
        }

        if (e is WorkflowSuspended && Instance.Status != WorkflowStatus.Suspended)
        {
            Suspensions++;
        }

        Events.Add(e);
        Instance.Apply(e, _now, ExpectedVersion + Events.Count);
        if (e is WorkflowStarted)
        {
            _run = Instance.Run;
        }

        if (e is WorkflowStarted or StepCompleted { State: not null })
        {
            _state = null;
        }
    }

    /// <summary>
    /// A message id derived from what it is for (<paramref name="key"/>, unique within the instance's stream) and when
    /// the instance started as its start event records it, so a decision taken again sends the same ids, and the ids of
    /// the instances in flight sort together near the right edge of every index keyed by message id
    /// (<see cref="MessageId.Derive"/>).
    /// </summary>
    private MessageId DeterministicId(string key) => MessageId.Derive(key, Instance.IdTime);
}
