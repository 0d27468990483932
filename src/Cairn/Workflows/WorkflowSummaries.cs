using Cairn.Projections;

namespace Cairn.Workflows;

/// <summary>One workflow instance as the <see cref="WorkflowSummaries"/> read model shows it, for queries across instances.</summary>
/// <param name="Id">The instance's stream (<c>wf:&lt;workflow&gt;-&lt;id&gt;</c>).</param>
/// <param name="Workflow">The workflow.</param>
/// <param name="InstanceId">The instance id.</param>
/// <param name="Status">Where it stands.</param>
/// <param name="Step">The step (or compensation) it is at, if any.</param>
/// <param name="Attempt">That step's attempt.</param>
/// <param name="StartedAt">When it started.</param>
/// <param name="UpdatedAt">When it last made progress.</param>
/// <param name="EndedAt">When it finished, if it has.</param>
/// <param name="Reason">Why it compensates, is suspended, failed or was cancelled.</param>
public sealed record WorkflowSummary(
    string Id,
    string Workflow,
    string InstanceId,
    WorkflowStatus Status,
    string? Step,
    int Attempt,
    DateTimeOffset StartedAt,
    DateTimeOffset UpdatedAt,
    DateTimeOffset? EndedAt,
    string? Reason);

/// <summary>
/// The read model of every workflow instance, hosted with the first workflow: query it by workflow, status, start time
/// and last progress through <see cref="WorkflowClient.Query"/> (instances of a type, failed ones, ones stuck longer than
/// a span). It is an async projection: <c>WorkflowClient.WaitForSummariesAsync</c> waits for a commit to show.
/// </summary>
public sealed class WorkflowSummaries : Projection
{
    /// <summary>The projection's name.</summary>
    public const string ProjectionName = "cairn-workflows";

    /// <summary>Creates the projection.</summary>
    public WorkflowSummaries()
        : base(ProjectionName)
    {
        BatchSize = 2000;
        Document<WorkflowSummary>(s => s.Id, "instances")
            .Index("workflow", s => s.Workflow)
            .Index("status", s => s.Status.ToString())
            .Index("started_at", s => s.StartedAt)
            .Index("updated_at", s => s.UpdatedAt);

        On<WorkflowStarted>((ctx, e) => ctx.Documents.Store(new WorkflowSummary(ctx.Event.Stream.Value, e.Workflow, e.InstanceId, WorkflowStatus.Running, null, 0, ctx.Event.Time, ctx.Event.Time, null, null)));
        On<StepStarted>((ctx, e) => Update(ctx, s => s with { Status = WorkflowStatus.Running, Step = e.Step, Attempt = e.Attempt, Reason = s.Status == WorkflowStatus.Suspended ? null : s.Reason }));
        On<StepFailed>((ctx, e) => Update(ctx, s => s with { Reason = e.Reason }));
        On<WorkflowSuspended>((ctx, e) => Update(ctx, s => s with { Status = WorkflowStatus.Suspended, Step = e.Step, Reason = e.Reason }));
        On<WorkflowCancelRequested>((ctx, e) => Update(ctx, s => s with { Reason = e.Reason }));
        On<CompensationBegan>((ctx, e) => Update(ctx, s => s with { Status = WorkflowStatus.Compensating, Step = null, Attempt = 0, Reason = e.Reason }));
        On<CompensationStarted>((ctx, e) => Update(ctx, s => s with { Status = WorkflowStatus.Compensating, Step = e.Step, Attempt = e.Attempt }));
        On<WorkflowCompleted>((ctx, _) => Update(ctx, s => s with { Status = WorkflowStatus.Completed, Step = null, Attempt = 0, EndedAt = ctx.Event.Time, Reason = null }));
        On<WorkflowFailed>((ctx, e) => Update(ctx, s => s with { Status = WorkflowStatus.Failed, Step = null, Attempt = 0, EndedAt = ctx.Event.Time, Reason = e.Reason }));
        On<WorkflowCancelled>((ctx, e) => Update(ctx, s => s with { Status = WorkflowStatus.Cancelled, Step = null, Attempt = 0, EndedAt = ctx.Event.Time, Reason = e.Reason }));

        // Ignored replies and timers are recorded in the history but are not progress: they are not handled here. Nor
        // are the events a decision always follows with one handled here in the same append (a completion, a timeout,
        // a failed attempt, a skip, a retry request, a compensation's end): the summary would read the same, and a
        // completion carries the whole state to deserialize.
    }

    private static void Update(IProjectionContext context, Func<WorkflowSummary, WorkflowSummary> change)
    {
        var id = context.Event.Stream.Value;
        var summary = context.Documents.Load<WorkflowSummary>(id);
        if (summary is not null)
        {
            context.Documents.Store(change(summary) with { UpdatedAt = context.Event.Time });
        }
    }
}
