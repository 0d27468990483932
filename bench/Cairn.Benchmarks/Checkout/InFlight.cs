using System.Diagnostics;

namespace Cairn.Benchmarks.Checkout;

/// <summary>A checkout side's result: orders finished per second in the counted window, and its step latencies.</summary>
/// <param name="PerSecond">Orders (workflows) completed per second in the counted window.</param>
/// <param name="Completed">Orders completed in the window.</param>
/// <param name="Seconds">The window.</param>
/// <param name="Started">Orders started in all (warm-up and drain included).</param>
/// <param name="Failed">Orders that ended failed or cancelled in all (order 0, declined on purpose).</param>
/// <param name="StepMs">Step latencies counted in the window, in milliseconds, sorted (empty when not measured).</param>
/// <param name="CpuMsPerOrder">The process's CPU time (all threads) in the window per order completed: unlike the rate, barely moved by other load on a shared machine.</param>
/// <param name="KbPerOrder">Managed memory allocated in the window per order completed, in KB.</param>
internal sealed record CheckoutRate(double PerSecond, long Completed, double Seconds, long Started, long Failed, double[] StepMs, double CpuMsPerOrder, double KbPerOrder)
{
    public double StepP50 => StepMs.Length == 0 ? 0 : MessageBench.Percentile(StepMs, 50);

    public double StepP99 => StepMs.Length == 0 ? 0 : MessageBench.Percentile(StepMs, 99);
}

/// <summary>
/// Keeps a fixed number of checkouts in flight: starts that many, then a new one as each finishes (the side reports
/// each finish through <see cref="Finished"/>, from where it learns it: a metric, a handler's commit), and counts the
/// completions of a window after a warm-up. Starts are not awaited one by one (independent requests would not wait
/// for each other); a start's failure fails the run.
/// </summary>
internal sealed class InFlight(int limit)
{
    private readonly SemaphoreSlim _slots = new(limit, limit);
    private readonly List<double> _steps = [];
    private readonly Lock _stepsGate = new();
    private long _completed, _failed, _started;
    private volatile bool _counting;

    /// <summary>An order completed (or, when <paramref name="completed"/> is false, ended failed or cancelled).</summary>
    public void Finished(bool completed)
    {
        Interlocked.Increment(ref completed ? ref _completed : ref _failed);
        _slots.Release();
    }

    /// <summary>A step took <paramref name="milliseconds"/>; kept only inside the counted window.</summary>
    public void StepTook(double milliseconds)
    {
        if (_counting)
        {
            lock (_stepsGate)
            {
                _steps.Add(milliseconds);
            }
        }
    }

    /// <summary>Runs the load: <paramref name="start"/> starts order n; counts for <paramref name="duration"/> after <paramref name="warmup"/>, then drains.</summary>
    public async Task<CheckoutRate> RunAsync(Func<long, Task> start, TimeSpan warmup, TimeSpan duration)
    {
        using var stop = new CancellationTokenSource();
        var starts = new Outstanding();
        var issuing = Task.Run(async () =>
        {
            for (var n = 0L; ; n++)
            {
                try
                {
                    await _slots.WaitAsync(stop.Token);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }

                Interlocked.Increment(ref _started);
                starts.Add(start(n));
            }
        });

        await WhileIssuingAsync(issuing, warmup);
        var completed0 = Interlocked.Read(ref _completed);
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var allocated0 = GC.GetTotalAllocatedBytes();
        var clock = Stopwatch.StartNew();
        _counting = true;
        await WhileIssuingAsync(issuing, duration);
        _counting = false;
        var completed = Interlocked.Read(ref _completed) - completed0;
        var seconds = clock.Elapsed.TotalSeconds;
        var cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMilliseconds;
        var allocatedKb = (GC.GetTotalAllocatedBytes() - allocated0) / 1024.0;
        await stop.CancelAsync();
        await issuing;
        await starts.AllDoneAsync();

        // Drain: every order started finishes before the host stops (a check that none was lost, not a measurement).
        var drain = Stopwatch.StartNew();
        while (Interlocked.Read(ref _completed) + Interlocked.Read(ref _failed) < Interlocked.Read(ref _started))
        {
            if (drain.Elapsed > MessageBench.Timeout)
            {
                throw new TimeoutException($"{Interlocked.Read(ref _completed) + Interlocked.Read(ref _failed)} of {Interlocked.Read(ref _started)} checkouts finished in {MessageBench.Timeout}.");
            }

            await Task.Delay(10);
        }

        double[] steps;
        lock (_stepsGate)
        {
            steps = [.. _steps];
        }

        Array.Sort(steps);
        return new CheckoutRate(completed / seconds, completed, seconds, Interlocked.Read(ref _started), Interlocked.Read(ref _failed), steps,
            cpuMs / Math.Max(1, completed), allocatedKb / Math.Max(1, completed));
    }

    private static async Task WhileIssuingAsync(Task issuing, TimeSpan time)
    {
        var delay = Task.Delay(time);
        if (await Task.WhenAny(issuing, delay) != delay)
        {
            await issuing;
            throw new InvalidOperationException("The checkouts stopped being started before the measurement ended.");
        }
    }
}
