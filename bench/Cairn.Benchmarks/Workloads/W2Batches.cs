using Cairn.EventStore;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// W2: one writer appends batches of 100 events to one stream, each with the exact expected version, durable.
/// Baseline: one transaction per 100-row batch (one fsync per batch, as Cairn does).
/// </summary>
internal static class W2Batches
{
    public const int BatchSize = 100;

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var (cairn, baseline) = await Throughput.CompareAsync("W2", "events", scale, () => CairnAsync(scale), () => BaselineAsync(scale));
        return
        [
            new Figure("W2", $"batches of {BatchSize} events, 1 writer", cairn.PerSecond, "events/s", baseline?.PerSecond, Figure.AtLeast(200_000, "events/s")),
        ];
    }

    private static async Task<Rate> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("w2-cairn");
        await using var store = Scale.OpenCairn(db);
        var stream = new StreamName("order-w2");
        return await Throughput.MeasureAsync(1, async (_, meter) =>
        {
            var expected = ExpectedVersion.NoStream;
            for (long n = 0; !meter.Stopping; n += BatchSize)
            {
                var batch = new EventData[BatchSize];
                for (var i = 0; i < BatchSize; i++)
                {
                    batch[i] = Payloads.Event(n + i);
                }

                var result = await store.AppendToStreamAsync(stream, expected, batch);
                expected = ExpectedVersion.Exactly(result.NextExpectedVersion);
                meter.Add(BatchSize);
            }
        }, blocking: false, scale.Warmup, scale.Duration);
    }

    private static async Task<Rate> BaselineAsync(Scale scale)
    {
        using var db = new TempDatabase("w2-baseline");
        Baseline.Create(db.Path);
        return await Throughput.MeasureAsync(1, (_, meter) =>
        {
            using var connection = Baseline.Open(db.Path);
            using var insert = Baseline.InsertCommand(connection);
            for (long n = 0; !meter.Stopping; n += BatchSize)
            {
                using (var transaction = connection.BeginTransaction())
                {
                    insert.Transaction = transaction;
                    for (var i = 0; i < BatchSize; i++)
                    {
                        Baseline.Set(insert, "order-w2", n + i, n + i);
                        insert.ExecuteNonQuery();
                    }

                    transaction.Commit();
                }

                meter.Add(BatchSize);
            }

            return Task.CompletedTask;
        }, blocking: true, scale.Warmup, scale.Duration);
    }
}
