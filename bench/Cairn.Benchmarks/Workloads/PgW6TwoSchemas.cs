using System.Globalization;
using Cairn.Benchmarks.Postgres;
using Cairn.Postgres;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// PW6: what the append notification costs stores in different schemas of one server. PostgreSQL lets one notifying
/// transaction commit at a time, server-wide, so two stores' appends, which otherwise commit independently, take turns
/// at the commit. Two stores, each in a schema of its own, with 16 writers each doing PW1's single-event appends
/// (each writer to its own 100 streams in turn, exact expected version). Cairn: both notify
/// (<see cref="PostgresEventStoreOptions.NotifyAppends"/>, the default); baseline: the same with notifications off.
/// The figure is both stores' events per second together. Rounds alternate; the median round.
/// </summary>
internal static class PgW6TwoSchemas
{
    private const int WritersPerStore = 16;

    public static async Task<List<Figure>> RunAsync(Scale scale, BenchPostgres postgres)
    {
        var cs = await postgres.ConnectionStringAsync();
        var (cairn, baseline) = await MessageBench.CompareAsync(
            scale.Rounds, scale.CairnOnly, () => MeasureAsync(postgres, cs, notify: true, scale), () => MeasureAsync(postgres, cs, notify: false, scale), m => m.Rate.PerSecond);
        var note = string.Create(CultureInfo.InvariantCulture, $"server sessions: notifying {cairn.Waits}{(baseline is null ? "" : $"; not notifying {baseline.Waits}")}");
        return
        [
            new Figure("PW6", $"single-event appends, {WritersPerStore} writers on each of two stores in two schemas, appends notifying (baseline: NotifyAppends off)",
                cairn.Rate.PerSecond, "events/s", baseline?.Rate.PerSecond, Note: note),
        ];
    }

    private static async Task<PgMeasurement> MeasureAsync(BenchPostgres postgres, string cs, bool notify, Scale scale)
    {
        var schemas = new[] { BenchPostgres.NewSchema("pw6_a"), BenchPostgres.NewSchema("pw6_b") };
        try
        {
            await using var first = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schemas[0], NotifyAppends = notify });
            await using var second = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schemas[1], NotifyAppends = notify });
            var measured = await PgSides.MeasureAsync(cs, 2 * WritersPerStore, (w, meter) => W1ManyStreams.AppendAsync(w < WritersPerStore ? first : second, w, meter), scale);
            Log.Rate("PW6", notify ? "notifying" : "quiet", measured.Rate, "events");
            return measured;
        }
        finally
        {
            foreach (var schema in schemas)
            {
                await postgres.DropSchemaAsync(schema);
            }
        }
    }
}
