using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Cairn.Benchmarks.Postgres;
using Cairn.EventStore;
using Cairn.Postgres;
using Cairn.Subscriptions;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// PW5: how soon a live subscription of another process sees an append. Two stores open one schema, each with its own
/// pool, writer and listening connection, as two processes would; one appends an event every 20 ms, the other's
/// catch-up subscription records, for each, the time from the append's return (it committed) to its handler. Cairn:
/// appends notify as they commit (<see cref="PostgresEventStoreOptions.NotifyAppends"/>, the default); baseline: the
/// same with notifications off, the reader polling every <see cref="PostgresEventStoreOptions.ExternalCommitPollInterval"/>
/// (500 ms by default). Rounds alternate; the median round by p50.
/// </summary>
internal static class PgW5CrossProcessLatency
{
    private static readonly TimeSpan Pace = TimeSpan.FromMilliseconds(20);

    private sealed record Latency(double P50, double P99, double Max, int Count);

    public static async Task<List<Figure>> RunAsync(Scale scale, BenchPostgres postgres)
    {
        var cs = await postgres.ConnectionStringAsync();
        await MeasureAsync(postgres, cs, notify: true, scale.LatencyWarmup); // warm-up, not counted: JIT, pools
        var (cairn, baseline) = await MessageBench.CompareAsync(
            scale.LatencyRounds, scale.CairnOnly, () => MeasureAsync(postgres, cs, notify: true, scale.LatencyDuration), () => MeasureAsync(postgres, cs, notify: false, scale.LatencyDuration), r => r.P50);
        var title = $"append to a live subscription in another process, an append every {Pace.TotalMilliseconds:0} ms (baseline: notifications off, 500 ms poll)";
        var note = string.Create(CultureInfo.InvariantCulture, $"{cairn.Count} appends per round; baseline p50/p99 {baseline?.P50:0.00}/{baseline?.P99:0.00} ms");
        return
        [
            new Figure("PW5-p50", title + ", p50", cairn.P50, "ms", baseline?.P50, Note: note),
            new Figure("PW5-p99", title + ", p99", cairn.P99, "ms", baseline?.P99),
            new Figure("PW5-max", title + ", max", cairn.Max, "ms", baseline?.Max),
        ];
    }

    private static async Task<Latency> MeasureAsync(BenchPostgres postgres, string cs, bool notify, TimeSpan duration)
    {
        var schema = BenchPostgres.NewSchema("pw5");
        try
        {
            await using var writer = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schema, NotifyAppends = notify });
            await using var reader = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = cs, Schema = schema, NotifyAppends = notify });
            // Both sides stamp by position; the handler may run before the append's call has returned.
            var appendedAt = new ConcurrentDictionary<long, long>();
            var seenAt = new ConcurrentDictionary<long, long>();
            await using var subscription = new CatchUpSubscription(reader, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "pw5", Start = SubscriptionStart.End }, (e, _) =>
            {
                seenAt[e.Position.Value] = Stopwatch.GetTimestamp();
                return ValueTask.CompletedTask;
            });
            await subscription.StartAsync(CancellationToken.None);
            while (subscription.Status.State != SubscriptionState.Live)
            {
                await Task.Delay(10);
            }

            // Let the reader's listening connection open before the first counted append.
            await Task.Delay(200);
            var stream = new StreamName("order-pw5");
            var expected = ExpectedVersion.NoStream;
            var stop = Stopwatch.StartNew();
            var n = 0;
            while (stop.Elapsed < duration)
            {
                var result = await writer.AppendToStreamAsync(stream, expected, [Payloads.Event(n++)]);
                appendedAt[result.LastPosition.Value] = Stopwatch.GetTimestamp();
                expected = ExpectedVersion.Exactly(result.NextExpectedVersion);
                await Task.Delay(Pace);
            }

            // The last appends' wake-ups, within one poll interval at most.
            await Task.Delay(TimeSpan.FromSeconds(1));
            await subscription.StopAsync(CancellationToken.None);
            var sorted = appendedAt
                .Where(a => seenAt.ContainsKey(a.Key))
                .Select(a => Math.Max(0, Stopwatch.GetElapsedTime(a.Value, seenAt[a.Key]).TotalMilliseconds))
                .Order()
                .ToArray();
            return sorted.Length == 0
                ? throw new InvalidOperationException("PW5: the subscription saw none of the appends.")
                : new Latency(MessageBench.Percentile(sorted, 50), MessageBench.Percentile(sorted, 99), sorted[^1], sorted.Length);
        }
        finally
        {
            await postgres.DropSchemaAsync(schema);
        }
    }
}
