using System.Diagnostics.Metrics;
using Cairn.Workflows;

namespace Cairn.Benchmarks.Checkout;

/// <summary>
/// Listens to the workflow metrics Cairn records once a decision has committed (<see cref="WorkflowMetrics"/>):
/// each instance completed or failed frees a slot of the <see cref="InFlight"/>, and each
/// <c>cairn.workflow.step.duration</c> is a step latency. No polling, nothing added to the workflow.
/// </summary>
internal sealed class WorkflowListener : IDisposable
{
    private const string Completed = "cairn.workflow.completed";
    private const string Failed = "cairn.workflow.failed";
    private const string StepDuration = "cairn.workflow.step.duration";
    private readonly MeterListener _listener = new();

    public WorkflowListener(string workflow, InFlight flight)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == WorkflowMetrics.MeterName && instrument.Name is Completed or Failed or StepDuration)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (IsOf(workflow, tags))
            {
                for (var i = 0; i < value; i++)
                {
                    flight.Finished(instrument.Name == Completed);
                }
            }
        });
        _listener.SetMeasurementEventCallback<double>((_, seconds, tags, _) =>
        {
            if (IsOf(workflow, tags))
            {
                flight.StepTook(seconds * 1000);
            }
        });
        _listener.Start();
    }

    public void Dispose() => _listener.Dispose();

    private static bool IsOf(string workflow, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        foreach (var tag in tags)
        {
            if (tag.Key == "workflow")
            {
                return workflow.Equals(tag.Value as string, StringComparison.Ordinal);
            }
        }

        return false;
    }
}
