using System.Diagnostics;
using System.Globalization;
using Cairn.EventStore;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// W5: the peak working set of a process that appends <see cref="Scale.MemoryEvents"/> events (four writers, batches
/// of 100, 1,000 streams) and then reads them all back through <c>$all</c>. It runs in a child process of its own, so
/// the heap and caches of the other workloads do not count. The working set is sampled every 25 ms, and the kernel's
/// high-water mark (<see cref="Process.PeakWorkingSet64"/>, VmHWM on Linux) is read at the end; the larger is reported.
/// </summary>
internal static class W5Memory
{
    private const int Writers = 4;
    private const int BatchSize = 100;
    private const int Streams = 1_000;
    private const double MiB = 1024 * 1024;

    /// <summary>Runs W5 in a child process of the same program and returns its figure.</summary>
    public static async Task<List<Figure>> RunInChildAsync(BenchOptions options)
    {
        var json = Path.Combine(Path.GetTempPath(), $"cairn-bench-w5-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        try
        {
            var host = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is unknown.");
            var start = new ProcessStartInfo(host) { UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(host) == "dotnet")
            {
                // Started as "dotnet Cairn.Benchmarks.dll": the child needs the assembly too.
                start.ArgumentList.Add(typeof(W5Memory).Assembly.Location);
            }

            foreach (var arg in new[] { "--only", "W5", "--child", "--json", json })
            {
                start.ArgumentList.Add(arg);
            }

            if (options.Quick)
            {
                start.ArgumentList.Add("--quick");
            }

            using var child = Process.Start(start) ?? throw new InvalidOperationException("Could not start the W5 child process.");
            await child.WaitForExitAsync();
            if (child.ExitCode != 0)
            {
                throw new InvalidOperationException($"The W5 child process exited with code {child.ExitCode}.");
            }

            var scale = options.Quick ? Scale.Quick : Scale.Full;
            return
            [
                .. Figure.ReadJson(json).Select(f => new Figure(f.Id, Title(scale), f.Value, f.Unit, null, Target, "measured in a child process; its samples are printed above")),
            ];
        }
        finally
        {
            File.Delete(json);
        }
    }

    private static Target Target => Figure.Below(300, "MB");

    private static string Title(Scale scale) =>
        string.Create(CultureInfo.InvariantCulture, $"peak working set, append + read {scale.MemoryEvents:#,0}");

    /// <summary>Runs W5 in this process (the child).</summary>
    public static async Task<List<Figure>> RunHereAsync(Scale scale)
    {
        using var sampler = new Sampler();
        var startMb = Environment.WorkingSet / MiB;
        using var db = new TempDatabase("w5-cairn");
        var samples = new List<string>();

        string Sample(string phase, long events)
        {
            var text = string.Create(CultureInfo.InvariantCulture,
                $"{phase} {events,9:#,0}: working set {Environment.WorkingSet / MiB,6:0.0} MB, managed heap {GC.GetTotalMemory(false) / MiB,6:0.0} MB, peak so far {sampler.PeakBytes / MiB,6:0.0} MB");
            samples.Add(text);
            Log.Line("  W5     " + text);
            return text;
        }

        Log.Line(string.Create(CultureInfo.InvariantCulture, $"  W5     process started at {startMb:0.0} MB; appending {scale.MemoryEvents:#,0} events, then reading them"));
        var clock = Stopwatch.StartNew();
        await using (var store = Scale.OpenCairn(db))
        {
            Sample("opened        ", 0);
            var batches = scale.MemoryEvents / BatchSize;
            var step = Math.Max(1, batches / 5);
            var taken = -1L;
            var done = 0L;
            var writers = Enumerable.Range(0, Writers).Select(_ => Task.Run(async () =>
            {
                long b;
                while ((b = Interlocked.Increment(ref taken)) < batches)
                {
                    var events = new EventData[BatchSize];
                    for (var i = 0; i < BatchSize; i++)
                    {
                        events[i] = Payloads.Event(b * BatchSize + i);
                    }

                    var stream = new StreamName(string.Create(CultureInfo.InvariantCulture, $"load-{b % Streams:D4}"));
                    await store.AppendToStreamAsync(stream, ExpectedVersion.Any, events);
                    var finished = Interlocked.Increment(ref done);
                    if (finished % step == 0)
                    {
                        Sample("appended      ", finished * BatchSize);
                    }
                }
            })).ToList();
            await Task.WhenAll(writers);
            Log.Line(string.Create(CultureInfo.InvariantCulture, $"  W5     appended in {clock.Elapsed.TotalSeconds:0.0} s; {db.SizeOnDisk / MiB:0} MB on disk"));

            long read = 0, bytes = 0;
            var readStep = Math.Max(1, scale.MemoryEvents / 5);
            await foreach (var e in store.ReadAllAsync(GlobalPosition.Start))
            {
                read++;
                bytes += e.Data.Span[e.Data.Length - 3] > 0 ? e.Data.Length : 0;
                if (read % readStep == 0)
                {
                    Sample("read          ", read);
                }
            }

            if (read != scale.MemoryEvents || bytes != (long)read * Payloads.Size)
            {
                throw new InvalidOperationException($"W5 read {read} events, expected {scale.MemoryEvents}.");
            }
        }

        var peak = Math.Max(sampler.PeakBytes, Process.GetCurrentProcess().PeakWorkingSet64) / MiB;
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  W5     Cairn    peak working set {peak:0.0} MB (VmHWM {Process.GetCurrentProcess().PeakWorkingSet64 / MiB:0.0} MB, sampled {sampler.PeakBytes / MiB:0.0} MB), {clock.Elapsed.TotalSeconds:0.0} s"));
        return [new Figure("W5-peak-mb", Title(scale), peak, "MB", null, Target)];
    }

    /// <summary>Samples the working set every 25 ms and keeps the largest.</summary>
    private sealed class Sampler : IDisposable
    {
        private readonly Timer _timer;
        private long _peak;

        public Sampler()
        {
            _peak = Environment.WorkingSet;
            _timer = new Timer(_ => Take(), null, TimeSpan.Zero, TimeSpan.FromMilliseconds(25));
        }

        public long PeakBytes
        {
            get
            {
                Take();
                return Interlocked.Read(ref _peak);
            }
        }

        private void Take()
        {
            var now = Environment.WorkingSet;
            long seen;
            while (now > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, seen) != seen)
            {
            }
        }

        public void Dispose() => _timer.Dispose();
    }
}
