using System.Text.Json;
using Cairn.Serialization;

namespace Cairn.Workflows;

/// <summary>
/// An event of a workflow instance's history. The instance's stream holds nothing else, so its current state, and its
/// state at any earlier time, is the fold of these.
/// </summary>
public abstract record WorkflowEvent;

/// <summary>The instance was started.</summary>
/// <param name="Workflow">The workflow's name.</param>
/// <param name="Version">The definition's version.</param>
/// <param name="InstanceId">The instance's id: its correlation id.</param>
/// <param name="State">The workflow's state, as JSON.</param>
/// <param name="StartedBy">The type of the message that started it, or null when started through the client.</param>
/// <param name="StartedAt">
/// When the decision that started it was taken: the time its message ids begin with, the same whether the instance is
/// read from its history or kept in memory. Null in histories written before it was recorded (the event's time serves).
/// </param>
public sealed record WorkflowStarted(string Workflow, int Version, string InstanceId, JsonElement State, string? StartedBy, DateTimeOffset? StartedAt = null) : WorkflowEvent;

/// <summary>A step's attempt began: its message was sent or published (at <paramref name="SendAt"/> when delayed), or its timer armed.</summary>
/// <param name="Step">The step.</param>
/// <param name="Attempt">The attempt, from 1.</param>
/// <param name="MessageId">The id of the message sent or published, if any.</param>
/// <param name="MessageType">Its type.</param>
/// <param name="Target">The queue or topic it went to.</param>
/// <param name="TimeoutAt">When the attempt times out (or, for a wait, when the timer fires); null for never.</param>
/// <param name="SendAt">When a retry's message is delivered, if later than the event.</param>
public sealed record StepStarted(string Step, int Attempt, string? MessageId, string? MessageType, string? Target, DateTimeOffset? TimeoutAt, DateTimeOffset? SendAt) : WorkflowEvent;

/// <summary>A step completed: a reply it expected arrived, its timer fired, or it had nothing to wait for.</summary>
/// <param name="Step">The step.</param>
/// <param name="Attempt">The attempt that completed.</param>
/// <param name="ReplyType">The reply's type, if a reply completed it.</param>
/// <param name="ReplyId">The reply's message id.</param>
/// <param name="State">The workflow's state after the reply, as JSON; null when unchanged.</param>
/// <param name="Next">The next step, or null when the workflow completes.</param>
public sealed record StepCompleted(string Step, int Attempt, string? ReplyType, string? ReplyId, JsonElement? State, string? Next) : WorkflowEvent;

/// <summary>A step's attempt timed out.</summary>
public sealed record StepTimedOut(string Step, int Attempt) : WorkflowEvent;

/// <summary>A step's attempt got a reply that asks for a retry.</summary>
/// <param name="Step">The step.</param>
/// <param name="Attempt">The attempt.</param>
/// <param name="ReplyType">The reply's type.</param>
/// <param name="ReplyId">The reply's message id.</param>
/// <param name="Reason">Why it is retried.</param>
public sealed record StepAttemptFailed(string Step, int Attempt, string ReplyType, string ReplyId, string Reason) : WorkflowEvent;

/// <summary>A step failed for good: its failure path follows (compensation, or a suspension).</summary>
/// <param name="Step">The step.</param>
/// <param name="Attempt">The last attempt.</param>
/// <param name="Reason">Why.</param>
/// <param name="ReplyType">The reply that failed it, if a reply did.</param>
/// <param name="ReplyId">That reply's message id.</param>
/// <param name="EffectUncertain">True when the step's own effect may have happened (it timed out), so it is compensated too.</param>
public sealed record StepFailed(string Step, int Attempt, string Reason, string? ReplyType, string? ReplyId, bool EffectUncertain) : WorkflowEvent;

/// <summary>An operator skipped a step: the workflow moves to the step's next one as if it had completed.</summary>
public sealed record StepSkipped(string Step, string Reason) : WorkflowEvent;

/// <summary>An operator asked for a step (or a compensation) to be tried again.</summary>
public sealed record StepRetryRequested(string Step, string? Reason) : WorkflowEvent;

/// <summary>The workflow stopped at a step and waits for an operator: retry it, skip it, or cancel.</summary>
/// <param name="Step">The step (or the compensation) it stopped at.</param>
/// <param name="Reason">Why.</param>
public sealed record WorkflowSuspended(string Step, string Reason) : WorkflowEvent;

/// <summary>A reply was not applied, and why (a duplicate, not expected now, the instance finished).</summary>
public sealed record ReplyIgnored(string ReplyType, string ReplyId, string Reason) : WorkflowEvent;

/// <summary>A timer fired that no longer mattered (its step had moved on, the instance had finished).</summary>
public sealed record TimerIgnored(string Timer, string Reason) : WorkflowEvent;

/// <summary>An operator asked to cancel the instance: the completed steps are compensated.</summary>
public sealed record WorkflowCancelRequested(string Reason) : WorkflowEvent;

/// <summary>The failure path began: these steps are compensated, in this order (the reverse of their completion).</summary>
/// <param name="Steps">The steps to compensate, in order.</param>
/// <param name="Reason">Why the workflow is compensating.</param>
/// <param name="Cancelled">True when an operator cancelled the instance; false when a step failed.</param>
public sealed record CompensationBegan(IReadOnlyList<string> Steps, string Reason, bool Cancelled) : WorkflowEvent;

/// <summary>A compensation's attempt began: its message was sent or published.</summary>
public sealed record CompensationStarted(string Step, int Attempt, string MessageId, string MessageType, string Target, DateTimeOffset? TimeoutAt, DateTimeOffset? SendAt) : WorkflowEvent;

/// <summary>A compensation's attempt timed out waiting for its confirmation.</summary>
public sealed record CompensationTimedOut(string Step, int Attempt) : WorkflowEvent;

/// <summary>A compensation is done: confirmed, or handed to the outbox when it needs no confirmation.</summary>
public sealed record CompensationCompleted(string Step, string? ReplyType, string? ReplyId) : WorkflowEvent;

/// <summary>An operator skipped a compensation that could not complete.</summary>
public sealed record CompensationSkipped(string Step, string Reason) : WorkflowEvent;

/// <summary>The workflow reached its end.</summary>
public sealed record WorkflowCompleted : WorkflowEvent;

/// <summary>The workflow failed; its completed steps were compensated.</summary>
public sealed record WorkflowFailed(string Reason) : WorkflowEvent;

/// <summary>The workflow was cancelled; its completed steps were compensated.</summary>
public sealed record WorkflowCancelled(string Reason) : WorkflowEvent;

/// <summary>The type names of workflow history events, registered by <c>AddWorkflow</c>.</summary>
public static class WorkflowEventTypes
{
    /// <summary>The events and their stable names.</summary>
    public static IReadOnlyList<(Type Type, string Name)> All { get; } =
    [
        (typeof(WorkflowStarted), "cairn.workflow.started"),
        (typeof(StepStarted), "cairn.workflow.step-started"),
        (typeof(StepCompleted), "cairn.workflow.step-completed"),
        (typeof(StepTimedOut), "cairn.workflow.step-timed-out"),
        (typeof(StepAttemptFailed), "cairn.workflow.step-attempt-failed"),
        (typeof(StepFailed), "cairn.workflow.step-failed"),
        (typeof(StepSkipped), "cairn.workflow.step-skipped"),
        (typeof(StepRetryRequested), "cairn.workflow.step-retry-requested"),
        (typeof(WorkflowSuspended), "cairn.workflow.suspended"),
        (typeof(ReplyIgnored), "cairn.workflow.reply-ignored"),
        (typeof(TimerIgnored), "cairn.workflow.timer-ignored"),
        (typeof(WorkflowCancelRequested), "cairn.workflow.cancel-requested"),
        (typeof(CompensationBegan), "cairn.workflow.compensation-began"),
        (typeof(CompensationStarted), "cairn.workflow.compensation-started"),
        (typeof(CompensationTimedOut), "cairn.workflow.compensation-timed-out"),
        (typeof(CompensationCompleted), "cairn.workflow.compensation-completed"),
        (typeof(CompensationSkipped), "cairn.workflow.compensation-skipped"),
        (typeof(WorkflowCompleted), "cairn.workflow.completed"),
        (typeof(WorkflowFailed), "cairn.workflow.failed"),
        (typeof(WorkflowCancelled), "cairn.workflow.cancelled"),
        (typeof(WorkflowTimer), "cairn.workflow.timer"),
    ];

    /// <summary>Registers every workflow event (and the timer message) in <paramref name="registry"/>; registering twice is harmless.</summary>
    public static void Register(EventTypeRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        foreach (var (type, name) in All)
        {
            registry.Register(type, name);
        }
    }
}

/// <summary>A durable timer: a delayed message to the workflow's own queue, which the instance checks against the timer it armed.</summary>
/// <param name="Workflow">The workflow.</param>
/// <param name="InstanceId">The instance.</param>
/// <param name="Timer">The timer's token: what it was armed for (a kind, a step and the version that armed it, counted from the instance's start).</param>
/// <param name="Run">
/// The run of the instance id that armed it: an id used again after its history was deleted starts a new run, whose
/// tokens can repeat the earlier run's. Null on a timer that does not say, which is told by its token alone.
/// </param>
public sealed record WorkflowTimer(string Workflow, string InstanceId, string Timer, string? Run = null);
