using System.Globalization;
using Cairn.EventStore;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// W1: single-event appends, each writer to its own 100 streams in turn with the exact expected version, from 1 and
/// from 16 concurrent writers, durable. Baseline: 1 and 16 threads, each with its own connection, one transaction per
/// insert.
/// </summary>
internal static class W1ManyStreams
{
    private const int StreamsPerWriter = 100;

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var figures = new List<Figure>();
        foreach (var writers in new[] { 1, 16 })
        {
            var (cairn, baseline) = await Throughput.CompareAsync($"W1-{writers}", "events", scale, () => CairnAsync(writers, scale), () => BaselineAsync(writers, scale));
            figures.Add(new Figure(
                $"W1-{writers}",
                $"single-event appends, {writers} writer{(writers == 1 ? "" : "s")}",
                cairn.PerSecond,
                "events/s",
                baseline?.PerSecond,
                writers == 16 ? Figure.RatioAtLeast(6, "aim 10x") : null));
        }

        return figures;
    }

    private static async Task<Rate> CairnAsync(int writers, Scale scale)
    {
        using var db = new TempDatabase("w1-cairn");
        await using var store = Scale.OpenCairn(db);
        return await Throughput.MeasureAsync(writers, (w, meter) => AppendAsync(store, w, meter), blocking: false, scale.Warmup, scale.Duration);
    }

    /// <summary>
    /// One Cairn writer's loop, on any backend (PW1 and PW6 run it on PostgreSQL): single-event appends to its own 100
    /// streams in turn, with the exact expected version.
    /// </summary>
    internal static async Task AppendAsync(IEventStore store, int writer, Meter meter)
    {
        var streams = Streams(writer).Select(s => new StreamName(s)).ToArray();
        var next = new long[StreamsPerWriter];
        for (long i = 0; !meter.Stopping; i++)
        {
            var s = (int)(i % StreamsPerWriter);
            var expected = next[s] == 0 ? ExpectedVersion.NoStream : ExpectedVersion.Exactly(next[s] - 1);
            await store.AppendToStreamAsync(streams[s], expected, [Payloads.Event(i)]);
            next[s]++;
            meter.Add(1);
        }
    }

    private static async Task<Rate> BaselineAsync(int writers, Scale scale)
    {
        using var db = new TempDatabase("w1-baseline");
        Baseline.Create(db.Path);
        return await Throughput.MeasureAsync(writers, (w, meter) =>
        {
            using var connection = Baseline.Open(db.Path);
            using var insert = Baseline.InsertCommand(connection);
            var streams = Streams(w);
            var next = new long[StreamsPerWriter];
            for (long i = 0; !meter.Stopping; i++)
            {
                var s = (int)(i % StreamsPerWriter);
                using (var transaction = connection.BeginTransaction())
                {
                    insert.Transaction = transaction;
                    Baseline.Set(insert, streams[s], next[s], i);
                    insert.ExecuteNonQuery();
                    transaction.Commit();
                }

                next[s]++;
                meter.Add(1);
            }

            return Task.CompletedTask;
        }, blocking: true, scale.Warmup, scale.Duration);
    }

    /// <summary>The names of one writer's streams, the same in W1, PW1 and PW6.</summary>
    internal static string[] Streams(int writer) =>
        Enumerable.Range(0, StreamsPerWriter).Select(s => string.Create(CultureInfo.InvariantCulture, $"account-w{writer:D2}s{s:D3}")).ToArray();
}
