using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Cairn.Diagnostics;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// Cairn's messaging metrics for one queue, as a metrics exporter would see them: counters summed, histograms counted,
/// gauges as last read. Measurements of other queues (other tests in the process) are left out.
/// </summary>
internal sealed class QueueTelemetry : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, long> _totals = new();
    private readonly ConcurrentDictionary<string, double> _gauges = new();
    private readonly string _queue;

    public QueueTelemetry(QueueName queue)
    {
        _queue = queue.Value;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == CairnDiagnostics.MessagingName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            Record(instrument, value, value, tags);
        });
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            Record(instrument, 1, value, tags);
        });
        _listener.Start();
    }

    /// <summary>A counter's sum, or how many values a histogram recorded: <c>name</c> or <c>name|state</c>.</summary>
    public long Total(string key) => _totals.GetValueOrDefault(key);

    /// <summary>A gauge as last read by <see cref="Read"/>, or null when it reported nothing for the queue.</summary>
    public double? Gauge(string key) => _gauges.TryGetValue(key, out var value) ? value : null;

    /// <summary>Reads every gauge now, forgetting what they reported before.</summary>
    public void Read()
    {
        _gauges.Clear();
        _listener.RecordObservableInstruments();
    }

    public void Dispose() => _listener.Dispose();

    private void Record(Instrument instrument, long count, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (KeyOf(instrument, tags) is not { } key)
        {
            return;
        }

        if (instrument.IsObservable)
        {
            _gauges[key] = value;
        }
        else
        {
            _totals.AddOrUpdate(key, count, (_, total) => total + count);
        }
    }

    /// <summary>The instrument's name, then <c>|state</c> when it has one; null for another queue.</summary>
    private string? KeyOf(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        string? queue = null;
        string? state = null;
        foreach (var tag in tags)
        {
            if (tag.Key == "queue")
            {
                queue = tag.Value as string;
            }
            else if (tag.Key == "state")
            {
                state = tag.Value as string;
            }
        }

        return queue == _queue ? state is null ? instrument.Name : $"{instrument.Name}|{state}" : null;
    }
}
