using Cairn.Benchmarks.Postgres;
using Cairn.EventStore;
using Cairn.Postgres;
using JasperFx;
using JasperFx.Events;
using Npgsql;
using StreamCollision = Marten.Exceptions.ExistingStreamIdCollisionException;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// PW4: W4 on PostgreSQL. Eight writers on one stream with optimistic concurrency: read the stream's version, append
/// one event expecting exactly that version, and on a conflict read again and retry. Counts successful appends. Sides:
/// Cairn (<see cref="WrongExpectedVersionException"/>); Marten Rich and Quick (<c>FetchStreamStateAsync</c>, then
/// <c>Append(key, version + 1, event)</c>, or <c>StartStream</c> for a new stream; a
/// <see cref="ConcurrencyException"/> or <see cref="StreamCollision"/> is a conflict); raw Npgsql
/// (<c>SELECT max(version)</c>, then an INSERT of version + 1 in its own transaction; a unique-key violation is a
/// conflict).
/// </summary>
internal static class PgW4Contention
{
    public const int Writers = W4Contention.Writers;
    private const string Stream = "cart-w4";

    public static async Task<List<Figure>> RunAsync(Scale scale, BenchPostgres postgres)
    {
        var cs = await postgres.ConnectionStringAsync();
        var sides = new List<PgSide> { new(PgSides.Cairn, () => CairnAsync(postgres, cs, scale)) };
        sides.AddRange(MartenBench.Modes.Select(m => new PgSide(m.Side, () => MartenAsync(postgres, cs, m.Mode, scale))));
        sides.Add(new PgSide(PgSides.Raw, () => RawAsync(postgres, cs, scale)));
        var r = await PgSides.CompareAsync("PW4", "appends", scale, sides);
        string Conflicts(PgMeasurement? m) => m is null ? "-" : Figure.Format(m.Rate.ConflictsPerSecond);
        return PgSides.Figures("PW4", $"{Writers} writers on one stream, retries", "appends/s", r, null, null,
            $"conflicts (retries) per second: Cairn {Conflicts(r.Cairn)}, Marten Rich {Conflicts(r.Rich)}, Quick {Conflicts(r.Quick)}, raw {Conflicts(r.Raw)}");
    }

    private static async Task<PgMeasurement> CairnAsync(BenchPostgres postgres, string cs, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw4_cairn");
        try
        {
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schema });
            var stream = new StreamName(Stream);
            return await PgSides.MeasureAsync(cs, Writers, async (w, meter) =>
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
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }

    private static async Task<PgMeasurement> MartenAsync(BenchPostgres postgres, string cs, EventAppendMode mode, Scale scale)
    {
        var schema = BenchPostgres.NewSchema("pw4_marten");
        try
        {
            using var store = await MartenBench.OpenAsync(cs, schema, mode);
            return await PgSides.MeasureAsync(cs, Writers, async (w, meter) =>
            {
                for (long i = 0; !meter.Stopping; i++)
                {
                    while (!meter.Stopping)
                    {
                        await using var session = store.LightweightSession();
                        var state = await session.Events.FetchStreamStateAsync(Stream);
                        if (state is null)
                        {
                            session.Events.StartStream(Stream, MartenBench.Event(i));
                        }
                        else
                        {
                            session.Events.Append(Stream, state.Version + 1, MartenBench.Event(i));
                        }

                        try
                        {
                            await session.SaveChangesAsync();
                            meter.Add(1);
                            break;
                        }
                        catch (Exception ex) when (ex is ConcurrencyException or StreamCollision)
                        {
                            meter.Conflict();
                        }
                    }
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
        var schema = BenchPostgres.NewSchema("pw4_raw");
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(cs);
            await RawNpgsql.CreateAsync(dataSource, schema);
            return await PgSides.MeasureAsync(cs, Writers, async (w, meter) =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
                await using var insert = await RawNpgsql.InsertCommandAsync(connection, schema, 1);
                await using var read = new NpgsqlCommand($"SELECT max(version) FROM {schema}.events WHERE stream = $1", connection);
                read.Parameters.Add(new NpgsqlParameter<string> { TypedValue = Stream });
                await read.PrepareAsync();
                for (long i = 0; !meter.Stopping; i++)
                {
                    while (!meter.Stopping)
                    {
                        var version = await read.ExecuteScalarAsync() is long v ? v : -1;
                        RawNpgsql.Set(insert, 0, Stream, version + 1, i);
                        try
                        {
                            await insert.ExecuteNonQueryAsync();
                            meter.Add(1);
                            break;
                        }
                        catch (PostgresException ex) when (RawNpgsql.IsUniqueViolation(ex))
                        {
                            meter.Conflict();
                        }
                    }
                }
            }, scale);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }
}
