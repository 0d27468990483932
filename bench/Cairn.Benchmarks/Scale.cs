using Cairn.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>How long and how big each workload runs: the full run, or the quick one.</summary>
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

    /// <summary>Skips Marten's sides of the PostgreSQL workloads (<c>--no-marten</c>), keeping raw Npgsql.</summary>
    public bool NoMarten { get; init; }

    /// <summary>Whether a PostgreSQL workload measures the side named <paramref name="side"/> (see <c>PgSides</c>).</summary>
    public bool Keeps(string side) =>
        side == Postgres.PgSides.Cairn || (!CairnOnly && !(NoMarten && side.StartsWith("Marten", StringComparison.Ordinal)));

    /// <summary>M1: messages sent and then consumed in each timed round (a multiple of 100).</summary>
    public int QueueMessages { get; init; }

    /// <summary>M1: messages sent and consumed through the same queue, untimed, before the timed ones.</summary>
    public int QueueWarmupMessages { get; init; }

    /// <summary>M1: messages the one-message-per-transaction baseline sends and consumes (a multiple of 100).</summary>
    public int QueueSingleMessages { get; init; }

    /// <summary>M1: rounds per side, alternating Cairn and baseline; the median is reported.</summary>
    public int QueueRounds { get; init; }

    /// <summary>M2: how long the paced sender runs before its messages count.</summary>
    public TimeSpan LatencyWarmup { get; init; }

    /// <summary>M2: how long the paced sender runs while its messages count.</summary>
    public TimeSpan LatencyDuration { get; init; }

    /// <summary>M2: rounds per side; the round with the median p99 is reported.</summary>
    public int LatencyRounds { get; init; }

    /// <summary>M3: messages published to the topic in each timed round (a multiple of 100).</summary>
    public int FanOutPublishes { get; init; }

    /// <summary>M3: messages published and consumed untimed first.</summary>
    public int FanOutWarmupPublishes { get; init; }

    /// <summary>M3: rounds per side; the median is reported.</summary>
    public int FanOutRounds { get; init; }

    /// <summary>P1: events in the log every rebuild folds (a multiple of 20,000: orders of 20 events, 1,000 open at a time).</summary>
    public int ProjectionEvents { get; init; }

    /// <summary>
    /// P1: rebuilds into SQLite per side (the in-memory ones run <see cref="Rounds"/>): each takes tens of seconds, and the
    /// whole of P1 and P2 should stay within about four minutes.
    /// </summary>
    public int ProjectionSqliteRounds { get; init; }

    /// <summary>P2: how long the paced appends run before their lag counts.</summary>
    public TimeSpan LagWarmup { get; init; }

    /// <summary>P2: how long the paced appends run while their lag counts.</summary>
    public TimeSpan LagDuration { get; init; }

    /// <summary>P2: rounds per side; the round with the median p99 is reported.</summary>
    public int LagRounds { get; init; }

    /// <summary>O1, O2: how long the checkouts run before their completions count.</summary>
    public TimeSpan WorkflowWarmup { get; init; }

    /// <summary>O1, O2: how long the checkouts' completions count.</summary>
    public TimeSpan WorkflowDuration { get; init; }

    /// <summary>O1, O2: rounds per side, alternating, each with a fresh file; the median is reported.</summary>
    public int WorkflowRounds { get; init; }

    /// <summary>
    /// PW3: counted full reads per side; the median is reported. More than W3's: a read of PW3's log lasts a quarter of
    /// a second on a quiet machine, and one side's reads spread by half within a minute.
    /// </summary>
    public int PgReadRuns { get; init; }

    public static Scale Full { get; } = new(TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(5), 3, 1_000_000, 3, 1_000_000)
    {
        QueueMessages = 200_000,
        QueueWarmupMessages = 10_000,
        QueueSingleMessages = 20_000,
        QueueRounds = 3,
        LatencyWarmup = TimeSpan.FromSeconds(2),
        LatencyDuration = TimeSpan.FromSeconds(10),
        LatencyRounds = 3,
        FanOutPublishes = 20_000,
        FanOutWarmupPublishes = 2_000,
        FanOutRounds = 3,
        ProjectionEvents = 1_000_000,
        ProjectionSqliteRounds = 1,
        LagWarmup = TimeSpan.FromSeconds(2),
        LagDuration = TimeSpan.FromSeconds(20),
        LagRounds = 1,
        WorkflowWarmup = TimeSpan.FromSeconds(3),
        WorkflowDuration = TimeSpan.FromSeconds(10),
        WorkflowRounds = 3,
        PgReadRuns = 7,
    };

    public static Scale Quick { get; } = new(TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(2), 1, 200_000, 3, 200_000)
    {
        QueueMessages = 20_000,
        QueueWarmupMessages = 2_000,
        QueueSingleMessages = 2_000,
        QueueRounds = 1,
        LatencyWarmup = TimeSpan.FromSeconds(1),
        LatencyDuration = TimeSpan.FromSeconds(3),
        LatencyRounds = 1,
        FanOutPublishes = 2_000,
        FanOutWarmupPublishes = 500,
        FanOutRounds = 1,
        ProjectionEvents = 200_000,
        ProjectionSqliteRounds = 1,
        LagWarmup = TimeSpan.FromSeconds(1),
        LagDuration = TimeSpan.FromSeconds(4),
        LagRounds = 1,
        WorkflowWarmup = TimeSpan.FromSeconds(1.5),
        WorkflowDuration = TimeSpan.FromSeconds(3),
        WorkflowRounds = 1,
        PgReadRuns = 3,
    };

    /// <summary>Cairn with its defaults (durability Full, that is <c>synchronous=FULL</c>).</summary>
    public static SqliteEventStore OpenCairn(TempDatabase db) =>
        new(new SqliteEventStoreOptions { ConnectionString = db.ConnectionString });
}
