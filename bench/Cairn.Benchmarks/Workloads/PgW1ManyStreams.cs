using Cairn.Benchmarks.Postgres;
using Cairn.Postgres;
using JasperFx.Events;
using Npgsql;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// PW1: W1 on PostgreSQL. Single-event appends, each writer to its own 100 streams in turn with the exact expected
/// version, from 1 and from 16 concurrent writers. Sides: Cairn's <see cref="PostgresEventStore"/>; Marten in its Rich
/// and Quick append modes (<c>StartStream</c> for a new stream, then <c>Append(key, version after, event)</c>, a
/// session and <c>SaveChangesAsync</c> per event); raw Npgsql, each writer on its own connection, one prepared
/// single-row INSERT per event in its own transaction.
/// </summary>
internal static class PgW1ManyStreams
{
    private const int StreamsPerWriter = 100;

    public static async Task<List<Figure>> RunAsync(Scale scale, BenchPostgres postgres)
    {
        var cs = await postgres.ConnectionStringAsync();
        var figures = new List<Figure>();
        foreach (var writers in new[] { 1, 16 })
        {
            var id = $"PW1-{writers}";
            var sides = new List<PgSide> { new(PgSides.Cairn, () => CairnAsync(postgres, cs, writers, scale)) };
            sides.AddRange(MartenBench.Modes.Select(m => new PgSide(m.Side, () => MartenAsync(postgres, cs, m.Mode, writers, scale))));
            sides.Add(new PgSide(PgSides.Raw, () => RawAsync(postgres, cs, writers, scale)));
            var results = await PgSides.CompareAsync(id, "events", scale, sides);
            figures.AddRange(PgSides.Figures(id, $"single-event appends, {writers} writer{(writers == 1 ? "" : "s")}", "events/s", results,
                writers == 16 ? 0.8 : null, writers == 16 ? 3 : null));
        }

        return figures;
    }

    private static async Task<PgMeasurement> CairnAsync(BenchPostgres postgres, string cs, int writers, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw1_cairn");
        try
        {
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schema });
            return await PgSides.MeasureAsync(cs, writers, (w, meter) => W1ManyStreams.AppendAsync(store, w, meter), scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }

    private static async Task<PgMeasurement> MartenAsync(BenchPostgres postgres, string cs, EventAppendMode mode, int writers, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw1_marten");
        try
        {
            using var store = await MartenBench.OpenAsync(cs, schema, mode);
            return await PgSides.MeasureAsync(cs, writers, async (w, meter) =>
            {
                var streams = Streams(w);
                var next = new long[StreamsPerWriter];
                for (long i = 0; !meter.Stopping; i++)
                {
                    var s = (int)(i % StreamsPerWriter);
                    await using (var session = store.LightweightSession())
                    {
                        if (next[s] == 0)
                        {
                            session.Events.StartStream(streams[s], MartenBench.Event(i));
                        }
                        else
                        {
                            // Marten's expected version is the stream's version after the append (versions from 1).
                            session.Events.Append(streams[s], next[s] + 1, MartenBench.Event(i));
                        }

                        await session.SaveChangesAsync();
                    }

                    next[s]++;
                    meter.Add(1);
                }
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }

    private static async Task<PgMeasurement> RawAsync(BenchPostgres postgres, string cs, int writers, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw1_raw");
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(cs);
            await RawNpgsql.CreateAsync(dataSource, schema);
            return await PgSides.MeasureAsync(cs, writers, async (w, meter) =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var insert = await RawNpgsql.InsertCommandAsync(connection, schema, 1);
                var streams = Streams(w);
                var next = new long[StreamsPerWriter];
                for (long i = 0; !meter.Stopping; i++)
                {
                    var s = (int)(i % StreamsPerWriter);
                    RawNpgsql.Set(insert, 0, streams[s], next[s], i);
                    await insert.ExecuteNonQueryAsync(); // one statement outside a transaction block: its own transaction
                    next[s]++;
                    meter.Add(1);
                }
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }

    private static string[] Streams(int writer) => W1ManyStreams.Streams(writer);
}
