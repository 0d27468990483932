using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Cairn.Conformance.Support;

/// <summary>
/// Listens to Cairn's meters and activity sources for a test: totals per instrument and tag set (histograms count
/// their recordings), the last value of each, and every span that stopped. Keys carry every tag, so measurements of
/// other tests running in the process (other queues, other names) never mix with a test's own.
/// </summary>
public sealed class TelemetryRecorder : IDisposable
{
    private readonly MeterListener _meters = new();
    private readonly ConcurrentDictionary<string, long> _totals = new();
    private readonly ConcurrentDictionary<string, double> _last = new();
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
        _meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            Add(instrument, value, tags);
            _last[Key(instrument, tags)] = value;
        });
        _meters.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            Add(instrument, 1, tags);
            _last[Key(instrument, tags)] = value;
        });
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

    /// <summary>The last value an instrument recorded under a key (a gauge's last reading), or null when it recorded none.</summary>
    public double? Last(string key) => _last.TryGetValue(key, out var value) ? value : null;

    /// <summary>Forgets the totals and last values so far, before a fresh reading of a gauge.</summary>
    public void Clear()
    {
        _totals.Clear();
        _last.Clear();
    }

    /// <summary>Takes a reading of the observable instruments (gauges) now.</summary>
    public void RecordObservableInstruments() => _meters.RecordObservableInstruments();

    /// <summary>
    /// Takes a fresh reading of the gauges, forgetting every last value first, so a gauge that reports nothing this
    /// time reads as null; totals are kept.
    /// </summary>
    public void ReadGauges()
    {
        _last.Clear();
        _meters.RecordObservableInstruments();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _meters.Dispose();
        _spans.Dispose();
    }

    private void Add(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
        _totals.AddOrUpdate(Key(instrument, tags), value, (_, total) => total + value);

    private static string Key(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var key = instrument.Name;
        foreach (var tag in tags)
        {
            key += $"|{tag.Key}={tag.Value}";
        }

        return key;
    }
}
