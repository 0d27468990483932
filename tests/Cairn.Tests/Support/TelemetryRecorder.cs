using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Cairn.Tests.Support;

/// <summary>
/// Listens to Cairn's meters and activity sources for a test: totals per instrument and tag set (histograms count
/// their recordings), and every span that stopped.
/// </summary>
public sealed class TelemetryRecorder : IDisposable
{
    private readonly MeterListener _meters = new();
    private readonly ConcurrentDictionary<string, long> _totals = new();
    private readonly ActivityListener _spans;

    /// <summary>Listens to the meters and sources whose names pass <paramref name="listensTo"/>.</summary>
    public TelemetryRecorder(Func<string, bool> listensTo)
    {
        _meters.InstrumentPublished = (instrument, listener) =>
        {
            if (listensTo(instrument.Meter.Name))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
        _meters.SetMeasurementEventCallback<double>((instrument, _, tags, _) => Add(instrument, 1, tags));
        _meters.Start();
        _spans = new ActivityListener
        {
            ShouldListenTo = source => listensTo(source.Name),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = Activities.Enqueue,
        };
        ActivitySource.AddActivityListener(_spans);
    }

    /// <summary>The spans that stopped, in order.</summary>
    public ConcurrentQueue<Activity> Activities { get; } = new();

    /// <summary>The total of an instrument under a key: its name, then <c>|tag=value</c> for each tag in order.</summary>
    public long Total(string key) => _totals.GetValueOrDefault(key);

    /// <summary>Forgets the totals so far, before a fresh reading of a gauge.</summary>
    public void Clear() => _totals.Clear();

    /// <summary>Takes a reading of the observable instruments (gauges) now.</summary>
    public void RecordObservableInstruments() => _meters.RecordObservableInstruments();

    /// <inheritdoc />
    public void Dispose()
    {
        _meters.Dispose();
        _spans.Dispose();
    }

    private void Add(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var key = instrument.Name;
        foreach (var tag in tags)
        {
            key += $"|{tag.Key}={tag.Value}";
        }

        _totals.AddOrUpdate(key, value, (_, total) => total + value);
    }
}
