using Cairn.Benchmarks.Postgres;
using Cairn.EventStore;
using Cairn.Postgres;
using JasperFx.Events;
using Npgsql;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// PW2: W2 on PostgreSQL. One writer appends batches of 100 events to one stream, each with the exact expected
/// version. Sides: Cairn's <see cref="PostgresEventStore"/>; Marten Rich and Quick (one session and
/// <c>SaveChangesAsync</c> per batch); raw Npgsql, one prepared 100-row INSERT per batch.
/// </summary>
internal static class PgW2Batches
{
    public const int BatchSize = W2Batches.BatchSize;
    private const string Stream = "order-w2";

    public static async Task<List<Figure>> RunAsync(Scale scale, BenchPostgres postgres)
    {
        var cs = await postgres.ConnectionStringAsync();
        var sides = new List<PgSide> { new(PgSides.Cairn, () => CairnAsync(postgres, cs, scale)) };
        sides.AddRange(MartenBench.Modes.Select(m => new PgSide(m.Side, () => MartenAsync(postgres, cs, m.Mode, scale))));
        sides.Add(new PgSide(PgSides.Raw, () => RawAsync(postgres, cs, scale)));
        var results = await PgSides.CompareAsync("PW2", "events", scale, sides);
        return PgSides.Figures("PW2", $"batches of {BatchSize} events, 1 writer", "events/s", results, 0.8, 3);
    }

    private static async Task<PgMeasurement> CairnAsync(BenchPostgres postgres, string cs, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw2_cairn");
        try
        {
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schema });
            var stream = new StreamName(Stream);
            return await PgSides.MeasureAsync(cs, 1, async (_, meter) =>
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
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }

    private static async Task<PgMeasurement> MartenAsync(BenchPostgres postgres, string cs, EventAppendMode mode, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw2_marten");
        try
        {
            using var store = await MartenBench.OpenAsync(cs, schema, mode);
            return await PgSides.MeasureAsync(cs, 1, async (_, meter) =>
            {
                for (long n = 0; !meter.Stopping; n += BatchSize)
                {
                    var batch = new object[BatchSize];
                    for (var i = 0; i < BatchSize; i++)
                    {
                        batch[i] = MartenBench.Event(n + i);
                    }

                    await using (var session = store.LightweightSession())
                    {
                        if (n == 0)
                        {
                            session.Events.StartStream(Stream, batch);
                        }
                        else
                        {
                            session.Events.Append(Stream, n + BatchSize, batch);
                        }

                        await session.SaveChangesAsync();
                    }

                    meter.Add(BatchSize);
                }
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }

    private static async Task<PgMeasurement> RawAsync(BenchPostgres postgres, string cs, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw2_raw");
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(cs);
            await RawNpgsql.CreateAsync(dataSource, schema);
            return await PgSides.MeasureAsync(cs, 1, async (_, meter) =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var insert = await RawNpgsql.InsertCommandAsync(connection, schema, BatchSize);
                for (long n = 0; !meter.Stopping; n += BatchSize)
                {
                    for (var i = 0; i < BatchSize; i++)
                    {
                        RawNpgsql.Set(insert, i, Stream, n + i, n + i);
                    }

                    await insert.ExecuteNonQueryAsync();
                    meter.Add(BatchSize);
                }
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }
}
