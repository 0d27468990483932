using System.Diagnostics.Metrics;

namespace Cairn.Workflows;

/// <summary>
/// The <c>Cairn.Workflows</c> meter, tagged with <c>workflow</c>: instances started, completed, compensated, failed and
/// cancelled; step durations and retries; timers pending. Counted when the decision's events have committed.
/// </summary>
public static class WorkflowMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Cairn.Workflows";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Started = Meter.CreateCounter<long>("cairn.workflow.started", "{instance}", "Workflow instances started.");
    private static readonly Counter<long> Completed = Meter.CreateCounter<long>("cairn.workflow.completed", "{instance}", "Workflow instances that completed every step.");
    private static readonly Counter<long> Compensated = Meter.CreateCounter<long>("cairn.workflow.compensated", "{instance}", "Workflow instances that finished after compensating at least one step.");
    private static readonly Counter<long> Failed = Meter.CreateCounter<long>("cairn.workflow.failed", "{instance}", "Workflow instances that ended failed.");
    private static readonly Counter<long> Cancelled = Meter.CreateCounter<long>("cairn.workflow.cancelled", "{instance}", "Workflow instances cancelled by an operator.");
    private static readonly Counter<long> Suspended = Meter.CreateCounter<long>("cairn.workflow.suspended", "{instance}", "Times a workflow instance stopped for an operator.");
    private static readonly Counter<long> Retries = Meter.CreateCounter<long>("cairn.workflow.step.retries", "{attempt}", "Step and compensation attempts after the first.");
    private static readonly Histogram<double> StepDuration = Meter.CreateHistogram<double>("cairn.workflow.step.duration", "s", "Time from a step's first attempt to its completion.");
    /// <summary>By workflow, each host's count of its pending timers, with the storage its queue is in.</summary>
    private static readonly Dictionary<string, List<(string Storage, Func<long> Pending)>> TimerSources = [];
    private static readonly Lock TimerGate = new();

    static WorkflowMetrics() =>
        Meter.CreateObservableGauge("cairn.workflow.timers.pending", ObserveTimers, "{timer}", "Durable timers not yet fired: the delayed messages of each workflow's queue.");

    /// <summary>Counts what a committed decision did.</summary>
    internal static void Record(string workflow, WorkflowDecider decision)
    {
        var tag = new KeyValuePair<string, object?>("workflow", workflow);
        foreach (var e in decision.Events)
        {
            switch (e)
            {
                case WorkflowStarted:
                    Started.Add(1, tag);
                    break;
                case WorkflowCompleted:
                    Completed.Add(1, tag);
                    break;
                case WorkflowFailed:
                    Failed.Add(1, tag);
                    CountCompensated(decision, tag);
                    break;
                case WorkflowCancelled:
                    Cancelled.Add(1, tag);
                    CountCompensated(decision, tag);
                    break;
                case StepStarted { Attempt: > 1 }:
                case CompensationStarted { Attempt: > 1 }:
                    Retries.Add(1, tag);
                    break;
            }
        }

        if (decision.Suspensions > 0)
        {
            Suspended.Add(decision.Suspensions, tag);
        }

        foreach (var (step, seconds) in decision.StepDurations)
        {
            StepDuration.Record(seconds, tag, new KeyValuePair<string, object?>("step", step));
        }
    }

    /// <summary>
    /// Adds a host of a workflow whose pending timers the gauge reports: hosts whose queue is in the same
    /// <paramref name="storage"/> (one database and schema, one file) count the same timers, and hosts on other
    /// storage (a tenant's schema) add theirs.
    /// </summary>
    internal static void TrackTimers(string workflow, string storage, Func<long> pending)
    {
        lock (TimerGate)
        {
            if (!TimerSources.TryGetValue(workflow, out var sources))
            {
                TimerSources[workflow] = sources = [];
            }

            sources.Add((storage, pending));
        }
    }

    /// <summary>
    /// Stops reporting a workflow's pending timers through <paramref name="pending"/>; another host of the same workflow
    /// in the process goes on reporting its own.
    /// </summary>
    internal static void UntrackTimers(string workflow, Func<long> pending)
    {
        lock (TimerGate)
        {
            if (TimerSources.TryGetValue(workflow, out var sources) && sources.RemoveAll(s => s.Pending == pending) > 0 && sources.Count == 0)
            {
                TimerSources.Remove(workflow);
            }
        }
    }

    private static void CountCompensated(WorkflowDecider decision, KeyValuePair<string, object?> tag)
    {
        // Skipped compensations are listed among the compensated steps, but undid nothing.
        if (decision.Instance.CompensationsCarriedOut > 0)
        {
            Compensated.Add(1, tag);
        }
    }

    private static IEnumerable<Measurement<long>> ObserveTimers()
    {
        lock (TimerGate)
        {
            // Hosts of one workflow on one storage count the same queue: the one tracked last speaks for it.
            return [.. TimerSources.Select(s => new Measurement<long>(
                s.Value.GroupBy(source => source.Storage, StringComparer.Ordinal).Sum(g => g.Last().Pending()),
                new KeyValuePair<string, object?>("workflow", s.Key)))];
        }
    }
}
