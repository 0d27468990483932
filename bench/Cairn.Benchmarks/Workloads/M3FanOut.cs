using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Cairn.Sqlite;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// M3: fan-out through one topic with ten filtered subscriptions, durable. Four publishers publish
/// <see cref="Scale.FanOutPublishes"/> messages in transactions of 100 publishes; each message's data has a field
/// <c>k</c> = n mod 10, and the rules route it to five queues on average (see <see cref="Subscriptions"/>). Then one
/// consumer per queue drains the ten queues at once (receive up to 32, acknowledge them). Reports publishes/s and
/// copies delivered/s. A warm-up of <see cref="Scale.FanOutWarmupPublishes"/> goes through first, untimed.
/// Baseline: the routing written by hand over the plain table (<see cref="QueueBaseline"/>): each message's data is
/// parsed once, the ten rules are tested as C# predicates on its <c>k</c>, and a row is inserted for each match, a
/// transaction per 100 publishes; the consumers are the baseline's, one per queue.
/// </summary>
internal static class M3FanOut
{
    public const int Publishers = 4;
    public const int PublishBatch = 100;
    private const string Topic = "m3";
    private const string Type = "bench.m3";

    /// <summary>
    /// The ten subscriptions: five that take one message in ten (one value of <c>k</c> each), one that takes half
    /// (<c>k</c> ≥ 5, a numeric rule) and four that take all (a rule on the type, which every message has).
    /// </summary>
    private static readonly (string Name, string Rule, Func<int, bool> Matches)[] Subscriptions =
    [
        .. Enumerable.Range(0, 5).Select(k => ($"k{k}", $$$"""{"data":{"k":[{{{k}}}]}}""", (Func<int, bool>)(key => key == k))),
        ("k-high", """{"data":{"k":[{"numeric":[">=",5]}]}}""", key => key >= 5),
        .. Enumerable.Range(1, 4).Select(a => ($"all{a}", $$"""{"type":["{{Type}}"]}""", (Func<int, bool>)(_ => true))),
    ];

    private sealed record Result(long Publishes, long Copies, double PublishSeconds, double DeliverSeconds)
    {
        public double PublishRate => Publishes / PublishSeconds;

        public double DeliverRate => Copies / DeliverSeconds;
    }

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        var (cairn, baseline) = await MessageBench.CompareAsync(scale.FanOutRounds, scale.CairnOnly, () => CairnAsync(scale), () => BaselineAsync(scale), r => r.Copies / (r.PublishSeconds + r.DeliverSeconds));
        var n = scale.FanOutPublishes.ToString("#,0", CultureInfo.InvariantCulture);
        var copies = string.Create(CultureInfo.InvariantCulture, $"{cairn.Copies:#,0} copies ({cairn.Copies / (double)cairn.Publishes:0.0} a message)");
        var rounds = scale.FanOutRounds > 1 ? $"; median round by copies over the time of both phases, of {scale.FanOutRounds} per side" : "";
        return
        [
            new Figure("M3-publish", $"publish {n} to a topic, 10 filtered subscriptions", cairn.PublishRate, "publishes/s", baseline?.PublishRate, null,
                $"{Publishers} publishers, {PublishBatch} publishes per commit; {copies}{rounds}"),
            new Figure("M3-deliver", "copies delivered, 10 queues, 1 consumer each", cairn.DeliverRate, "copies/s", baseline?.DeliverRate),
        ];
    }

    private static string QueueOf(int subscription) => "m3-" + Subscriptions[subscription].Name;

    /// <summary>How many of the publishes from <paramref name="first"/> on each subscription takes.</summary>
    private static long[] Expected(long first, long count)
    {
        var expected = new long[Subscriptions.Length];
        for (var n = first; n < first + count; n++)
        {
            for (var s = 0; s < Subscriptions.Length; s++)
            {
                if (Subscriptions[s].Matches(MessagePayloads.Key(n)))
                {
                    expected[s]++;
                }
            }
        }

        return expected;
    }

    private static async Task<Result> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("m3-cairn");
        var (store, broker) = MessageBench.OpenCairn(db);
        await using (store)
        {
            await broker.DeclareTopicAsync(Topic, CancellationToken.None);
            for (var s = 0; s < Subscriptions.Length; s++)
            {
                await broker.DeclareQueueAsync(new QueueDefinition(QueueOf(s)), CancellationToken.None);
                await broker.SubscribeAsync(new TopicSubscription(Topic, Subscriptions[s].Name, QueueOf(s), FilterRule.Parse(Subscriptions[s].Rule)), CancellationToken.None);
            }

            var warmup = scale.FanOutWarmupPublishes;
            await PublishAsync(broker, 0, warmup);
            await ConsumeAsync(broker, Expected(0, warmup));

            var n = scale.FanOutPublishes;
            var expected = Expected(warmup, n);
            var started = Stopwatch.GetTimestamp();
            await PublishAsync(broker, warmup, n);
            var published = Stopwatch.GetTimestamp();
            var delivered = await ConsumeAsync(broker, expected);

            for (var s = 0; s < Subscriptions.Length; s++)
            {
                var stats = await broker.GetStatsAsync(QueueOf(s), CancellationToken.None);
                if (stats.Visible + stats.Leased + stats.Delayed + stats.DeadLettered != 0)
                {
                    throw new InvalidOperationException($"M3: after the run queue {QueueOf(s)} holds {stats}.");
                }
            }

            return Report("Cairn", new Result(n, expected.Sum(), MessageBench.Seconds(started, published), MessageBench.Seconds(published, delivered)));
        }
    }

    private static async Task PublishAsync(SqliteMessageBroker broker, long first, long count)
    {
        var batches = count / PublishBatch;
        var taken = -1L;
        await Task.WhenAll(Enumerable.Range(0, Publishers).Select(_ => Task.Run(async () =>
        {
            long b;
            while ((b = Interlocked.Increment(ref taken)) < batches)
            {
                var transaction = new MessageTransaction();
                for (var i = 0; i < PublishBatch; i++)
                {
                    transaction.Publish(Topic, new OutgoingMessage(Type, MessagePayloads.Json(first + b * PublishBatch + i)));
                }

                var result = await broker.CommitAsync(transaction, CancellationToken.None);
                if (result.MessagesEnqueued == 0)
                {
                    throw new InvalidOperationException("M3: a batch of publishes reached no queue.");
                }
            }
        })));
    }

    /// <summary>Drains every queue at once, one consumer each; returns when the last copy was acknowledged.</summary>
    private static async Task<long> ConsumeAsync(SqliteMessageBroker broker, long[] expected)
    {
        var finished = await Task.WhenAll(expected.Select((count, s) => MessageBench.ConsumeAsync(broker, QueueOf(s), 1, count)));
        return finished.Max();
    }

    private static async Task<Result> BaselineAsync(Scale scale)
    {
        using var db = new TempDatabase("m3-baseline");
        QueueBaseline.Create(db.Path);

        var warmup = scale.FanOutWarmupPublishes;
        await PublishBaselineAsync(db.Path, 0, warmup);
        await ConsumeBaselineAsync(db.Path, Expected(0, warmup));

        var n = scale.FanOutPublishes;
        var expected = Expected(warmup, n);
        var started = Stopwatch.GetTimestamp();
        await PublishBaselineAsync(db.Path, warmup, n);
        var published = Stopwatch.GetTimestamp();
        var delivered = await ConsumeBaselineAsync(db.Path, expected);

        using (var table = new QueueBaseline(db.Path))
        {
            for (var s = 0; s < Subscriptions.Length; s++)
            {
                if (table.Count(s + 1) is var left and not 0)
                {
                    throw new InvalidOperationException($"M3 baseline: after the run queue {s + 1} holds {left} messages.");
                }
            }
        }

        return Report("baseline", new Result(n, expected.Sum(), MessageBench.Seconds(started, published), MessageBench.Seconds(published, delivered)));
    }

    private static Task PublishBaselineAsync(string path, long first, long count)
    {
        var batches = count / PublishBatch;
        var taken = -1L;
        return MessageBench.Threads(Publishers, _ =>
        {
            using var table = new QueueBaseline(path);
            var copies = new List<(long Queue, byte[] Data)>(PublishBatch * Subscriptions.Length);
            long b;
            while ((b = Interlocked.Increment(ref taken)) < batches)
            {
                copies.Clear();
                for (var i = 0; i < PublishBatch; i++)
                {
                    var data = MessagePayloads.Json(first + b * PublishBatch + i);
                    int k;
                    using (var document = JsonDocument.Parse(data))
                    {
                        k = document.RootElement.GetProperty("k").GetInt32();
                    }

                    for (var s = 0; s < Subscriptions.Length; s++)
                    {
                        if (Subscriptions[s].Matches(k))
                        {
                            copies.Add((s + 1, data));
                        }
                    }
                }

                table.Send(Type, copies);
            }
        });
    }

    private static async Task<long> ConsumeBaselineAsync(string path, long[] expected)
    {
        var finished = await Task.WhenAll(expected.Select((count, s) => MessageBench.ConsumeBaselineAsync(path, s + 1, 1, count)));
        return finished.Max();
    }

    private static Result Report(string side, Result r)
    {
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  M3     {side,-8} publish {r.PublishRate,9:#,0}/s, deliver {r.DeliverRate,9:#,0} copies/s  ({r.Publishes:#,0} publishes, {r.Copies:#,0} copies: {r.PublishSeconds:0.00} s + {r.DeliverSeconds:0.00} s)"));
        return r;
    }
}
