using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// W4: eight writers on one stream with optimistic concurrency: read the stream's version, append one event expecting
/// exactly that version, and on <see cref="WrongExpectedVersionException"/> read again and retry. Counts successful
/// appends. Baseline: the same logic in SQL: read <c>max(version)</c>, then in a transaction insert version + 1, and on
/// a unique-key violation roll back and retry.
/// </summary>
internal static class W4Contention
{
    public const int Writers = 8;

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var (cairn, baseline) = await Throughput.CompareAsync("W4", "appends", scale, () => CairnAsync(scale), () => BaselineAsync(scale));
        return
        [
            new Figure("W4", $"{Writers} writers on one stream, retries", cairn.PerSecond, "appends/s", baseline?.PerSecond, null,
                $"conflicts (retries) per second: Cairn {Figure.Format(cairn.ConflictsPerSecond)}, baseline {(baseline is null ? "-" : Figure.Format(baseline.ConflictsPerSecond))}"),
        ];
    }

    private static async Task<Rate> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("w4-cairn");
        await using var store = Scale.OpenCairn(db);
        var stream = new StreamName("cart-w4");
        return await Throughput.MeasureAsync(Writers, async (w, meter) =>
        {
            for (long i = 0; !meter.Stopping; i++)
            {
                EventData[] events = [Payloads.Event(i)];
                while (!meter.Stopping)
                {
                    var version = await store.GetStreamVersionAsync(stream);
                    var expected = version is { } v ? ExpectedVersion.Exactly(v) : ExpectedVersion.NoStream;
                    try
                    {
                        await store.AppendToStreamAsync(stream, expected, events);
                        meter.Add(1);
                        break;
                    }
                    catch (WrongExpectedVersionException)
                    {
                        meter.Conflict();
                    }
                }
            }
        }, blocking: false, scale.Warmup, scale.Duration);
    }

    private static async Task<Rate> BaselineAsync(Scale scale)
    {
        using var db = new TempDatabase("w4-baseline");
        Baseline.Create(db.Path);
        return await Throughput.MeasureAsync(Writers, (w, meter) =>
        {
            using var connection = Baseline.Open(db.Path);
            using var insert = Baseline.InsertCommand(connection);
            using var read = connection.CreateCommand();
            read.CommandText = "SELECT max(version) FROM events WHERE stream = $stream";
            read.Parameters.AddWithValue("$stream", "cart-w4");
            for (long i = 0; !meter.Stopping; i++)
            {
                while (!meter.Stopping)
                {
                    var version = read.ExecuteScalar() is long v ? v : -1;
                    using var transaction = connection.BeginTransaction();
                    insert.Transaction = transaction;
                    Baseline.Set(insert, "cart-w4", version + 1, i);
                    try
                    {
                        insert.ExecuteNonQuery();
                        transaction.Commit();
                        meter.Add(1);
                        break;
                    }
                    catch (SqliteException ex) when (Baseline.IsUniqueViolation(ex))
                    {
                        transaction.Rollback();
                        meter.Conflict();
                    }
                }
            }

            return Task.CompletedTask;
        }, blocking: true, scale.Warmup, scale.Duration);
    }
}
