using System.Diagnostics;

namespace Cairn.Conformance.Support;

/// <summary>An activity source that is always sampled, to test that appends pick up the current trace context.</summary>
public static class TestTracing
{
    /// <summary>The source's name.</summary>
    public const string SourceName = "Conformance.Tracing";

    private static readonly ActivitySource Source = new(SourceName);

    // Registered once for the process: it only listens to this suite's own source.
    private static readonly ActivityListener Listener = CreateListener();

    /// <summary>Starts a W3C activity that is recorded, making it <see cref="Activity.Current"/>.</summary>
    public static Activity StartActivity(string name)
    {
        GC.KeepAlive(Listener);
        var activity = Source.StartActivity(name, ActivityKind.Internal)
            ?? throw new InvalidOperationException("The test activity source is not listened to.");
        if (activity.IdFormat != ActivityIdFormat.W3C)
        {
            throw new InvalidOperationException("The test activity does not have a W3C id.");
        }

        return activity;
    }

    private static ActivityListener CreateListener()
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }
}
