using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Cairn.Serialization;

namespace Cairn.Workflows;

/// <summary>A workflow definition checked whole and compiled for the coordinator: names resolved, types registered, no generics.</summary>
internal sealed class WorkflowModel
{
    private WorkflowModel(string name, int version, Messaging.QueueName queue, int concurrency, string firstStep, IReadOnlyDictionary<string, StepModel> steps)
    {
        Name = name;
        Version = version;
        Queue = queue;
        Concurrency = concurrency;
        FirstStep = firstStep;
        Steps = steps;
    }

    public string Name { get; }

    public int Version { get; }

    public Messaging.QueueName Queue { get; }

    public int Concurrency { get; }

    public string FirstStep { get; }

    public IReadOnlyDictionary<string, StepModel> Steps { get; }

    /// <summary>Start rules by message type name.</summary>
    public Dictionary<string, StartModel> Starts { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Refuses a definition whose delayed sends could not be sent: a retry's backoff is a command sent (or an event
    /// published) for later to the step's queue (or topic), and a compensation may be sent for later too (its own
    /// retries, and a cancel during a retry's backoff sends it for when the delayed attempt is delivered). A queue
    /// refuses a message that would become visible only past its retention, so such a decision could never commit and
    /// the instance would be stranded. A published message reaches the queues subscribed to its topic, each checked;
    /// queues and subscriptions this process does not know (declared elsewhere) are not.
    /// </summary>
    /// <exception cref="InvalidWorkflowDefinitionException">A backoff reaches its queue's retention.</exception>
    public async Task CheckDelaysFitAsync(Messaging.IMessagingAdmin queues, CancellationToken cancellationToken)
    {
        // A cancel holds the compensations back until the delayed attempt of whichever step is running is delivered.
        var longestStepBackoff = Steps.Values.Where(s => s.Action is not null && s.MaxAttempts > 1).Select(s => s.BackoffBefore(s.MaxAttempts)).DefaultIfEmpty(TimeSpan.Zero).Max();
        foreach (var step in Steps.Values)
        {
            if (step.Action is { } action && step.MaxAttempts > 1)
            {
                await CheckEffectAsync(action, step.BackoffBefore(step.MaxAttempts), $"step '{step.Name}' retries after up to {step.BackoffBefore(step.MaxAttempts)}").ConfigureAwait(false);
            }

            if (step.Compensation is { } compensation)
            {
                var longest = Max(OwnCompensationBackoff(step), longestStepBackoff);
                if (longest > TimeSpan.Zero)
                {
                    await CheckEffectAsync(compensation, longest, $"the compensation of step '{step.Name}' may be sent for up to {longest} later (its retries, or a cancel during a retry's backoff)").ConfigureAwait(false);
                }
            }
        }

        // The timers (a Wait, a timeout counted from a delayed attempt's delivery, a compensation's confirmation
        // timeout) are delayed messages to the workflow's own queue: one declared again with a shorter retention after
        // AddWorkflow (AddQueue of the same name) would refuse them.
        foreach (var step in Steps.Values)
        {
            var backoff = step.MaxAttempts > 1 ? step.BackoffBefore(step.MaxAttempts) : TimeSpan.Zero;
            if (step.Delay is { } wait)
            {
                await CheckAsync(Queue.Value, wait, $"step '{step.Name}' waits {wait} on a timer").ConfigureAwait(false);
            }

            if (step.Timeout is { } timeout)
            {
                await CheckAsync(Queue.Value, backoff + timeout, $"the timeout of step '{step.Name}' may fall due {backoff + timeout} after it is armed").ConfigureAwait(false);
            }

            if (step.CompensationConfirmation is not null)
            {
                // Armed when the compensation is sent: after its own backoff, or after a cancel's hold-back.
                var due = Max(OwnCompensationBackoff(step), longestStepBackoff) + step.CompensationTimeout;
                await CheckAsync(Queue.Value, due, $"the confirmation timeout of the compensation of step '{step.Name}' may fall due {due} after it is armed").ConfigureAwait(false);
            }
        }

        static TimeSpan OwnCompensationBackoff(StepModel step) =>
            step.CompensationConfirmation is not null && step.CompensationAttempts > 1 ? step.BackoffBefore(step.CompensationAttempts) : TimeSpan.Zero;

        static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

        async Task CheckEffectAsync(StepAction effect, TimeSpan delay, string what)
        {
            if (effect.Kind == StepActionKind.Send)
            {
                await CheckAsync(effect.Target, delay, what).ConfigureAwait(false);
                return;
            }

            IReadOnlyList<Messaging.TopicSubscription> subscriptions;
            try
            {
                subscriptions = await queues.ListSubscriptionsAsync(new Messaging.TopicName(effect.Target), cancellationToken).ConfigureAwait(false);
            }
            catch (Messaging.TopicNotFoundException)
            {
                return;
            }

            foreach (var subscription in subscriptions)
            {
                await CheckAsync(subscription.Queue.Value, delay, $"{what}, published to topic '{effect.Target}' and by its subscription '{subscription.Name}' to queue '{subscription.Queue}'").ConfigureAwait(false);
            }
        }

        async Task CheckAsync(string target, TimeSpan delay, string what)
        {
            if (await queues.GetQueueAsync(new Messaging.QueueName(target), cancellationToken).ConfigureAwait(false) is { } queue && delay >= queue.Retention)
            {
                throw new InvalidWorkflowDefinitionException($"Workflow '{Name}': {what}, which reaches the retention of queue '{target}' ({queue.Retention}): the queue would refuse the delayed message and the instance would be stranded. Shorten the backoff or lengthen the queue's retention.");
            }
        }
    }

    /// <summary>True when a step waits for messages of this type, as a reply or a compensation's confirmation.</summary>
    public bool IsReply(string type) => _replyTypes.Contains(type);

    private HashSet<string> _replyTypes = [];

    /// <summary>Instance-id selectors by reply type name.</summary>
    public Dictionary<string, Func<object, string?>> Correlations { get; } = new(StringComparer.Ordinal);

    public required Func<JsonElement, object> ReadState { get; init; }

    public required Func<object, JsonElement> WriteState { get; init; }

    public required Type StateType { get; init; }

    /// <summary>The stream of an instance: <c>wf:&lt;workflow&gt;-&lt;id&gt;</c>.</summary>
    public EventStore.StreamName StreamOf(string instanceId) => new("wf:" + Name + "-" + instanceId);

    public StepModel Step(string name) => Steps.TryGetValue(name, out var step)
        ? step
        : throw new WorkflowStateException($"Workflow '{Name}' has no step '{name}' (its history names a step its definition no longer has).");

    public static WorkflowModel Compile<TState>(
        Workflow<TState> workflow,
        IReadOnlyList<WorkflowStep<TState>> steps,
        IReadOnlyList<Workflow<TState>.StartRule> starts,
        IReadOnlyDictionary<Type, Func<object, string?>> correlations,
        EventSerializer serializer)
        where TState : class
    {
        var name = workflow.Name;
        void Refuse(string fault) => throw new InvalidWorkflowDefinitionException($"Workflow '{name}': {fault}.");
        string TypeName(Type type, string role) => serializer.Registry.TryGetName(type, out var n) && n is not null
            ? n
            : throw new InvalidWorkflowDefinitionException($"Workflow '{name}': {role} {type.Name} has no registered type name; register it in AddCairn's EventTypes.");

        if (steps.Count == 0)
        {
            Refuse("it declares no step");
        }

        if (workflow.Version < 1)
        {
            Refuse($"its version is {workflow.Version}; versions start at 1");
        }

        if (workflow.Concurrency is < 1 or > 1024)
        {
            Refuse($"its concurrency is {workflow.Concurrency}; it must be between 1 and 1024");
        }

        var models = new Dictionary<string, StepModel>(StringComparer.Ordinal);
        foreach (var step in steps)
        {
            if (models.ContainsKey(step.Name))
            {
                Refuse($"step '{step.Name}' is declared twice");
            }

            var waits = step.Replies.Count > 0;
            if (step.Delay is not null && (step.Action is not null || waits))
            {
                Refuse($"step '{step.Name}' waits on a timer and also sends or expects replies; make them two steps");
            }

            if (step.Action is null && step.Delay is null && !waits)
            {
                Refuse($"step '{step.Name}' does nothing: give it Send, Publish, Wait or a reply to wait for");
            }

            var hasDefault = step.NextStep is not null || step.CompletesWorkflow;
            if (!hasDefault && (step.Delay is not null || !waits || step.Replies.Any(r => r.Outcome == ReplyOutcome.Default)))
            {
                Refuse($"step '{step.Name}' moves on to its next step, but names none: add Then(\"...\") or Complete()");
            }

            if (!waits && step.TimeoutAfter is not null)
            {
                Refuse($"step '{step.Name}' has a timeout but waits for no reply");
            }

            if (!waits && step.MaxAttempts > 1)
            {
                Refuse($"step '{step.Name}' retries but waits for no reply, so it cannot fail");
            }

            if (step.CompensationConfirmation is not null && step.Compensation is null)
            {
                Refuse($"step '{step.Name}' confirms a compensation it does not have");
            }

            if (step.Action is null && step.Compensation is not null)
            {
                Refuse($"step '{step.Name}' has a compensation but no effect to undo");
            }

            foreach (var (action, role) in new[] { (step.Action, "message"), (step.Compensation, "compensation") })
            {
                // A concrete type is checked now; a base type (object, an interface) only when a message is made.
                if (action is { MessageType: { IsAbstract: false, IsInterface: false } type } && type != typeof(object))
                {
                    TypeName(type, $"step '{step.Name}''s {role}");
                }
            }

            var replies = new Dictionary<string, ReplyModel>(StringComparer.Ordinal);
            foreach (var rule in step.Replies)
            {
                var replyName = TypeName(rule.ReplyType, $"step '{step.Name}''s reply");
                var target = rule.Outcome switch
                {
                    ReplyOutcome.GoTo => rule.Target,
                    ReplyOutcome.Default => step.NextStep,
                    _ => null,
                };
                var completes = rule.Outcome == ReplyOutcome.Complete || (rule.Outcome == ReplyOutcome.Default && step.CompletesWorkflow);
                replies[replyName] = new ReplyModel(replyName, rule.Outcome, target, completes, (s, r) => rule.Evolve((TState)s, r), (s, r) => rule.Reason((TState)s, r));
            }

            models[step.Name] = new StepModel
            {
                Name = step.Name,
                Action = step.Action,
                Delay = step.Delay,
                Replies = replies,
                Next = step.NextStep,
                CompletesWorkflow = step.CompletesWorkflow,
                Timeout = step.TimeoutAfter,
                MaxAttempts = step.MaxAttempts,
                Backoff = step.RetryBackoff,
                FailureAction = step.FailureAction,
                Compensation = step.Compensation,
                CompensationConfirmation = step.CompensationConfirmation is { } c ? TypeName(c, $"step '{step.Name}''s compensation confirmation") : null,
                CompensationTimeout = step.CompensationTimeout,
                CompensationAttempts = step.CompensationAttempts,
                NoCompensationReason = step.NoCompensationReason,
            };
        }

        foreach (var step in models.Values)
        {
            foreach (var target in step.Targets.Where(t => !models.ContainsKey(t)))
            {
                Refuse($"step '{step.Name}' goes to step '{target}', which is not declared");
            }
        }

        var first = steps[0].Name;
        var reachable = Reach(models, [first]);
        foreach (var step in steps.Where(s => !reachable.Contains(s.Name)))
        {
            Refuse($"step '{step.Name}' is unreachable: no step before it goes there from '{first}'");
        }

        // Steps that complete at once (no reply, no delay) move on in the same decision: a loop of them alone never
        // stops to wait, and would run without end. Named once, by its first step in name order.
        foreach (var start in models.Values.Where(s => s.CompletesAtOnce))
        {
            var loop = new List<string>();
            for (var at = start; at is { CompletesAtOnce: true } && !loop.Contains(at.Name); at = at.Next is { } next ? models.GetValueOrDefault(next) : null)
            {
                loop.Add(at.Name);
                if (at.Next == start.Name && loop.Min(StringComparer.Ordinal) == start.Name)
                {
                    Refuse($"steps '{string.Join("' → '", loop)}' → '{start.Name}' each complete at once (no reply, no delay) and go to one another without end: let one of them wait for a reply or a delay");
                }
            }
        }

        foreach (var step in models.Values.Where(s => s.Action is not null && s.Compensation is null && s.NoCompensationReason is null))
        {
            var later = Reach(models, step.Targets).Where(s => models[s].CanFail).ToList();
            if (later.Count > 0)
            {
                Refuse($"step '{step.Name}' has an effect and no compensation, but a later step can fail ('{string.Join("', '", later.Order(StringComparer.Ordinal))}'): add CompensateWith(...) or NoCompensation(\"why\")");
            }
        }

        JsonTypeInfo<TState> stateInfo;
        try
        {
            stateInfo = (JsonTypeInfo<TState>)serializer.Options.GetTypeInfo(typeof(TState));
        }
        catch (NotSupportedException ex)
        {
            throw new InvalidWorkflowDefinitionException($"Workflow '{name}': its state {typeof(TState).Name} cannot be serialized with the configured JSON options: {ex.Message}");
        }

        // A state that writes may still not read back (a constructor parameter that binds to no property, no
        // constructor the options can use): System.Text.Json says so only when it first reads one, so read an empty
        // object now. What the state's own constructor or the empty object's missing values raise is not the type's fault.
        try
        {
            JsonSerializer.Deserialize("{}", stateInfo);
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException && ex.Source == typeof(JsonSerializer).Assembly.GetName().Name)
        {
            throw new InvalidWorkflowDefinitionException($"Workflow '{name}': its state {typeof(TState).Name} cannot be read back with the configured JSON options: {ex.Message}");
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The state's constructor refused the empty object's values, or a required property is missing: data-dependent.
        }

        var model = new WorkflowModel(name, workflow.Version, workflow.Queue, workflow.Concurrency, first, models)
        {
            StateType = typeof(TState),
            ReadState = json => json.Deserialize(stateInfo) ?? throw new WorkflowStateException($"Workflow '{name}': a stored state is null."),
            WriteState = state => JsonSerializer.SerializeToElement((TState)state, stateInfo),
        };

        var replyTypes = models.Values.SelectMany(s => s.Replies.Keys.Concat(s.CompensationConfirmation is { } c ? [c] : [])).ToHashSet(StringComparer.Ordinal);
        model._replyTypes = replyTypes;
        foreach (var start in starts)
        {
            var startName = TypeName(start.MessageType, "the start message");
            if (replyTypes.Contains(startName))
            {
                Refuse($"{start.MessageType.Name} both starts instances and is a reply; a message can be only one");
            }

            if (!model.Starts.TryAdd(startName, new StartModel(m => start.Start(m), start.Correlate)))
            {
                Refuse($"{start.MessageType.Name} starts instances twice");
            }
        }

        foreach (var (type, correlate) in correlations)
        {
            model.Correlations[TypeName(type, "the correlated reply")] = correlate;
        }

        return model;
    }

    /// <summary>The steps reachable from <paramref name="starts"/>, them included.</summary>
    private static HashSet<string> Reach(Dictionary<string, StepModel> steps, IEnumerable<string> starts)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>(starts);
        while (pending.TryPop(out var name))
        {
            if (seen.Add(name) && steps.TryGetValue(name, out var step))
            {
                foreach (var target in step.Targets)
                {
                    pending.Push(target);
                }
            }
        }

        return seen;
    }
}

/// <summary>A compiled step.</summary>
internal sealed class StepModel
{
    public required string Name { get; init; }

    public StepAction? Action { get; init; }

    public TimeSpan? Delay { get; init; }

    public required IReadOnlyDictionary<string, ReplyModel> Replies { get; init; }

    public string? Next { get; init; }

    public bool CompletesWorkflow { get; init; }

    public TimeSpan? Timeout { get; init; }

    public int MaxAttempts { get; init; }

    public TimeSpan Backoff { get; init; }

    public StepFailureAction FailureAction { get; init; }

    public StepAction? Compensation { get; init; }

    public string? CompensationConfirmation { get; init; }

    public TimeSpan CompensationTimeout { get; init; }

    public int CompensationAttempts { get; init; }

    public string? NoCompensationReason { get; init; }

    /// <summary>True when the step completes as soon as it has started: it waits for nothing.</summary>
    public bool CompletesAtOnce => Delay is null && Replies.Count == 0;

    /// <summary>True when the step can fail: a timeout, or a reply that fails it or asks for a retry.</summary>
    public bool CanFail => Timeout is not null || Replies.Values.Any(r => r.Outcome is ReplyOutcome.Fail or ReplyOutcome.Retry);

    /// <summary>The steps this one can go to.</summary>
    public IEnumerable<string> Targets =>
        Replies.Values.Select(r => r.Target).Append(Next).OfType<string>().Distinct(StringComparer.Ordinal);

    /// <summary>
    /// Where skipping the step goes: its default next step, or else the one place all its successful replies lead
    /// (null for the workflow's end). False when they lead to different steps.
    /// </summary>
    public bool TryGetSkipTarget(out string? next)
    {
        if (Next is not null || CompletesWorkflow)
        {
            next = Next;
            return true;
        }

        var targets = Replies.Values.Where(r => r.Outcome is not (ReplyOutcome.Fail or ReplyOutcome.Retry)).Select(r => r.Completes ? null : r.Target).Distinct().ToList();
        next = targets.Count == 1 ? targets[0] : null;
        return targets.Count == 1;
    }

    /// <summary>The delay before attempt <paramref name="attempt"/> (2 or later): the backoff, doubled per attempt after the second.</summary>
    public TimeSpan BackoffBefore(int attempt) =>
        TimeSpan.FromTicks((long)Math.Min(Backoff.Ticks * Math.Pow(2, Math.Max(0, attempt - 2)), TimeSpan.FromDays(1).Ticks));
}

/// <summary>A compiled reply rule.</summary>
internal sealed record ReplyModel(string TypeName, ReplyOutcome Outcome, string? Target, bool Completes, Func<object, object, object> Evolve, Func<object, object, string> Reason);

/// <summary>A compiled start rule.</summary>
internal sealed record StartModel(Func<object, object> Start, Func<object, string>? Correlate);
