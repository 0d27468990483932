using System.Diagnostics;

namespace Cairn.Benchmarks;

/// <summary>Counts what workers did, and tells them when to stop.</summary>
internal sealed class Meter
{
    private long _count;
    private long _conflicts;
    private int _stopping;

    public bool Stopping => Volatile.Read(ref _stopping) != 0;

    public long Count => Interlocked.Read(ref _count);

    public long Conflicts => Interlocked.Read(ref _conflicts);

    public void Add(long n) => Interlocked.Add(ref _count, n);

    public void Conflict() => Interlocked.Increment(ref _conflicts);

    public void Stop() => Volatile.Write(ref _stopping, 1);
}

/// <summary>A steady-state rate: what was counted between the end of the warm-up and the end of the measurement.</summary>
/// <param name="PerSecond">Units counted per second.</param>
/// <param name="ConflictsPerSecond">Conflicts (retries) per second.</param>
/// <param name="Count">Units counted in the measured window.</param>
/// <param name="Seconds">The measured window.</param>
internal sealed record Rate(double PerSecond, double ConflictsPerSecond, long Count, double Seconds)
{
    /// <summary>The process's CPU time (all threads) in the measured window, in milliseconds.</summary>
    public double CpuMs { get; init; }

    /// <summary>Managed memory allocated by the process in the measured window, in bytes.</summary>
    public long AllocatedBytes { get; init; }

    /// <summary>CPU time per unit counted, in microseconds: on a shared machine it moves much less than the rate.</summary>
    public double CpuUsPerUnit => Count == 0 ? 0 : CpuMs * 1000 / Count;

    /// <summary>Managed memory allocated per unit counted, in bytes.</summary>
    public double BytesPerUnit => Count == 0 ? 0 : (double)AllocatedBytes / Count;
}

internal static class Throughput
{
    /// <summary>
    /// Measures Cairn and the baseline <see cref="Scale.Rounds"/> times each, alternating which goes first (the machine
    /// is shared and noisy, and a drift should hit both sides alike), and returns each side's median round.
    /// </summary>
    public static async Task<(Rate Cairn, Rate? Baseline)> CompareAsync(string id, string unit, Scale scale, Func<Task<Rate>> cairn, Func<Task<Rate>> baseline)
    {
        var cairnRates = new List<Rate>();
        var baselineRates = new List<Rate>();
        for (var round = 0; round < scale.Rounds; round++)
        {
            foreach (var side in round % 2 == 0 ? new[] { true, false } : [false, true])
            {
                if (!side && scale.CairnOnly)
                {
                    continue;
                }

                var rate = await (side ? cairn() : baseline());
                (side ? cairnRates : baselineRates).Add(rate);
                Log.Rate(id, side ? "Cairn" : "baseline", rate, unit);
            }
        }

        return (Median(cairnRates), baselineRates.Count == 0 ? null : Median(baselineRates));
    }

    private static Rate Median(List<Rate> rates) => rates.OrderBy(r => r.PerSecond).ElementAt(rates.Count / 2);

    /// <summary>
    /// Starts <paramref name="workers"/> workers, lets them warm up, then counts for <paramref name="duration"/>.
    /// Async workers run on the thread pool (Cairn's API is async); blocking ones (the raw SQLite baseline) each get a
    /// thread of their own, so they do not wait for the pool to grow.
    /// </summary>
    public static async Task<Rate> MeasureAsync(int workers, Func<int, Meter, Task> worker, bool blocking, TimeSpan warmup, TimeSpan duration)
    {
        var meter = new Meter();
        var tasks = Enumerable.Range(0, workers)
            .Select(w => blocking
                ? Task.Factory.StartNew(() => worker(w, meter).GetAwaiter().GetResult(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
                : Task.Run(() => worker(w, meter)))
            .ToList();

        await WhileRunningAsync(tasks, warmup);
        var count0 = meter.Count;
        var conflicts0 = meter.Conflicts;
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var allocated0 = GC.GetTotalAllocatedBytes();
        var clock = Stopwatch.StartNew();
        await WhileRunningAsync(tasks, duration);
        var count = meter.Count - count0;
        var conflicts = meter.Conflicts - conflicts0;
        var seconds = clock.Elapsed.TotalSeconds;
        var cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMilliseconds;
        var allocated = GC.GetTotalAllocatedBytes() - allocated0;
        meter.Stop();
        await Task.WhenAll(tasks);
        return new Rate(count / seconds, conflicts / seconds, count, seconds) { CpuMs = cpuMs, AllocatedBytes = allocated };
    }

    /// <summary>Waits, but fails at once if a worker fails.</summary>
    private static async Task WhileRunningAsync(List<Task> tasks, TimeSpan time)
    {
        var delay = Task.Delay(time);
        var first = await Task.WhenAny(tasks.Append(delay));
        if (first != delay)
        {
            await first;
            throw new InvalidOperationException("A worker stopped before the measurement ended.");
        }
    }
}
