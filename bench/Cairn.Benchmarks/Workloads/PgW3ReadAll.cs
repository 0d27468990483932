using System.Diagnostics;
using System.Globalization;
using Cairn.Benchmarks.Postgres;
using Cairn.EventStore;
using Cairn.Postgres;
using JasperFx.Events;
using Marten;
using Npgsql;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// PW3: W3 on PostgreSQL. A full read of <c>$all</c> from the start, every event materialised and its data touched.
/// Each side's log, a fifth of W3's (<see cref="LogSize"/>: Marten writes it at about 2,000 events/s on the 2-core
/// machine, which would make a million take minutes per side), is written first (not timed) in appends of 1,000 events,
/// 100 to each of 10 streams; then the sides
/// read in turn, <see cref="WarmUpReads"/> times uncounted to warm up and then <see cref="Scale.PgReadRuns"/> times each, rotating which goes first. Sides: Cairn's
/// <c>ReadAllAsync(GlobalPosition.Start)</c>; Marten's <c>QueryAllRawEvents()</c> in sequence order, streamed with
/// <c>ToAsyncEnumerable()</c> (Marten hands back each event's data deserialized); raw Npgsql, one
/// <c>SELECT … ORDER BY position</c> through an <c>NpgsqlDataReader</c>, an object per row with the same facts.
/// </summary>
internal static class PgW3ReadAll
{
    private const int EventsPerStream = 100;
    private const int StreamsPerAppend = 10;

    /// <summary>Uncounted reads per side before the counted ones.</summary>
    private const int WarmUpReads = 3;

    private sealed record Reader(string Name, string Schema, Func<Task<(long Count, long Check)>> Read, IAsyncDisposable? Owned);

    /// <summary>Events in each side's log: 200,000 in a full run, 40,000 with <c>--quick</c>.</summary>
    public static int LogSize(Scale scale) => scale.ReadEvents / 5;

    public static async Task<List<Figure>> RunAsync(Scale scale, BenchPostgres postgres)
    {
        var cs = await postgres.ConnectionStringAsync();
        var readers = new List<Reader>();
        try
        {
            readers.Add(await CairnAsync(cs, scale));
            foreach (var (side, mode) in MartenBench.Modes.Where(m => scale.Keeps(m.Side)))
            {
                readers.Add(await MartenAsync(cs, side, mode, scale));
            }

            if (scale.Keeps(PgSides.Raw))
            {
                readers.Add(await RawAsync(cs, scale));
            }

            // Uncounted reads per side first, as the other workloads warm up. A read of this log lasts under a second
            // and pages through about 30 queries, so after one read a side's page loop had not yet been called often
            // enough to be recompiled by the tiered JIT: the counted reads ran it unoptimised, or through on-stack
            // replacement, for a part that varied from run to run.
            for (var warmUp = 0; warmUp < WarmUpReads; warmUp++)
            {
                foreach (var reader in readers)
                {
                    var clock = Stopwatch.StartNew();
                    var (count, _) = await reader.Read();
                    if (count != LogSize(scale))
                    {
                        throw new InvalidOperationException($"PW3 {reader.Name} read {count} events, expected {LogSize(scale)}.");
                    }

                    Log.Line(string.Create(CultureInfo.InvariantCulture, $"  PW3    {reader.Name,-12} warm-up read {warmUp + 1}: {count / clock.Elapsed.TotalSeconds,12:#,0} events/s, not counted"));
                }

                // The tiered JIT recompiles hot methods on a background thread after a short quiet period.
                await Task.Delay(TimeSpan.FromMilliseconds(200));
            }

            var results = readers.ToDictionary(r => r.Name, _ => new List<PgMeasurement>());
            for (var run = 0; run < scale.PgReadRuns; run++)
            {
                for (var i = 0; i < readers.Count; i++)
                {
                    var reader = readers[(run + i) % readers.Count];
                    await using var sampler = new WaitSampler(cs, TimeSpan.Zero);
                    var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                    var allocated0 = GC.GetTotalAllocatedBytes();
                    var clock = Stopwatch.StartNew();
                    var (count, check) = await reader.Read();
                    var elapsed = clock.Elapsed;
                    var cpuUs = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMicroseconds;
                    var allocated = GC.GetTotalAllocatedBytes() - allocated0;
                    var waits = await sampler.StopAsync();
                    if (count != LogSize(scale))
                    {
                        throw new InvalidOperationException($"PW3 {reader.Name} read {count} events, expected {LogSize(scale)}.");
                    }

                    var rate = count / elapsed.TotalSeconds;
                    results[reader.Name].Add(new PgMeasurement(new Rate(rate, 0, count, elapsed.TotalSeconds) { CpuMs = cpuUs / 1000, AllocatedBytes = allocated }, waits));
                    Log.Line(string.Create(CultureInfo.InvariantCulture,
                        $"  PW3    {reader.Name,-12} {rate,12:#,0} events/s  (read {run + 1}: {count:#,0} events in {elapsed.TotalSeconds:0.00} s, check {check % 1000}; client CPU {cpuUs / count:0.00} µs and {(double)allocated / count:#,0} bytes allocated per event); server sessions: {waits}"));
                }
            }

            PgMeasurement? Median(string name) =>
                results.TryGetValue(name, out var list) ? list.OrderBy(m => m.Rate.PerSecond).ElementAt(list.Count / 2) : null;
            var r = new PgResults(Median(PgSides.Cairn)!, Median(PgSides.Rich), Median(PgSides.Quick), Median(PgSides.Raw));
            return PgSides.Figures("PW3", $"full read of $all, {LogSize(scale):#,0} events", "events/s", r, 0.8, 3,
                $"median of {scale.PgReadRuns} full reads per side");
        }
        finally
        {
            foreach (var reader in readers)
            {
                if (reader.Owned is { } owned)
                {
                    await owned.DisposeAsync();
                }

                await postgres.DropSchemaAsync(reader.Schema);
            }
        }
    }

    private static async Task<Reader> CairnAsync(string cs, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw3_cairn");
        var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schema });
        var write = Stopwatch.StartNew();
        for (var first = 0; first < LogSize(scale); first += EventsPerStream * StreamsPerAppend)
        {
            var parts = new List<StreamAppend>(StreamsPerAppend);
            for (var s = 0; s < StreamsPerAppend && first + s * EventsPerStream < LogSize(scale); s++)
            {
                var n0 = first + s * EventsPerStream;
                var events = new EventData[EventsPerStream];
                for (var i = 0; i < EventsPerStream; i++)
                {
                    events[i] = Payloads.Event(n0 + i);
                }

                parts.Add(new StreamAppend(new StreamName(StreamName(n0)), ExpectedVersion.NoStream, events));
            }

            await store.AppendToStreamsAsync(parts);
        }

        Wrote(PgSides.Cairn, scale, write.Elapsed);
        return new Reader(PgSides.Cairn, schema, async () =>
        {
            long count = 0, bytes = 0, check = 0;
            await foreach (var e in store.ReadAllAsync(GlobalPosition.Start))
            {
                count++;
                bytes += e.Data.Length;
                check += e.Data.Span[e.Data.Length - 3] + e.Version;
            }

            return (bytes == count * Payloads.Size ? count : -1, check);
        }, store);
    }

    private static async Task<Reader> MartenAsync(string cs, string side, EventAppendMode mode, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw3_marten");
        var store = await MartenBench.OpenAsync(cs, schema, mode);
        var write = Stopwatch.StartNew();
        for (var first = 0; first < LogSize(scale); first += EventsPerStream * StreamsPerAppend)
        {
            await using var session = store.LightweightSession();
            for (var s = 0; s < StreamsPerAppend && first + s * EventsPerStream < LogSize(scale); s++)
            {
                var n0 = first + s * EventsPerStream;
                var events = new object[EventsPerStream];
                for (var i = 0; i < EventsPerStream; i++)
                {
                    events[i] = MartenBench.Event(n0 + i);
                }

                session.Events.StartStream(StreamName(n0), events);
            }

            await session.SaveChangesAsync();
        }

        Wrote(side, scale, write.Elapsed);
        return new Reader(side, schema, async () =>
        {
            long count = 0, check = 0;
            await using var session = store.QuerySession();
            await foreach (var e in session.Events.QueryAllRawEvents().OrderBy(e => e.Sequence).ToAsyncEnumerable())
            {
                count++;
                check += ((BenchItemAdded)e.Data).Note[^1] + e.Version;
            }

            return (count, check);
        }, new DisposeSync(store));
    }

    private static async Task<Reader> RawAsync(string cs, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw3_raw");
        var dataSource = NpgsqlDataSource.Create(cs);
        await RawNpgsql.CreateAsync(dataSource, schema);
        var write = Stopwatch.StartNew();
        await using (var connection = await dataSource.OpenConnectionAsync())
        await using (var insert = await RawNpgsql.InsertCommandAsync(connection, schema, EventsPerStream))
        {
            for (var first = 0; first < LogSize(scale); first += EventsPerStream * StreamsPerAppend)
            {
                await using var transaction = await connection.BeginTransactionAsync();
                insert.Transaction = transaction;
                for (var n0 = first; n0 < Math.Min(first + EventsPerStream * StreamsPerAppend, LogSize(scale)); n0 += EventsPerStream)
                {
                    for (var i = 0; i < EventsPerStream; i++)
                    {
                        RawNpgsql.Set(insert, i, StreamName(n0), i, n0 + i);
                    }

                    await insert.ExecuteNonQueryAsync();
                }

                await transaction.CommitAsync();
            }
        }

        Wrote(PgSides.Raw, scale, write.Elapsed);
        return new Reader(PgSides.Raw, schema, async () =>
        {
            long count = 0, bytes = 0, check = 0;
            await using var connection = await dataSource.OpenConnectionAsync();
            await using var select = new NpgsqlCommand($"SELECT position, stream, version, id, type, time_ticks, data FROM {schema}.events ORDER BY position", connection);
            await using var reader = await select.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                var e = new BaselineEvent(
                    reader.GetInt64(0),
                    reader.GetString(1),
                    reader.GetInt64(2),
                    reader.GetGuid(3),
                    reader.GetString(4),
                    new DateTimeOffset(reader.GetInt64(5), TimeSpan.Zero),
                    reader.GetFieldValue<byte[]>(6));
                count++;
                bytes += e.Data.Length;
                check += e.Data[^3] + e.Version;
            }

            return (bytes == count * Payloads.Size ? count : -1, check);
        }, dataSource);
    }

    private static void Wrote(string side, Scale scale, TimeSpan elapsed) =>
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  PW3    {side,-12} wrote {LogSize(scale):#,0} events in {elapsed.TotalSeconds:0.0} s ({LogSize(scale) / elapsed.TotalSeconds:#,0} events/s in appends of {EventsPerStream * StreamsPerAppend:#,0})"));

    private static string StreamName(int firstEvent) =>
        string.Create(CultureInfo.InvariantCulture, $"item-{firstEvent / EventsPerStream:D6}");

    /// <summary>Marten's store disposes synchronously.</summary>
    private sealed class DisposeSync(IDisposable owned) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            owned.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
