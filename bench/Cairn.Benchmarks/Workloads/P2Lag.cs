using System.Diagnostics;
using System.Globalization;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Sqlite;
using Cairn.Subscriptions;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// P2: how far an async projection (<see cref="OrderSummaries"/> into <see cref="SqliteProjectionStore"/>, on the same
/// durable file) trails a steady load of <see cref="Rate"/> single-event appends a second. <see cref="Pacers"/> threads
/// each issue their share of the appends by absolute time (append i at start + i / rate, on thread i mod 4), without
/// waiting for earlier ones to commit, as independent requests would; each pacer owns whole orders, so an order's
/// events commit in order. An event's lag runs from the moment its append's task completed (as its caller would see
/// it) to the moment the projection batch holding it completed its <see cref="IProjectionStore.ApplyAsync"/> (a
/// decorator timestamps it for every event of the batch). The first <see cref="Scale.LagWarmup"/> of appends are not
/// counted.
/// <para>
/// Baseline: the same load with a plain <see cref="CatchUpSubscription"/> (checkpoints in the same file) whose handler
/// does nothing but note the time; its lag runs from the same append completion to the handler's call.
/// </para>
/// </summary>
internal static class P2Lag
{
    public const int Rate = 5_000;
    private const int Pacers = 4;

    /// <summary>Orders open at a time; a multiple of <see cref="Pacers"/>, so each order stays with one pacer.</summary>
    private const int Concurrent = 100;

    /// <param name="Lags">Counted lags in milliseconds, sorted.</param>
    /// <param name="AppendedPerSecond">Counted appends over the time from the first one's issue to the last one's completion.</param>
    /// <param name="Appends">Counted appends' own latencies (issue to completion) in milliseconds, sorted.</param>
    /// <param name="Late">How late the pacers issued counted appends, in milliseconds, sorted.</param>
    /// <param name="Batches">Projection batches that carried counted events (for the subscription, one per event).</param>
    private sealed record Result(double[] Lags, double AppendedPerSecond, double[] Appends, double[] Late, long Batches)
    {
        public double P50 => MessageBench.Percentile(Lags, 50);

        public double P99 => MessageBench.Percentile(Lags, 99);

        public double Max => Lags[^1];
    }

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var (cairn, baseline) = await MessageBench.CompareAsync(scale.LagRounds, scale.CairnOnly, () => CairnAsync(scale), () => BaselineAsync(scale), r => r.P99);
        var how = string.Create(CultureInfo.InvariantCulture, $"{Rate:#,0} appends/s for {scale.LagDuration.TotalSeconds:0.#} s");
        var note = string.Create(CultureInfo.InvariantCulture,
            $"append latency p50/p99: Cairn {Ms(MessageBench.Percentile(cairn.Appends, 50))}/{Ms(MessageBench.Percentile(cairn.Appends, 99))} ms, baseline {(baseline is null ? "-" : $"{Ms(MessageBench.Percentile(baseline.Appends, 50))}/{Ms(MessageBench.Percentile(baseline.Appends, 99))}")} ms; pacer lateness p99: Cairn {Ms(MessageBench.Percentile(cairn.Late, 99))} ms; {cairn.Lags.Length / (double)cairn.Batches:0.0} events per projection batch; baseline: a catch-up subscription doing nothing");
        return
        [
            new Figure("P2-p50", $"projection lag p50, {how}", cairn.P50, "ms", baseline?.P50),
            new Figure("P2-p99", $"projection lag p99, {how}", cairn.P99, "ms", baseline?.P99, Figure.Below(50, "ms"), note),
            new Figure("P2-max", $"projection lag max, {how}", cairn.Max, "ms", baseline?.Max),
            new Figure("P2-rate", $"appends achieved, target {how}", cairn.AppendedPerSecond, "appends/s", baseline?.AppendedPerSecond),
        ];
    }

    private static async Task<Result> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("p2-cairn");
        await using var store = Scale.OpenCairn(db);
        var (warm, total) = Counts(scale);
        var seen = new long[total + 1];
        var projections = new TimedProjectionStore(new SqliteProjectionStore(store), seen);
        await using var runner = new ProjectionRunner(new OrderSummaries("p2-orders"), store, projections, OrderLog.Serializer);
        await runner.StartAsync(CancellationToken.None);
        var load = await LoadAsync(store, total);
        await runner.WaitForPositionAsync(new GlobalPosition(load.Positions.Max()), MessageBench.Timeout);
        return Report("Cairn", Measure(warm, load, seen, projections.BatchesFrom(load.Positions[warm])));
    }

    private static async Task<Result> BaselineAsync(Scale scale)
    {
        using var db = new TempDatabase("p2-baseline");
        await using var store = Scale.OpenCairn(db);
        var (warm, total) = Counts(scale);
        var seen = new long[total + 1];
        var options = new SubscriptionOptions { Name = "p2-baseline" };
        await using var subscription = new CatchUpSubscription(store, new SqliteCheckpointStore(store), options, (e, _) =>
        {
            seen[e.Position.Value] = Stopwatch.GetTimestamp();
            return ValueTask.CompletedTask;
        });
        await subscription.StartAsync(CancellationToken.None);
        var load = await LoadAsync(store, total);
        using var timeout = new CancellationTokenSource(MessageBench.Timeout);
        await subscription.WaitForPositionAsync(new GlobalPosition(load.Positions.Max()), timeout.Token);
        return Report("baseline", Measure(warm, load, seen, total - warm));
    }

    /// <param name="Issued">When each append was issued.</param>
    /// <param name="Done">When each append's task completed.</param>
    /// <param name="Positions">Each append's position.</param>
    /// <param name="Start">When append 0 was due.</param>
    private sealed record Load(long[] Issued, long[] Done, long[] Positions, long Start);

    /// <summary>Issues <paramref name="total"/> appends at <see cref="Rate"/> a second and waits for all of them.</summary>
    private static async Task<Load> LoadAsync(SqliteEventStore store, int total)
    {
        var log = new OrderLog(total / OrderLog.EventsPerOrder + Concurrent, Concurrent, "p");
        var issued = new long[total];
        var done = new long[total];
        var positions = new long[total];
        var appends = new Outstanding();
        var start = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 10;
        await MessageBench.Threads(Pacers, pacer =>
        {
            for (var i = pacer; i < total; i += Pacers)
            {
                // Sleeping a millisecond at a time (as M2's sender) leaves the cores to the writer and the projection;
                // what is due when the pacer wakes is issued at once.
                while (Stopwatch.GetTimestamp() < Due(start, i))
                {
                    Thread.Sleep(1);
                }

                var (order, step) = log.At(i);
                var data = log.EventData(order, step);
                var n = i;
                issued[n] = Stopwatch.GetTimestamp();
                var append = store.AppendToStreamAsync(log.Stream(order), ExpectedVersion.Any, [data]);
                appends.Add(append.ContinueWith(
                    task =>
                    {
                        done[n] = Stopwatch.GetTimestamp();
                        positions[n] = task.Result.LastPosition.Value;
                    },
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default));
            }
        });
        await appends.AllDoneAsync();
        return new Load(issued, done, positions, start);
    }

    private static long Due(long start, int i) => start + (long)(i * (double)Stopwatch.Frequency / Rate);

    private static (int Warm, int Total) Counts(Scale scale)
    {
        var warm = (int)(Rate * scale.LagWarmup.TotalSeconds);
        return (warm, warm + (int)(Rate * scale.LagDuration.TotalSeconds));
    }

    private static Result Measure(int warm, Load load, long[] seen, long batches)
    {
        var count = load.Issued.Length - warm;
        var lags = new double[count];
        var appends = new double[count];
        var late = new double[count];
        long first = long.MaxValue, last = long.MinValue;
        for (var k = 0; k < count; k++)
        {
            var i = warm + k;
            var position = load.Positions[i];
            if (position <= 0 || position >= seen.Length || seen[position] == 0)
            {
                throw new InvalidOperationException($"P2: append {i} (position {position}) was never seen by the reader.");
            }

            lags[k] = Milliseconds(seen[position] - load.Done[i]);
            appends[k] = Milliseconds(load.Done[i] - load.Issued[i]);
            late[k] = Milliseconds(load.Issued[i] - Due(load.Start, i));
            first = Math.Min(first, load.Issued[i]);
            last = Math.Max(last, load.Done[i]);
        }

        Array.Sort(lags);
        Array.Sort(appends);
        Array.Sort(late);
        return new Result(lags, count / MessageBench.Seconds(first, last), appends, late, batches);
    }

    private static double Milliseconds(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private static string Ms(double ms) => ms.ToString(ms < 10 ? "0.00" : "#,0.0", CultureInfo.InvariantCulture);

    private static Result Report(string side, Result r)
    {
        var p = (double percent) => Ms(MessageBench.Percentile(r.Lags, percent));
        var a = (double percent) => Ms(MessageBench.Percentile(r.Appends, percent));
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  P2     {side,-8} lag p50 {p(50)} ms, p90 {p(90)} ms, p99 {p(99)} ms, p99.9 {p(99.9)} ms, max {Ms(r.Max)} ms, min {Ms(r.Lags[0])} ms  ({r.Lags.Length:#,0} appends at {r.AppendedPerSecond:#,0}/s; append latency p50 {a(50)}, p99 {a(99)}, max {Ms(r.Appends[^1])} ms; pacer late p99 {Ms(MessageBench.Percentile(r.Late, 99))}, max {Ms(r.Late[^1])} ms; {r.Lags.Length / (double)r.Batches:0.0} events a batch)"));
        return r;
    }

    /// <summary>
    /// The projection store with a clock on its batches: when <see cref="ApplyAsync"/> completes, every event of the
    /// batch is stamped with the time, by position.
    /// </summary>
    private sealed class TimedProjectionStore(IProjectionStore inner, long[] seen) : IProjectionStore
    {
        private readonly List<long> _batches = [];

        /// <summary>Batches whose first event is at or after <paramref name="position"/>.</summary>
        public long BatchesFrom(long position)
        {
            lock (_batches)
            {
                return _batches.Count(first => first >= position);
            }
        }

        public async Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
        {
            var result = await inner.ApplyAsync(batch, cancellationToken);
            var now = Stopwatch.GetTimestamp();
            foreach (var e in batch.Events)
            {
                seen[e.Position.Value] = now;
            }

            if (batch.Events.Count > 0)
            {
                lock (_batches)
                {
                    _batches.Add(batch.Events[0].Position.Value);
                }
            }

            return result;
        }

        public Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken) => inner.OpenAsync(projection, cancellationToken);

        public Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken) => inner.StartShadowAsync(projection, cancellationToken);

        public void AttachInline(Projection projection, ReadModelApply apply) => inner.AttachInline(projection, apply);

        public void DetachInline(string projection) => inner.DetachInline(projection);

        public Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken) =>
            inner.ListDeadLettersAsync(projection, max, cancellationToken);

        public Task<StoredDocument?> LoadDocumentAsync(string projection, DocumentDefinition document, string id, CancellationToken cancellationToken) =>
            inner.LoadDocumentAsync(projection, document, id, cancellationToken);

        public Task<IReadOnlyList<StoredDocument>> QueryDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken) =>
            inner.QueryDocumentsAsync(projection, document, query, cancellationToken);

        public Task<long> CountDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken) =>
            inner.CountDocumentsAsync(projection, document, query, cancellationToken);
    }
}
