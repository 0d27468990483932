using System.Globalization;
using Npgsql;

namespace Cairn.Benchmarks.Postgres;

/// <summary>One side of a PostgreSQL workload: Cairn, Marten in one of its append modes, or raw Npgsql.</summary>
/// <param name="Name">How the side reads in the log and the notes.</param>
/// <param name="Run">One measurement, on fresh tables in a schema of its own.</param>
internal sealed record PgSide(string Name, Func<Task<PgMeasurement>> Run);

/// <summary>A side's measurement and what its server sessions were doing meanwhile.</summary>
internal sealed record PgMeasurement(Rate Rate, WaitProfile Waits);

/// <summary>Each side's median round.</summary>
internal sealed record PgResults(PgMeasurement Cairn, PgMeasurement? Rich, PgMeasurement? Quick, PgMeasurement? Raw)
{
    /// <summary>Marten's faster mode in this run, or null in a run without baselines.</summary>
    public (string Mode, PgMeasurement Measurement)? MartenBest =>
        Rich is null || Quick is null ? null : Quick.Rate.PerSecond >= Rich.Rate.PerSecond ? ("Quick", Quick) : ("Rich", Rich);
}

internal static class PgSides
{
    public const string Cairn = "Cairn";
    public const string Rich = "Marten-Rich";
    public const string Quick = "Marten-Quick";
    public const string Raw = "raw";

    /// <summary>
    /// Measures every side <see cref="Scale.Rounds"/> times, rotating which side goes first in each round (the machine is
    /// shared and noisy, and a drift should hit every side alike), and returns each side's median round.
    /// </summary>
    public static async Task<PgResults> CompareAsync(string id, string unit, Scale scale, IReadOnlyList<PgSide> sides)
    {
        var active = sides.Where(s => scale.Keeps(s.Name)).ToList();
        var results = active.ToDictionary(s => s.Name, _ => new List<PgMeasurement>());
        for (var round = 0; round < scale.Rounds; round++)
        {
            for (var i = 0; i < active.Count; i++)
            {
                var side = active[(round + i) % active.Count];
                var measured = await side.Run();
                results[side.Name].Add(measured);
                Log.Rate(id, side.Name, measured.Rate, unit);
                Log.Line(string.Create(CultureInfo.InvariantCulture,
                    $"  {"",-6} {"",-12} client CPU {measured.Rate.CpuUsPerUnit:#,0.0} us/{unit[..^1]}, {measured.Rate.BytesPerUnit:#,0} B allocated/{unit[..^1]}; server sessions: {measured.Waits}"));
            }
        }

        PgMeasurement? Median(string name) =>
            results.TryGetValue(name, out var list) && list.Count > 0 ? list.OrderBy(m => m.Rate.PerSecond).ElementAt(list.Count / 2) : null;

        return new PgResults(Median(Cairn)!, Median(Rich), Median(Quick), Median(Raw));
    }

    /// <summary>
    /// Cairn's figure twice: against raw Npgsql (the floor; the target is within <paramref name="ofRaw"/>) and against
    /// Marten's faster mode in this run (the target is at least <paramref name="overMarten"/> times).
    /// </summary>
    public static List<Figure> Figures(string id, string title, string unit, PgResults r, double? ofRaw, double? overMarten, string? extra = null)
    {
        var best = r.MartenBest;
        var sides = string.Create(CultureInfo.InvariantCulture,
            $"Marten Rich {Fmt(r.Rich)}, Quick {Fmt(r.Quick)}, raw Npgsql {Fmt(r.Raw)} {unit}; where the server sessions were: Cairn {r.Cairn.Waits}{(r.Raw is null ? "" : $"; raw {r.Raw.Waits}")}{(best is null ? "" : $"; Marten {best.Value.Mode} {best.Value.Measurement.Waits}")}");
        return
        [
            new Figure(id, $"{title}, vs raw Npgsql", r.Cairn.Rate.PerSecond, unit, r.Raw?.Rate.PerSecond,
                ofRaw is { } f ? AtLeast(f, "raw Npgsql") : null, extra is null ? sides : extra + "; " + sides),
            new Figure(id + "-marten", $"{title}, vs Marten ({best?.Mode ?? "-"})", r.Cairn.Rate.PerSecond, unit, best?.Measurement.Rate.PerSecond,
                overMarten is { } m ? AtLeast(m, "Marten's best mode") : null),
        ];
    }

    private static string Fmt(PgMeasurement? m) => m is null ? "-" : Figure.Format(m.Rate.PerSecond);

    private static Target AtLeast(double ratio, string of) =>
        new(string.Create(CultureInfo.InvariantCulture, $">= {ratio:0.0#}x {of}"), f => f.Ratio is { } x && x >= ratio, NeedsBaseline: true);

    /// <summary>
    /// Runs <paramref name="worker"/> on <paramref name="workers"/> async workers as <see cref="Throughput.MeasureAsync"/>
    /// does, sampling the server's sessions from the end of the warm-up on.
    /// </summary>
    public static async Task<PgMeasurement> MeasureAsync(string connectionString, int workers, Func<int, Meter, Task> worker, Scale scale)
    {
        await using var sampler = new WaitSampler(connectionString, scale.Warmup);
        var rate = await Throughput.MeasureAsync(workers, worker, blocking: false, scale.Warmup, scale.Duration);
        return new PgMeasurement(rate, await sampler.StopAsync());
    }
}

/// <summary>What the server's client sessions in the bench's database were doing, as a share of the samples.</summary>
/// <param name="Counts">Samples per state, such as <c>Lock:advisory</c>, <c>CPU</c> or <c>IO:WALSync</c>.</param>
/// <param name="Samples">How many times the sessions were looked at.</param>
internal sealed record WaitProfile(IReadOnlyDictionary<string, int> Counts, int Samples)
{
    public override string ToString()
    {
        var total = Counts.Values.Sum();
        if (total == 0)
        {
            return "no samples";
        }

        var top = Counts.OrderByDescending(c => c.Value).Take(5)
            .Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Key} {100.0 * c.Value / total:0}%"));
        return string.Create(CultureInfo.InvariantCulture, $"{(double)total / Samples:0.0} sessions on average: {string.Join(", ", top)}");
    }
}

/// <summary>
/// Looks at <c>pg_stat_activity</c> every 100 ms: for each client session of the database (other than its own) in a
/// transaction or a statement, its wait event, <c>CPU</c> when it waits for nothing, or <c>Client:ClientRead</c> when it
/// sits in a transaction waiting for the client's next statement. Sessions idle between transactions are not counted.
/// </summary>
internal sealed class WaitSampler : IAsyncDisposable
{
    private const string Query = """
        SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'CPU')
                    ELSE coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' (idle in transaction)' END, count(*)::int
        FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND state IN ('active', 'idle in transaction')
        GROUP BY 1
        """;

    private readonly CancellationTokenSource _stop = new();
    private readonly Task<WaitProfile> _sampling;

    public WaitSampler(string connectionString, TimeSpan delay) => _sampling = SampleAsync(connectionString, delay, _stop.Token);

    public async Task<WaitProfile> StopAsync()
    {
        await _stop.CancelAsync();
        return await _sampling;
    }

    private static async Task<WaitProfile> SampleAsync(string connectionString, TimeSpan delay, CancellationToken stop)
    {
        var counts = new Dictionary<string, int>();
        var samples = 0;
        try
        {
            await Task.Delay(delay, stop);
            await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
            await connection.OpenAsync(stop);
            await using var command = new NpgsqlCommand(Query, connection);
            while (!stop.IsCancellationRequested)
            {
                await using (var reader = await command.ExecuteReaderAsync(stop))
                {
                    while (await reader.ReadAsync(stop))
                    {
                        var key = reader.GetString(0);
                        counts[key] = counts.GetValueOrDefault(key) + reader.GetInt32(1);
                    }
                }

                samples++;
                await Task.Delay(100, stop);
            }
        }
        catch (Exception) when (stop.IsCancellationRequested)
        {
            // Stopped in the middle of a sample (Npgsql may report the cancellation as its own exception).
        }

        return new WaitProfile(counts, Math.Max(samples, 1));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await _stop.CancelAsync();
            try
            {
                await _sampling;
            }
            catch (Exception)
            {
                // A failed measurement is being reported already; the sampler's own failure would hide it.
            }
        }

        _stop.Dispose();
    }
}
