using System.Diagnostics;
using System.Globalization;
using Cairn.Messaging;
using Cairn.Sqlite;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// M1: messaging throughput, durable. Four senders send <see cref="Scale.QueueMessages"/> 200-byte messages to one
/// queue in batches of 100 (one commit per batch); then four consumers drain it, each receiving up to 32 messages at a
/// time (long polling) and acknowledging them in one call. Reports messages/s each way and end to end (all messages
/// over the time of both phases). Before the timed messages, a warm-up of <see cref="Scale.QueueWarmupMessages"/> goes
/// through the same queue untimed. Baseline: the same senders, batches and consumers on a plain table
/// (<see cref="QueueBaseline"/>): a transaction per batch sent, per batch received and per batch acknowledged, so each
/// Cairn call has its one transaction. A second baseline, <c>M1-single</c>, is a queue table used one message at a
/// time: a transaction per message sent, per message received and per message acknowledged, with the same four
/// senders and four consumers, over <see cref="Scale.QueueSingleMessages"/> messages (it is too slow for the full
/// count); Cairn's figure beside it is M1's end to end. That second one is the baseline the target's 5× is measured
/// against, as the issue defines it (a transaction per send, a select-update-delete per receive); the batched table is
/// the stricter comparison, where both sides do the same SQLite work per message.
/// </summary>
internal static class M1Throughput
{
    public const int Senders = 4;
    public const int Consumers = 4;
    public const int SendBatch = 100;
    private const string Queue = "m1";
    private const long BaselineQueue = 1;
    private const string Type = "bench.m1";

    private sealed record Result(long Messages, double SendSeconds, double ReceiveSeconds)
    {
        public double SendRate => Messages / SendSeconds;

        public double ReceiveRate => Messages / ReceiveSeconds;

        public double EndToEnd => Messages / (SendSeconds + ReceiveSeconds);
    }

    public static async Task<List<Figure>> RunAsync(Scale scale)
    {
        if (scale.QueueMessages % SendBatch != 0 || scale.QueueWarmupMessages % SendBatch != 0)
        {
            throw new InvalidOperationException($"M1 sends batches of {SendBatch}: its message counts must be multiples of it.");
        }

        var (cairn, baseline) = await MessageBench.CompareAsync(scale.QueueRounds, scale.CairnOnly, () => CairnAsync(scale), () => BaselineAsync(scale, scale.QueueWarmupMessages, scale.QueueMessages, SendBatch, ReceiveBatch), r => r.EndToEnd);
        var single = scale.CairnOnly ? null : await BaselineAsync(scale, SingleWarmup(scale), scale.QueueSingleMessages, 1, 1);
        var n = scale.QueueMessages.ToString("#,0", CultureInfo.InvariantCulture);
        var note = scale.QueueRounds > 1 ? $"median round by end-to-end rate, of {scale.QueueRounds} per side" : null;
        return
        [
            new Figure("M1-send", $"send {n}, {Senders} senders, batches of {SendBatch}", cairn.SendRate, "msg/s", baseline?.SendRate),
            new Figure("M1-receive", $"receive {ReceiveBatch} + ack, {Consumers} consumers", cairn.ReceiveRate, "msg/s", baseline?.ReceiveRate),
            new Figure("M1", $"end to end, {n} messages, vs a table batched like Cairn", cairn.EndToEnd, "msg/s", baseline?.EndToEnd,
                Figure.AtLeast(20_000, "msg/s"), note),
            new Figure("M1-single", "end to end vs a one-message-per-transaction table", cairn.EndToEnd, "msg/s", single?.EndToEnd, Figure.RatioAtLeast(5),
                single is null ? null : string.Create(CultureInfo.InvariantCulture,
                    $"baseline sends, receives and acks one message per transaction ({single.Messages:#,0} messages): send {single.SendRate:#,0} msg/s, receive {single.ReceiveRate:#,0} msg/s")),
        ];
    }

    private static int SingleWarmup(Scale scale) => Math.Min(scale.QueueWarmupMessages, scale.QueueSingleMessages / 10);

    private const int ReceiveBatch = MessageBench.ReceiveBatch;

    private static async Task<Result> CairnAsync(Scale scale)
    {
        using var db = new TempDatabase("m1-cairn");
        var (store, broker) = MessageBench.OpenCairn(db);
        await using (store)
        {
            await broker.DeclareQueueAsync(new QueueDefinition(Queue), CancellationToken.None);
            var bytes = 0L;
            void Touch(IReadOnlyList<Delivery> deliveries)
            {
                var sum = 0L;
                foreach (var delivery in deliveries)
                {
                    sum += delivery.Message.Data.Length;
                }

                Interlocked.Add(ref bytes, sum);
            }

            var warmup = scale.QueueWarmupMessages;
            await SendAsync(broker, 0, warmup);
            await MessageBench.ConsumeAsync(broker, Queue, Consumers, warmup, Touch);

            var n = scale.QueueMessages;
            var started = Stopwatch.GetTimestamp();
            await SendAsync(broker, warmup, n);
            var sent = Stopwatch.GetTimestamp();
            var received = await MessageBench.ConsumeAsync(broker, Queue, Consumers, n, Touch);

            var stats = await broker.GetStatsAsync(Queue, CancellationToken.None);
            if (stats.Visible + stats.Leased + stats.Delayed + stats.DeadLettered != 0 || bytes != (long)(warmup + n) * MessagePayloads.Size)
            {
                throw new InvalidOperationException($"M1: after the run the queue holds {stats}, and {bytes} bytes were received.");
            }

            return Report("Cairn", new Result(n, MessageBench.Seconds(started, sent), MessageBench.Seconds(sent, received)));
        }
    }

    private static async Task SendAsync(SqliteMessageBroker broker, long first, long count)
    {
        var batches = count / SendBatch;
        var taken = -1L;
        await Task.WhenAll(Enumerable.Range(0, Senders).Select(_ => Task.Run(async () =>
        {
            long b;
            while ((b = Interlocked.Increment(ref taken)) < batches)
            {
                var messages = new OutgoingMessage[SendBatch];
                for (var i = 0; i < SendBatch; i++)
                {
                    messages[i] = new OutgoingMessage(Type, MessagePayloads.Json(first + b * SendBatch + i));
                }

                await broker.SendBatchAsync(Queue, messages, CancellationToken.None);
            }
        })));
    }

    private static async Task<Result> BaselineAsync(Scale scale, int warmup, int n, int sendBatch, int receiveBatch)
    {
        using var db = new TempDatabase(sendBatch == 1 ? "m1-single" : "m1-baseline");
        QueueBaseline.Create(db.Path);
        var bytes = 0L;
        void Touch(List<(long Seq, byte[] Data)> batch)
        {
            var sum = 0L;
            foreach (var (_, data) in batch)
            {
                sum += data.Length;
            }

            Interlocked.Add(ref bytes, sum);
        }

        await SendBaselineAsync(db.Path, 0, warmup, sendBatch);
        await MessageBench.ConsumeBaselineAsync(db.Path, BaselineQueue, Consumers, warmup, Touch, receiveBatch);

        var started = Stopwatch.GetTimestamp();
        await SendBaselineAsync(db.Path, warmup, n, sendBatch);
        var sent = Stopwatch.GetTimestamp();
        var received = await MessageBench.ConsumeBaselineAsync(db.Path, BaselineQueue, Consumers, n, Touch, receiveBatch);

        using (var table = new QueueBaseline(db.Path))
        {
            var left = table.Count(BaselineQueue);
            if (left != 0 || bytes != (long)(warmup + n) * MessagePayloads.Size)
            {
                throw new InvalidOperationException($"M1 baseline: after the run the queue holds {left} messages, and {bytes} bytes were received.");
            }
        }

        return Report(sendBatch == 1 ? "single" : "baseline", new Result(n, MessageBench.Seconds(started, sent), MessageBench.Seconds(sent, received)));
    }

    private static Task SendBaselineAsync(string path, long first, long count, int batch)
    {
        var batches = count / batch;
        var taken = -1L;
        return MessageBench.Threads(Senders, _ =>
        {
            using var table = new QueueBaseline(path);
            long b;
            var messages = new byte[batch][];
            while ((b = Interlocked.Increment(ref taken)) < batches)
            {
                for (var i = 0; i < batch; i++)
                {
                    messages[i] = MessagePayloads.Json(first + b * batch + i);
                }

                table.Send(BaselineQueue, Type, messages);
            }
        });
    }

    private static Result Report(string side, Result r)
    {
        Log.Line(string.Create(CultureInfo.InvariantCulture,
            $"  M1     {side,-8} send {r.SendRate,9:#,0} msg/s, receive {r.ReceiveRate,9:#,0} msg/s, end to end {r.EndToEnd,9:#,0} msg/s  ({r.Messages:#,0} messages: {r.SendSeconds:0.00} s + {r.ReceiveSeconds:0.00} s)"));
        return r;
    }
}
