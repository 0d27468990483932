using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Cairn.Messaging;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// M2: publish-to-handler latency at a fixed rate of <see cref="Rate"/> messages/s, durable. One paced sender issues
/// message i at start + i / rate, by absolute time (a late wake-up sends what is due at once, so the rate never
/// drifts); one consumer long-polls (receive up to 32, then acknowledge them) and notes when each message is in its
/// hands. Latency runs from just before the send call to then. The first <see cref="Scale.LatencyWarmup"/> of messages
/// are not counted.
/// <para>
/// Cairn's send is asynchronous, so the sender issues each one at its time without waiting for earlier commits. The
/// baseline's send is a blocking transaction, so the pacer hands each message at its time to a sender thread with its
/// own connection, and latency counts from that hand-off: a send waiting behind the previous one is late, not
/// missing (a second sender thread would not help: SQLite runs one write transaction at a time, fsync included). Its
/// consumer polls every millisecond: a plain table cannot wake it.
/// </para>
/// </summary>
internal static class M2Latency
{
    public const int Rate = 2_000;
    private const int BaselineSenders = 1;
    private const string Queue = "m2";
    private const long BaselineQueue = 1;
    private const string Type = "bench.m2";

    /// <param name="Latencies">Counted latencies in milliseconds, sorted.</param>
    /// <param name="SentPerSecond">The rate the counted messages were issued at.</param>
    /// <param name="Lag">How late the sender issued counted messages, in milliseconds, sorted.</param>
    /// <param name="FromCall">Baseline only: latencies from the sender thread's own send call, sorted.</param>
    private sealed record Result(double[] Latencies, double SentPerSecond, double[] Lag, double[]? FromCall)
    {
        public double P50 => MessageBench.Percentile(Latencies, 50);

        public double P99 => MessageBench.Percentile(Latencies, 99);

        public double Max => Latencies[^1];
    }

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var (cairn, baseline) = await MessageBench.CompareAsync(scale.LatencyRounds, scale.CairnOnly, () => CairnAsync(scale), () => BaselineAsync(scale), r => r.P99);
        var how = string.Create(CultureInfo.InvariantCulture, $"{Rate:#,0} msg/s for {scale.LatencyDuration.TotalSeconds:0.#} s");
        var lag = string.Create(CultureInfo.InvariantCulture,
            $"sender lag behind schedule p99/max: Cairn {Ms(MessageBench.Percentile(cairn.Lag, 99))}/{Ms(cairn.Lag[^1])} ms, baseline {(baseline is null ? "-" : $"{Ms(MessageBench.Percentile(baseline.Lag, 99))}/{Ms(baseline.Lag[^1])}")} ms");
        var fromCall = baseline?.FromCall is { } call
            ? string.Create(CultureInfo.InvariantCulture, $"; baseline from its sender thread's call: p50 {Ms(MessageBench.Percentile(call, 50))}, p99 {Ms(MessageBench.Percentile(call, 99))}, max {Ms(call[^1])} ms")
            : "";
        return
        [
            new Figure("M2-p50", $"latency p50, {how}", cairn.P50, "ms", baseline?.P50),
            new Figure("M2-p99", $"latency p99, {how}", cairn.P99, "ms", baseline?.P99,
                Figure.Both(Figure.Below(5, "ms"), Figure.RatioAtMost(0.2)), lag + fromCall + "; baseline consumer polls every 1 ms"),
            new Figure("M2-max", $"latency max, {how}", cairn.Max, "ms", baseline?.Max),
        ];
    }

    private static async Task<Result> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("m2-cairn");
        var (store, broker) = MessageBench.OpenCairn(db);
        await using (store)
        {
            await broker.DeclareQueueAsync(new QueueDefinition(Queue), CancellationToken.None);
            var (warm, total) = Counts(scale);
            var issued = new long[total];
            var inHand = new long[total];
            var consumer = MessageBench.ConsumeAsync(broker, Queue, 1, total, deliveries =>
            {
                var now = Stopwatch.GetTimestamp();
                foreach (var delivery in deliveries)
                {
                    inHand[MessagePayloads.Number(delivery.Message.Data.Span)] = now;
                }
            });

            var sends = new Outstanding();
            var start = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 10;
            await Pace(total, start, i =>
            {
                var message = new OutgoingMessage(Type, MessagePayloads.Json(i));
                issued[i] = Stopwatch.GetTimestamp();
                sends.Add(broker.SendAsync(Queue, message, CancellationToken.None));
            });
            await sends.AllDoneAsync();
            await consumer;
            return Report("Cairn", Measure(warm, start, issued, inHand, null));
        }
    }

    private static async Task<Result> BaselineAsync(Scale scale)
    {
        using var db = new TempDatabase("m2-baseline");
        QueueBaseline.Create(db.Path);
        var (warm, total) = Counts(scale);
        var issued = new long[total];
        var called = new long[total];
        var inHand = new long[total];
        var consumer = MessageBench.ConsumeBaselineAsync(db.Path, BaselineQueue, 1, total, batch =>
        {
            var now = Stopwatch.GetTimestamp();
            foreach (var (_, data) in batch)
            {
                inHand[MessagePayloads.Number(data)] = now;
            }
        });

        using var handoff = new BlockingCollection<int>();
        var senders = MessageBench.Threads(BaselineSenders, _ =>
        {
            using var table = new QueueBaseline(db.Path);
            foreach (var i in handoff.GetConsumingEnumerable())
            {
                var data = MessagePayloads.Json(i);
                called[i] = Stopwatch.GetTimestamp();
                table.Send(BaselineQueue, Type, data);
            }
        });

        var start = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 10;
        try
        {
            await Pace(total, start, i =>
            {
                issued[i] = Stopwatch.GetTimestamp();
                handoff.Add(i);
            });
        }
        finally
        {
            handoff.CompleteAdding();
        }

        await senders;
        await consumer;
        return Report("baseline", Measure(warm, start, issued, inHand, called));
    }

    private static (int Warm, int Total) Counts(Scale scale)
    {
        var warm = (int)(Rate * scale.LatencyWarmup.TotalSeconds);
        return (warm, warm + (int)(Rate * scale.LatencyDuration.TotalSeconds));
    }

    /// <summary>Issues message i at <paramref name="start"/> + i / rate on a thread of its own, by absolute time.</summary>
    private static Task Pace(int total, long start, Action<int> issue) =>
        Task.Factory.StartNew(() =>
        {
            for (var i = 0; i < total; i++)
            {
                // Sleeping (a millisecond or a little more on Linux) rather than spinning leaves both cores to the
                // writer and the consumer; what is due when the sender wakes is sent at once.
                while (Stopwatch.GetTimestamp() < Due(start, i))
                {
                    Thread.Sleep(1);
                }

                issue(i);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static long Due(long start, int i) => start + (long)(i * (double)Stopwatch.Frequency / Rate);

    private static Result Measure(int warm, long start, long[] issued, long[] inHand, long[]? called)
    {
        var count = issued.Length - warm;
        var latencies = new double[count];
        var lag = new double[count];
        var fromCall = called is null ? null : new double[count];
        for (var i = 0; i < count; i++)
        {
            var m = warm + i;
            if (inHand[m] == 0)
            {
                throw new InvalidOperationException($"M2: message {m} was never received.");
            }

            latencies[i] = Milliseconds(inHand[m] - issued[m]);
            lag[i] = Milliseconds(issued[m] - Due(start, m));
            if (fromCall is not null)
            {
                fromCall[i] = Milliseconds(inHand[m] - called![m]);
            }
        }

        Array.Sort(latencies);
        Array.Sort(lag);
        if (fromCall is not null)
        {
            Array.Sort(fromCall);
        }

        var rate = (count - 1) / MessageBench.Seconds(issued[warm], issued[^1]);
        return new Result(latencies, rate, lag, fromCall);
    }

    private static double Milliseconds(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private static string Ms(double ms) => ms.ToString(ms < 10 ? "0.00" : "#,0.0", CultureInfo.InvariantCulture);

    private static Result Report(string side, Result r)
    {
        var p = (double percent) => Ms(MessageBench.Percentile(r.Latencies, percent));
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  M2     {side,-8} p50 {p(50)} ms, p90 {p(90)} ms, p99 {p(99)} ms, p99.9 {p(99.9)} ms, max {Ms(r.Max)} ms  ({r.Latencies.Length:#,0} messages issued at {r.SentPerSecond:#,0}/s; sender lag p50 {Ms(MessageBench.Percentile(r.Lag, 50))}, p99 {Ms(MessageBench.Percentile(r.Lag, 99))}, max {Ms(r.Lag[^1])} ms)"));
        if (r.FromCall is { } call)
        {
            Log.Line(string.Create(CultureInfo.InvariantCulture,
                $"  M2     {side,-8} from the sender thread's call: p50 {Ms(MessageBench.Percentile(call, 50))} ms, p99 {Ms(MessageBench.Percentile(call, 99))} ms, max {Ms(call[^1])} ms"));
        }

        return r;
    }
}
