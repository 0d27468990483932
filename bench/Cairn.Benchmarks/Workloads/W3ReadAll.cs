using System.Diagnostics;
using System.Globalization;
using Cairn.EventStore;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// W3: a full read of <c>$all</c> from the start, every envelope materialised and its data touched. The log is
/// written first (not timed) in appends of 1,000 events, 100 to each of 10 streams. Baseline: one SELECT of every row
/// through a <c>SqliteDataReader</c>, materialising an object per row with the same facts.
/// </summary>
internal static class W3ReadAll
{
    private const int EventsPerStream = 100;
    private const int StreamsPerAppend = 10;

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var cairn = await CairnAsync(scale);
        double? baseline = scale.CairnOnly ? null : BaselineRun(scale);
        return
        [
            new Figure("W3", $"full read of $all, {scale.ReadEvents:#,0} events", cairn, "events/s", baseline, Figure.AtLeast(1_000_000, "events/s"),
                $"median of {scale.ReadRuns} full reads per side"),
        ];
    }

    private static async Task<double> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("w3-cairn");
        await using var store = Scale.OpenCairn(db);
        var write = Stopwatch.StartNew();
        for (var first = 0; first < scale.ReadEvents; first += EventsPerStream * StreamsPerAppend)
        {
            var parts = new List<StreamAppend>(StreamsPerAppend);
            for (var s = 0; s < StreamsPerAppend && first + s * EventsPerStream < scale.ReadEvents; s++)
            {
                var n0 = first + s * EventsPerStream;
                var events = new EventData[EventsPerStream];
                for (var i = 0; i < EventsPerStream; i++)
                {
                    events[i] = Payloads.Event(n0 + i);
                }

                parts.Add(new StreamAppend(StreamName(n0), ExpectedVersion.NoStream, events));
            }

            await store.AppendToStreamsAsync(parts);
        }

        Log.Line(string.Create(CultureInfo.InvariantCulture, $"  W3     Cairn    wrote {scale.ReadEvents:#,0} events in {write.Elapsed.TotalSeconds:0.0} s ({db.SizeOnDisk / 1048576.0:0} MB on disk)"));

        var rates = new List<double>();
        for (var run = 0; run < scale.ReadRuns; run++)
        {
            var clock = Stopwatch.StartNew();
            long count = 0, bytes = 0, check = 0;
            await foreach (var e in store.ReadAllAsync(GlobalPosition.Start))
            {
                count++;
                bytes += e.Data.Length;
                check += e.Data.Span[e.Data.Length - 3] + e.Version;
            }

            rates.Add(Report("Cairn", run, count, bytes, check, clock.Elapsed, scale));
        }

        return Median(rates);
    }

    private static double BaselineRun(Scale scale)
    {
        using var db = new TempDatabase("w3-baseline");
        Baseline.Create(db.Path);
        var write = Stopwatch.StartNew();
        using (var connection = Baseline.Open(db.Path))
        using (var insert = Baseline.InsertCommand(connection))
        {
            for (var first = 0; first < scale.ReadEvents; first += EventsPerStream * StreamsPerAppend)
            {
                using var transaction = connection.BeginTransaction();
                insert.Transaction = transaction;
                for (var n = first; n < Math.Min(first + EventsPerStream * StreamsPerAppend, scale.ReadEvents); n++)
                {
                    var n0 = n - n % EventsPerStream;
                    Baseline.Set(insert, StreamName(n0), n - n0, n);
                    insert.ExecuteNonQuery();
                }

                transaction.Commit();
            }
        }

        Log.Line(string.Create(CultureInfo.InvariantCulture, $"  W3     baseline wrote {scale.ReadEvents:#,0} events in {write.Elapsed.TotalSeconds:0.0} s ({db.SizeOnDisk / 1048576.0:0} MB on disk)"));

        var rates = new List<double>();
        for (var run = 0; run < scale.ReadRuns; run++)
        {
            var clock = Stopwatch.StartNew();
            long count = 0, bytes = 0, check = 0;
            using (var connection = Baseline.Open(db.Path))
            using (var select = connection.CreateCommand())
            {
                select.CommandText = "SELECT position, stream, version, id, type, time_ticks, data FROM events ORDER BY position";
                using var reader = select.ExecuteReader();
                while (reader.Read())
                {
                    var e = new BaselineEvent(
                        reader.GetInt64(0),
                        reader.GetString(1),
                        reader.GetInt64(2),
                        new Guid(reader.GetFieldValue<byte[]>(3), bigEndian: true),
                        reader.GetString(4),
                        new DateTimeOffset(reader.GetInt64(5), TimeSpan.Zero),
                        reader.GetFieldValue<byte[]>(6));
                    count++;
                    bytes += e.Data.Length;
                    check += e.Data[^3] + e.Version;
                }
            }

            rates.Add(Report("baseline", run, count, bytes, check, clock.Elapsed, scale));
        }

        return Median(rates);
    }

    private static double Report(string side, int run, long count, long bytes, long check, TimeSpan elapsed, Scale scale)
    {
        if (count != scale.ReadEvents || bytes != (long)scale.ReadEvents * Payloads.Size)
        {
            throw new InvalidOperationException($"W3 {side} read {count} events ({bytes} bytes), expected {scale.ReadEvents}.");
        }

        var rate = count / elapsed.TotalSeconds;
        Log.Line(string.Create(CultureInfo.InvariantCulture, $"  W3     {side,-8} {rate,12:#,0} events/s  (read {run + 1}: {count:#,0} events in {elapsed.TotalSeconds:0.00} s, check {check % 1000})"));
        return rate;
    }

    private static string StreamName(int firstEvent) =>
        string.Create(CultureInfo.InvariantCulture, $"item-{firstEvent / EventsPerStream:D6}");

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
