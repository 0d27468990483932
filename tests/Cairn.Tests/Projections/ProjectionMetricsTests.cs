using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;

namespace Cairn.Tests.Projections;

/// <summary>
/// The Cairn.Projections meter: counters of applied, failed and dead-lettered events, and gauges of each running
/// projection's position, lag, pace and rebuild progress, every measurement tagged with the projection's name.
/// </summary>
[Collection(nameof(DiagnosticsTests))]
public sealed class ProjectionMetricsTests : IDisposable
{
    private static readonly string[] Gauges =
    [
        "cairn.projection.position",
        "cairn.projection.lag",
        "cairn.projection.lag.seconds",
        "cairn.projection.rate",
        "cairn.projection.rebuild.progress",
    ];

    private readonly TelemetryRecorder _telemetry = new(name => name == CairnDiagnostics.ProjectionsName);
    private readonly GaugeReader _gauges = new();

    // Each test names its projection uniquely: the meter is shared by every projection in the process.
    private readonly string _name = "metrics-" + Guid.NewGuid().ToString("N");

    public void Dispose()
    {
        _telemetry.Dispose();
        _gauges.Dispose();
    }

    private string Tagged(string instrument) => $"{instrument}|projection={_name}";

    private static (InMemoryEventStore Store, InMemoryProjectionStore Projections) Stores()
    {
        var store = new InMemoryEventStore();
        return (store, new InMemoryProjectionStore(store));
    }

    private static async Task<GlobalPosition> PlaceAsync(IEventStore store, string orderId, decimal total = 10m) =>
        (await store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, "c-1", total)])).LastPosition;

    private static async Task<ProjectionRunner> StartAsync(InMemoryEventStore store, InMemoryProjectionStore projections, Projection projection)
    {
        var runner = new ProjectionRunner(projection, store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        return runner;
    }

    [Fact]
    public async Task applied_events_are_counted_per_projection()
    {
        var (store, projections) = Stores();
        for (var i = 0; i < 5; i++)
        {
            await PlaceAsync(store, $"o{i}");
        }

        // Events of types it does not handle are not applied, so not counted.
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Noted("o1")]);
        await using var runner = await StartAsync(store, projections, new OrderSummaries(_name) { BatchSize = 2 });
        await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Wait.Timeout);
        Assert.Equal(5, _telemetry.Total(Tagged("cairn.projection.events")));

        var live = await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Line("o1", 1m), Orders.Shipped("o1")]);
        await runner.WaitForPositionAsync(live.LastPosition, Wait.Timeout);
        Assert.Equal(7, _telemetry.Total(Tagged("cairn.projection.events")));
        Assert.Equal(0, _telemetry.Total(Tagged("cairn.projection.failures")));
        Assert.Equal(0, _telemetry.Total(Tagged("cairn.projection.dead_lettered")));
    }

    [Fact]
    public async Task an_inline_projection_counts_what_it_applies_before_it_goes_live()
    {
        var (store, projections) = Stores();
        for (var i = 0; i < 3; i++)
        {
            await PlaceAsync(store, $"o{i}");
        }

        await using var runner = await StartAsync(store, projections, new OrderSummaries(_name) { Lifecycle = ProjectionLifecycle.Inline });
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        Assert.Equal(3, _telemetry.Total(Tagged("cairn.projection.events")));
    }

    [Fact]
    public async Task failed_attempts_are_counted_and_a_stop_dead_letters_nothing()
    {
        var (store, projections) = Stores();
        await PlaceAsync(store, "1");
        await PlaceAsync(store, "poison");
        var projection = new OrderSummaries(_name) { MaxRetries = 2, RetryDelay = TimeSpan.Zero, FailWhen = e => e.OrderId == "poison" };
        await using var runner = await StartAsync(store, projections, projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        Assert.Equal(3, _telemetry.Total(Tagged("cairn.projection.failures")));
        Assert.Equal(0, _telemetry.Total(Tagged("cairn.projection.dead_lettered")));
        Assert.Equal(1, _telemetry.Total(Tagged("cairn.projection.events")));
        Assert.Equal(runner.Status.Failures, _telemetry.Total(Tagged("cairn.projection.failures")));
    }

    [Fact]
    public async Task skipped_events_are_counted_as_failures_and_dead_letters()
    {
        var (store, projections) = Stores();
        await PlaceAsync(store, "1");
        await PlaceAsync(store, "poison-a");
        await PlaceAsync(store, "3");
        var last = await PlaceAsync(store, "poison-b");
        var projection = new OrderSummaries(_name)
        {
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
            MaxRetries = 1,
            RetryDelay = TimeSpan.Zero,
            FailWhen = e => e.OrderId.StartsWith("poison", StringComparison.Ordinal),
        };
        await using var runner = await StartAsync(store, projections, projection);
        await runner.WaitForPositionAsync(last, Wait.Timeout);

        Assert.Equal(4, _telemetry.Total(Tagged("cairn.projection.failures")));
        Assert.Equal(2, _telemetry.Total(Tagged("cairn.projection.dead_lettered")));
        Assert.Equal(2, _telemetry.Total(Tagged("cairn.projection.events")));
        Assert.Equal(2, runner.Status.DeadLetters);
    }

    [Fact]
    public async Task the_gauges_report_each_running_projection_under_its_name()
    {
        var (store, projections) = Stores();
        for (var i = 0; i < 4; i++)
        {
            await PlaceAsync(store, $"o{i}");
        }

        await using var runner = await StartAsync(store, projections, new OrderSummaries(_name));
        var head = await store.GetHeadPositionAsync(default);
        await runner.WaitForPositionAsync(head, Wait.Timeout);

        _telemetry.Clear();
        _telemetry.RecordObservableInstruments();
        foreach (var gauge in Gauges)
        {
            Assert.Equal(1, _telemetry.Total(Tagged(gauge)));
        }

        _gauges.Record();
        Assert.Equal(head.Value, _gauges.Value("cairn.projection.position", _name));
        Assert.Equal(0, _gauges.Value("cairn.projection.lag", _name));
        Assert.Equal(0, _gauges.Value("cairn.projection.lag.seconds", _name));
        Assert.True(_gauges.Value("cairn.projection.rate", _name) > 0, "the rate counts the events just applied");
        Assert.Equal(1, _gauges.Value("cairn.projection.rebuild.progress", _name));

        // A stopped projection is no longer reported.
        await runner.StopAsync(default);
        _telemetry.Clear();
        _telemetry.RecordObservableInstruments();
        foreach (var gauge in Gauges)
        {
            Assert.Equal(0, _telemetry.Total(Tagged(gauge)));
        }
    }

    [Fact]
    public async Task the_lag_gauges_show_events_a_failed_projection_has_not_applied()
    {
        var (store, projections) = Stores();
        await PlaceAsync(store, "1");
        await PlaceAsync(store, "poison");
        await PlaceAsync(store, "3");
        var projection = new OrderSummaries(_name) { MaxRetries = 0, RetryDelay = TimeSpan.Zero, FailWhen = e => e.OrderId == "poison" };
        await using var runner = await StartAsync(store, projections, projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        _gauges.Record();
        Assert.Equal(1, _gauges.Value("cairn.projection.position", _name));
        Assert.Equal(2, _gauges.Value("cairn.projection.lag", _name));
        Assert.True(_gauges.Value("cairn.projection.lag.seconds", _name) >= 0);
    }

    [Fact]
    public async Task the_rebuild_gauge_reports_the_share_of_the_log_a_rebuild_has_covered()
    {
        var (store, projections) = Stores();
        for (var i = 0; i < 50; i++)
        {
            await PlaceAsync(store, $"o{i}");
        }

        var projection = new OrderSummaries(_name) { BatchSize = 10 };
        await using var runner = await StartAsync(store, projections, projection);
        await runner.WaitForPositionAsync(new GlobalPosition(50), Wait.Timeout);

        // Hold the rebuild after its first batch has committed: within four batches of the head, the shadow then
        // catches up in the commit that switches, which the fifteenth event holds.
        using var release = new SemaphoreSlim(0);
        var applied = 0;
        projection.FailWhen = _ =>
        {
            if (Interlocked.Increment(ref applied) == 15)
            {
                release.Wait(Wait.Timeout);
            }

            return false;
        };
        var rebuild = runner.RebuildAsync();
        await Wait.UntilAsync(() => Volatile.Read(ref applied) >= 15, "the rebuild has applied its first batch");
        _gauges.Record();
        Assert.Equal(0.2, _gauges.Value("cairn.projection.rebuild.progress", _name), 3);
        Assert.Equal(50, _gauges.Value("cairn.projection.position", _name));
        release.Release();
        await rebuild.WaitAsync(Wait.Timeout);

        _gauges.Record();
        Assert.Equal(1, _gauges.Value("cairn.projection.rebuild.progress", _name));
        Assert.True(_telemetry.Total(Tagged("cairn.projection.events")) >= 100, "the rebuild's events are counted too");
    }

    /// <summary>Reads the last value of each projection gauge, by instrument and projection.</summary>
    private sealed class GaugeReader : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentDictionary<(string Instrument, string Projection), double> _values = new();

        public GaugeReader()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == CairnDiagnostics.ProjectionsName && Gauges.Contains(instrument.Name))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag is { Key: "projection", Value: string projection })
                    {
                        _values[(instrument.Name, projection)] = value;
                    }
                }
            });
            _listener.Start();
        }

        public void Record()
        {
            _values.Clear();
            _listener.RecordObservableInstruments();
        }

        public double Value(string instrument, string projection) =>
            _values.TryGetValue((instrument, projection), out var value)
                ? value
                : throw new Xunit.Sdk.XunitException($"{instrument} reported nothing for {projection}.");

        public void Dispose() => _listener.Dispose();
    }
}
