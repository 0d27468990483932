using System.Diagnostics;
using System.Globalization;
using Cairn.Benchmarks.Postgres;
using Cairn.Benchmarks.Workloads;

namespace Cairn.Benchmarks;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        BenchOptions options;
        try
        {
            options = BenchOptions.Parse(args);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine(ex.Message);
            Console.Error.WriteLine(BenchOptions.Usage);
            return 2;
        }

        if (options.Help)
        {
            Console.WriteLine(BenchOptions.Usage);
            return 0;
        }

        var scale = (options.Quick ? Scale.Quick : Scale.Full) with { CairnOnly = options.CairnOnly, NoMarten = options.NoMarten };
        if (options.Child)
        {
            // The W5 child: one measurement in a fresh process, its figure handed back through the JSON file.
            var w5 = await W5Memory.RunHereAsync(scale);
            if (options.JsonPath is { } path)
            {
                Figure.WriteJson(path, w5);
            }

            return 0;
        }

        await using var postgres = new BenchPostgres(options.PostgresDurable);
        var clock = Stopwatch.StartNew();
        foreach (var line in MachineInfo.Describe())
        {
            Console.WriteLine(line);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"mode: {(options.Quick ? "quick" : "full")}; workloads: {string.Join(",", BenchOptions.AllWorkloads.Where(options.Runs))}; {scale.Rounds} round(s) per side of {scale.Duration.TotalSeconds:0.#} s after {scale.Warmup.TotalSeconds:0.#} s warm-up (W1, W2, W4, S1); load average {MachineInfo.LoadAverage()}"));
        Console.WriteLine();

        var figures = new List<Figure>();
        var workloads = new (string Id, Func<Task<List<Figure>>> Run)[]
        {
            ("W1", () => W1ManyStreams.RunAsync(scale)),
            ("W2", () => W2Batches.RunAsync(scale)),
            ("W3", () => W3ReadAll.RunAsync(scale)),
            ("W4", () => W4Contention.RunAsync(scale)),
            ("W5", () => W5Memory.RunInChildAsync(options)),
            ("M1", () => M1Throughput.RunAsync(scale)),
            ("M2", () => M2Latency.RunAsync(scale)),
            ("M3", () => M3FanOut.RunAsync(scale)),
            ("P1", () => P1Rebuild.RunAsync(scale)),
            ("P2", () => P2Lag.RunAsync(scale)),
            ("O1", () => O1Workflows.RunAsync(scale)),
            ("O2", () => O2Choreography.RunAsync(scale)),
            ("S1", () => S1SchemaValidation.RunAsync(scale)),
            ("PW1", () => PgW1ManyStreams.RunAsync(scale, postgres)),
            ("PW2", () => PgW2Batches.RunAsync(scale, postgres)),
            ("PW3", () => PgW3ReadAll.RunAsync(scale, postgres)),
            ("PW4", () => PgW4Contention.RunAsync(scale, postgres)),
            ("PW5", () => PgW5CrossProcessLatency.RunAsync(scale, postgres)),
            ("PW6", () => PgW6TwoSchemas.RunAsync(scale, postgres)),
            ("R1", () => R1R2RabbitMq.R1Async(scale)),
            ("R2", () => R1R2RabbitMq.R2Async(scale)),
        };
        foreach (var (id, run) in workloads.Where(w => options.Runs(w.Id)))
        {
            var started = clock.Elapsed;
            Console.WriteLine($"{id}:");
            figures.AddRange(await run());
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ({(clock.Elapsed - started).TotalSeconds:0.0} s)"));
        }

        Console.WriteLine();
        Figure.PrintTable(Console.Out, figures);
        if (new[] { "W1", "W2", "W4" }.Any(options.Runs))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"W1, W2 and W4 are the median of {scale.Rounds} round(s) per side, Cairn and baseline alternating; each round has fresh files."));
        }

        if (new[] { "M1", "M2", "M3" }.Any(options.Runs))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"M1, M2 and M3 run {scale.QueueRounds}, {scale.LatencyRounds} and {scale.FanOutRounds} round(s) per side, each with fresh files; M2's ratios below 1 are Cairn's latency as a share of the baseline's."));
        }

        if (new[] { "P1", "P2" }.Any(options.Runs))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"P1 is the median of {scale.Rounds} rebuild(s) into memory and {scale.ProjectionSqliteRounds} into SQLite per side, on one file of {scale.ProjectionEvents:#,0} events; P2 runs {scale.LagRounds} round(s) per side of {scale.LagDuration.TotalSeconds:0.#} s after {scale.LagWarmup.TotalSeconds:0.#} s, each with a fresh file; P2's ratios below 1 are Cairn's lag as a share of the baseline's."));
        }

        if (new[] { "O1", "O2" }.Any(options.Runs))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"O1 and O2 run {scale.WorkflowRounds} round(s) per side of {scale.WorkflowDuration.TotalSeconds:0.#} s after {scale.WorkflowWarmup.TotalSeconds:0.#} s, each with a fresh file, {O1Workflows.InFlightOrders} checkouts in flight; O2's baseline is O1's workflow, measured again in alternate rounds."));
        }

        if (options.Runs("S1"))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"S1 is the median of {scale.Rounds} round(s) per side of {scale.Duration.TotalSeconds:0.#} s after {scale.Warmup.TotalSeconds:0.#} s, validation Reject and Off alternating, each with a fresh file and host; its ratio is validated / off."));
        }

        if (BenchOptions.PostgresWorkloads.Any(options.Runs))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"PW1, PW2 and PW4 are the median of {scale.Rounds} round(s) per side (Cairn, Marten Rich, Marten Quick, raw Npgsql), the first side rotating, each with fresh tables; PW3 the median of {scale.PgReadRuns} reads per side. Each PWn row is Cairn against raw Npgsql, each PWn-marten row Cairn against Marten's faster mode in the same run."));
        }

        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"total {clock.Elapsed.TotalSeconds:0.0} s; load average {MachineInfo.LoadAverage()}"));
        if (options.JsonPath is { } json)
        {
            Figure.WriteJson(json, figures);
            Console.WriteLine($"figures written to {Path.GetFullPath(json)}");
        }

        return 0;
    }
}
