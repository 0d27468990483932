using System.Globalization;
using System.Text;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;
using Cairn.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Benchmarks.Workloads;

/// <summary>An order as an application appends it: a few fields and its lines (S1 appends orders of three lines).</summary>
[EventType("bench.s1.order-placed")]
internal sealed record S1OrderPlaced(string OrderId, string CustomerId, string Currency, decimal Total, DateTimeOffset PlacedAt, IReadOnlyList<S1OrderLine> Lines, string? Coupon = null);

/// <summary>One line of <see cref="S1OrderPlaced"/>.</summary>
internal sealed record S1OrderLine(string Sku, string Name, int Quantity, decimal UnitPrice);

/// <summary>
/// S1: what validating every payload against its schema costs on append. Cairn is hosted as an application hosts it
/// (<c>AddCairn(o =&gt; o.UseSqlite(...))</c>, durability Full, <see cref="S1OrderPlaced"/> registered, the host
/// started so the schema registry is loaded), and each append serializes an order through the host's
/// <see cref="EventSerializer"/> (which stamps its <c>dataschema</c>). Two loads: 16 writers appending single events,
/// each to its own 100 streams (as W1-16), and one writer appending batches of 100 to one stream (as W2), where the
/// per-event CPU shows. Cairn: <see cref="SchemaValidationMode.Reject"/> for the type, so every payload is parsed and
/// evaluated by JsonSchema.Net before the write. Baseline: the same host and appends with validation
/// <see cref="SchemaValidationMode.Off"/> (only the <c>dataschema</c> is checked). Reported: events/s of each side,
/// and per event the process's CPU time and the managed memory allocated in the counted window.
/// </summary>
internal static class S1SchemaValidation
{
    private const int Writers = 16;
    private const int StreamsPerWriter = 100;
    private const int BatchSize = W2Batches.BatchSize;
    private const string EventType = "bench.s1.order-placed";

    /// <summary>1,024 different orders in rotation, built once so only their serialization is timed.</summary>
    private static readonly S1OrderPlaced[] Orders = Enumerable.Range(0, 1024).Select(Order).ToArray();

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        // The first round of a process ran 2 to 6 times slower than the next ones (JsonSchema.Net's code and the
        // append path still being compiled); it would always fall on the validated side, which goes first.
        Log.Line("  warming up, not counted:");
        await RoundAsync("S1-16", SchemaValidationMode.Reject, scale, SinglesAsync);

        var figures = new List<Figure>();
        foreach (var (id, title, load) in new (string, string, Func<IEventStore, EventSerializer, Scale, Task<Rate>>)[]
        {
            ("S1-16", string.Create(CultureInfo.InvariantCulture, $"single-event appends, {Writers} writers, validated"), SinglesAsync),
            ("S1-batch", string.Create(CultureInfo.InvariantCulture, $"batches of {BatchSize} events, 1 writer, validated"), BatchesAsync),
        })
        {
            var (reject, off) = await MessageBench.CompareAsync(
                scale.Rounds,
                scale.CairnOnly,
                () => RoundAsync(id, SchemaValidationMode.Reject, scale, load),
                () => RoundAsync(id, SchemaValidationMode.Off, scale, load),
                r => r.PerSecond);
            var note = string.Create(CultureInfo.InvariantCulture,
                $"per event: CPU {reject.CpuUsPerUnit:0.0} us, {reject.BytesPerUnit / 1024:0.0} KB allocated; with validation off {(off is null ? "-" : off.CpuUsPerUnit.ToString("0.0", CultureInfo.InvariantCulture))} us, {(off is null ? "-" : (off.BytesPerUnit / 1024).ToString("0.0", CultureInfo.InvariantCulture))} KB; baseline: the same appends with validation Off (ratio: validated / off)");
            figures.Add(new Figure(id, title, reject.PerSecond, "events/s", off?.PerSecond, Note: note));
        }

        return figures;
    }

    /// <summary>One round of one side: a fresh file and host, a check that the mode is in force, then the load.</summary>
    private static async Task<Rate> RoundAsync(string id, SchemaValidationMode mode, Scale scale, Func<IEventStore, EventSerializer, Scale, Task<Rate>> load)
    {
        using var db = new TempDatabase("s1-" + mode.ToString().ToLowerInvariant());
        var host = await StartHostAsync(db, mode);
        try
        {
            var store = host.Services.GetRequiredService<IEventStore>();
            var serializer = host.Services.GetRequiredService<EventSerializer>();
            await CheckModeAsync(store, serializer, mode);
            var rate = await load(store, serializer, scale);
            Log.Line(string.Create(CultureInfo.InvariantCulture,
                $"  {id,-8} {(mode == SchemaValidationMode.Off ? "off" : "reject"),-8} {rate.PerSecond,10:#,0} events/s  ({rate.Count:#,0} events in {rate.Seconds:0.0} s; per event CPU {rate.CpuUsPerUnit:0.0} us, {rate.BytesPerUnit / 1024:0.00} KB allocated)"));
            return rate;
        }
        finally
        {
            using (var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                await host.StopAsync(stop.Token);
            }

            host.Dispose();
        }
    }

    private static async Task<IHost> StartHostAsync(TempDatabase db, SchemaValidationMode mode)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UseSqlite(db.ConnectionString);
            o.EventTypes.Register<S1OrderPlaced>();
            o.Schemas.Validation(EventType, mode);
        });
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    /// <summary>
    /// Proves the side measures what it says, before the load starts: an order whose line quantity is a string is
    /// refused under Reject and written under Off.
    /// </summary>
    private static async Task CheckModeAsync(IEventStore store, EventSerializer serializer, SchemaValidationMode mode)
    {
        var bad = new EventData(EventType, Encoding.UTF8.GetBytes("""{"orderId":"order-bad","customerId":"c","currency":"EUR","total":1,"placedAt":"2026-11-29T00:00:00+00:00","lines":[{"sku":"x","name":"x","quantity":"many","unitPrice":1}]}"""))
        {
            DataSchema = serializer.DataSchemaOf(EventType),
        };
        var refused = false;
        try
        {
            await store.AppendToStreamAsync(new StreamName("order-s1check"), ExpectedVersion.Any, [bad]);
        }
        catch (SchemaValidationException)
        {
            refused = true;
        }

        if (refused != (mode == SchemaValidationMode.Reject))
        {
            throw new InvalidOperationException($"S1: with validation {mode}, an order whose quantity is a string was {(refused ? "refused" : "written")}.");
        }

        // A valid order is written under both modes.
        await store.AppendToStreamAsync(new StreamName("order-s1check"), ExpectedVersion.Any, [serializer.ToEventData(Orders[0])]);
    }

    private static Task<Rate> SinglesAsync(IEventStore store, EventSerializer serializer, Scale scale) =>
        Throughput.MeasureAsync(Writers, async (w, meter) =>
        {
            var streams = Enumerable.Range(0, StreamsPerWriter)
                .Select(s => new StreamName(string.Create(CultureInfo.InvariantCulture, $"order-s1w{w:D2}s{s:D3}")))
                .ToArray();
            var next = new long[StreamsPerWriter];
            for (long i = 0; !meter.Stopping; i++)
            {
                var s = (int)(i % StreamsPerWriter);
                var expected = next[s] == 0 ? ExpectedVersion.NoStream : ExpectedVersion.Exactly(next[s] - 1);
                await store.AppendToStreamAsync(streams[s], expected, [serializer.ToEventData(Orders[(i * Writers + w) & 1023])]);
                next[s]++;
                meter.Add(1);
            }
        }, blocking: false, scale.Warmup, scale.Duration);

    private static Task<Rate> BatchesAsync(IEventStore store, EventSerializer serializer, Scale scale) =>
        Throughput.MeasureAsync(1, async (_, meter) =>
        {
            var stream = new StreamName("order-s1batch");
            var expected = ExpectedVersion.NoStream;
            for (long n = 0; !meter.Stopping; n += BatchSize)
            {
                var batch = new EventData[BatchSize];
                for (var i = 0; i < BatchSize; i++)
                {
                    batch[i] = serializer.ToEventData(Orders[(n + i) & 1023]);
                }

                var result = await store.AppendToStreamAsync(stream, expected, batch);
                expected = ExpectedVersion.Exactly(result.NextExpectedVersion);
                meter.Add(BatchSize);
            }
        }, blocking: false, scale.Warmup, scale.Duration);

    private static S1OrderPlaced Order(int n)
    {
        var lines = Enumerable.Range(0, 3)
            .Select(l => new S1OrderLine(
                string.Create(CultureInfo.InvariantCulture, $"SKU-{(n * 7919 + l * 104_729) % 100_000:D5}"),
                string.Create(CultureInfo.InvariantCulture, $"Item {(n + l) % 500} of the catalogue"),
                1 + (n + l) % 5,
                10m + (n * 31 + l * 17) % 9_000 / 100m))
            .ToArray();
        return new S1OrderPlaced(
            string.Create(CultureInfo.InvariantCulture, $"order-{n:D6}"),
            string.Create(CultureInfo.InvariantCulture, $"customer-{n * 13 % 10_000:D5}"),
            n % 4 == 0 ? "USD" : "EUR",
            lines.Sum(l => l.Quantity * l.UnitPrice),
            new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero).AddSeconds(n * 37),
            lines,
            n % 10 == 0 ? "WELCOME10" : null);
    }
}
