using Cairn.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>How long and how big each workload runs: the full run, or the quick one (under two minutes in all).</summary>
/// <param name="Warmup">
/// Time each throughput measurement runs before it starts counting: long enough for a fresh file's write-ahead log to
/// pass its first checkpoint, after which it is reused (a growing log costs a journal commit in every fsync).
/// </param>
/// <param name="Duration">Time each throughput measurement counts.</param>
/// <param name="Rounds">Throughput measurements per side, alternating Cairn and baseline; the median is reported.</param>
/// <param name="ReadEvents">Events in the log W3 reads.</param>
/// <param name="ReadRuns">Full reads per side in W3; the median is reported.</param>
/// <param name="MemoryEvents">Events W5 appends and then reads.</param>
internal sealed record Scale(TimeSpan Warmup, TimeSpan Duration, int Rounds, int ReadEvents, int ReadRuns, int MemoryEvents)
{
    /// <summary>Skips the baselines (<c>--cairn-only</c>), to profile Cairn alone.</summary>
    public bool CairnOnly { get; init; }

    public static Scale Full { get; } = new(TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(5), 3, 1_000_000, 3, 1_000_000);

    public static Scale Quick { get; } = new(TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(2), 1, 200_000, 3, 200_000);

    /// <summary>Cairn with its defaults (durability Full, that is <c>synchronous=FULL</c>).</summary>
    public static SqliteEventStore OpenCairn(TempDatabase db) =>
        new(new SqliteEventStoreOptions { ConnectionString = db.ConnectionString });
}
