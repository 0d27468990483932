using System.Diagnostics;
using System.Globalization;
using Cairn.Messaging;
using Cairn.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>What M1–M3 share: opening the broker, rounds, consumers that stop when everything has arrived, percentiles.</summary>
internal static class MessageBench
{
    /// <summary>Messages a Cairn receive asks for, and a baseline receive selects, at most.</summary>
    public const int ReceiveBatch = 32;

    /// <summary>Long polling as the issue states it: wait up to a second for a message.</summary>
    public static readonly ReceiveOptions Receive = new() { MaxMessages = ReceiveBatch, Wait = TimeSpan.FromSeconds(1) };

    /// <summary>How long the baseline's consumers sleep when a poll finds nothing (a plain table cannot wake them).</summary>
    public const int PollMilliseconds = 1;

    /// <summary>The longest a phase may take before the run is declared stuck.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    /// <summary>A Cairn store with its defaults (durability Full) and a broker on it.</summary>
    public static (SqliteEventStore Store, SqliteMessageBroker Broker) OpenCairn(TempDatabase db)
    {
        var store = Scale.OpenCairn(db);
        return (store, new SqliteMessageBroker(store));
    }

    /// <summary>
    /// Runs both sides <paramref name="rounds"/> times, alternating which goes first, and returns each side's median
    /// round by <paramref name="key"/> (the baseline's is null with <c>--cairn-only</c>).
    /// </summary>
    public static async Task<(T Cairn, T? Baseline)> CompareAsync<T>(int rounds, bool cairnOnly, Func<Task<T>> cairn, Func<Task<T>> baseline, Func<T, double> key)
        where T : class
    {
        var cairnRounds = new List<T>();
        var baselineRounds = new List<T>();
        for (var round = 0; round < rounds; round++)
        {
            foreach (var side in round % 2 == 0 ? new[] { true, false } : [false, true])
            {
                if (!side && cairnOnly)
                {
                    continue;
                }

                (side ? cairnRounds : baselineRounds).Add(await (side ? cairn() : baseline()));
            }
        }

        T Median(List<T> values) => values.OrderBy(key).ElementAt(values.Count / 2);
        return (Median(cairnRounds), baselineRounds.Count == 0 ? null : Median(baselineRounds));
    }

    /// <summary>
    /// Cairn consumers of one queue: each receives (long polling) and acknowledges batches until
    /// <paramref name="expected"/> messages have been acknowledged between them; returns when the last one was.
    /// <paramref name="handle"/> sees each batch as it arrives, before its acknowledgement.
    /// </summary>
    public static async Task<long> ConsumeAsync(SqliteMessageBroker broker, QueueName queue, int consumers, long expected, Action<IReadOnlyList<Delivery>>? handle = null)
    {
        var acknowledged = 0L;
        var finished = 0L;
        using var done = new CancellationTokenSource(Timeout);
        var tasks = Enumerable.Range(0, consumers).Select(_ => Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                IReadOnlyList<Delivery> deliveries;
                try
                {
                    deliveries = await broker.ReceiveAsync(queue, Receive, done.Token);
                }
                catch (OperationCanceledException) when (done.IsCancellationRequested)
                {
                    return;
                }

                if (deliveries.Count == 0)
                {
                    continue;
                }

                handle?.Invoke(deliveries);
                var leases = new LeaseToken[deliveries.Count];
                for (var i = 0; i < leases.Length; i++)
                {
                    leases[i] = deliveries[i].Lease;
                }

                await broker.AcknowledgeAsync(leases, CancellationToken.None);
                if (Interlocked.Add(ref acknowledged, leases.Length) >= expected)
                {
                    Interlocked.CompareExchange(ref finished, Stopwatch.GetTimestamp(), 0);
                    await done.CancelAsync();
                }
            }
        })).ToList();
        await Task.WhenAll(tasks);
        Check(queue.Value, Interlocked.Read(ref acknowledged), expected);
        return finished;
    }

    /// <summary>
    /// Baseline consumers of one queue, each a thread with its own connection: receive a batch (polling every
    /// <see cref="PollMilliseconds"/> ms when none is visible), then acknowledge it, until <paramref name="expected"/>
    /// messages have been acknowledged between them; returns when the last one was. A receive takes at most
    /// <paramref name="batch"/> messages.
    /// </summary>
    public static async Task<long> ConsumeBaselineAsync(string path, long queue, int consumers, long expected, Action<List<(long Seq, byte[] Data)>>? handle = null, int batch = ReceiveBatch)
    {
        var acknowledged = 0L;
        var finished = 0L;
        var clock = Stopwatch.StartNew();
        var threads = Enumerable.Range(0, consumers).Select(_ => Task.Factory.StartNew(() =>
        {
            using var table = new QueueBaseline(path);
            while (Interlocked.Read(ref acknowledged) < expected)
            {
                if (clock.Elapsed > Timeout)
                {
                    throw new TimeoutException($"The baseline consumers of queue {queue} acknowledged {Interlocked.Read(ref acknowledged)} of {expected} messages in {Timeout}.");
                }

                var leased = table.Receive(queue, batch);
                if (leased.Count == 0)
                {
                    Thread.Sleep(PollMilliseconds);
                    continue;
                }

                handle?.Invoke(leased);
                table.Acknowledge(leased);
                if (Interlocked.Add(ref acknowledged, leased.Count) >= expected)
                {
                    Interlocked.CompareExchange(ref finished, Stopwatch.GetTimestamp(), 0);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToList();
        await Task.WhenAll(threads);
        Check($"baseline {queue}", Interlocked.Read(ref acknowledged), expected);
        return finished;
    }

    /// <summary>Starts <paramref name="count"/> blocking workers, each on a thread of its own.</summary>
    public static Task Threads(int count, Action<int> worker) =>
        Task.WhenAll(Enumerable.Range(0, count).Select(w => Task.Factory.StartNew(() => worker(w), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)));

    /// <summary>The nearest-rank percentile of sorted values.</summary>
    public static double Percentile(double[] sorted, double percent) =>
        sorted[Math.Clamp((int)Math.Ceiling(percent / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

    public static double Seconds(long from, long to) => (to - from) / (double)Stopwatch.Frequency;

    public static string Rate(double value) => value.ToString("#,0", CultureInfo.InvariantCulture);

    private static void Check(string queue, long acknowledged, long expected)
    {
        if (acknowledged != expected)
        {
            throw new InvalidOperationException($"Queue {queue}: {acknowledged} messages acknowledged, {expected} expected.");
        }
    }
}
