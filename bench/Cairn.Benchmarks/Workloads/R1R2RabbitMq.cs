using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.RabbitMQ;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Cairn.Benchmarks.Workloads;

/// <summary>
/// R1 and R2: M1 and M2 over RabbitMQ (<c>CAIRN_RABBITMQ</c>; skipped without it), Cairn's transport against
/// RabbitMQ.Client used directly. Cairn: SQLite (durability Full) wrapped by <see cref="RabbitMqMessageBroker"/>, sends
/// committed to the outbox and published by the relay with publisher confirms. R1's consumer is a
/// <see cref="QueueConsumer"/> with its inbox on (each handling commits its inbox record with its acknowledgement); R2's
/// consumers receive (long polling, 32 at a time) and acknowledge. Baseline: the same messages published straight to
/// a quorum queue with publisher confirms (batches of 100 awaited together), consumed by four consumers with manual
/// acknowledgements and the same prefetch per consumer (Cairn's side holds as many in one reader). The baseline has
/// no outbox, no inbox and no transaction with anything: R1's ratio is what the outbox and the inbox cost, R2's what
/// the outbox costs.
/// </summary>
internal static class R1R2RabbitMq
{
    private const int Senders = 4;
    private const int Consumers = 4;
    private const int Batch = 100;
    private const ushort Prefetch = 64;

    /// <summary>R1's uncounted full rounds per side before the counted ones.</summary>
    private const int WarmUpRounds = 4;

    /// <summary>R1: handlings Cairn's consumer runs at once; each waits for its commit, as the baseline's acks do not.</summary>
    private const int HandlerConcurrency = 64;

    private static string? Uri => Environment.GetEnvironmentVariable("CAIRN_RABBITMQ") is { Length: > 0 } uri ? uri : null;

    private sealed record Throughput(long Messages, double SendSeconds, double EndToEndSeconds)
    {
        public double SendRate => Messages / SendSeconds;

        public double EndToEnd => Messages / EndToEndSeconds;
    }

    private sealed record Latency(double P50, double P99, double Max, int Count);

    /// <summary>How many were acknowledged, how many are expected (known only once a paced sender stops), and when all were.</summary>
    private sealed class Progress(long expected = long.MaxValue)
    {
        private long _acknowledged;
        private long _expected = expected;

        public TaskCompletionSource<long> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long Acknowledged => Interlocked.Read(ref _acknowledged);

        public void Expect(long expected)
        {
            Interlocked.Exchange(ref _expected, expected);
            Check();
        }

        public void Add(long count)
        {
            Interlocked.Add(ref _acknowledged, count);
            Check();
        }

        private void Check()
        {
            if (Interlocked.Read(ref _acknowledged) >= Interlocked.Read(ref _expected))
            {
                Done.TrySetResult(Stopwatch.GetTimestamp());
            }
        }
    }

    public static async Task<List<Figure>> R1Async(Scale scale)
    {
        if (Uri is null)
        {
            Console.WriteLine("  skipped: CAIRN_RABBITMQ is not set (eval \"$(tests/rabbitmq.sh start)\")");
            return [];
        }

        // A fifth of M1's count: RabbitMQ and its relay share the machine's two cores with the benchmark.
        var messages = scale.QueueMessages / 5 / (Senders * Batch) * (Senders * Batch);
        var rounds = scale.QueueRounds;

        // Uncounted rounds per side first. A round lasts a few seconds, and with half a round of warm-up the tiered
        // JIT still held a quarter of Cairn's samples in the counted rounds (perf): the relay's, the transport's, the
        // inbox's and RabbitMQ.Client's paths are recompiled up to three times each. Over four full rounds Cairn's
        // rate rose from 9,234 to 12,075 messages/s before it levelled.
        for (var warmUp = 0; warmUp < WarmUpRounds; warmUp++)
        {
            await CairnThroughputAsync(messages);
            if (!scale.CairnOnly)
            {
                await DirectThroughputAsync(messages);
            }
        }

        var (cairn, baseline) = await MessageBench.CompareAsync(rounds, scale.CairnOnly, () => CairnThroughputAsync(messages), () => DirectThroughputAsync(messages), r => r.EndToEnd);
        var n = messages.ToString("#,0", CultureInfo.InvariantCulture);
        var note = rounds > 1 ? $"median round by end-to-end rate, of {rounds} per side" : null;
        return
        [
            new Figure("R1-send", $"send {n} over RabbitMQ, {Senders} senders, batches of {Batch} (Cairn: commit to the outbox)", cairn.SendRate, "msg/s", baseline?.SendRate),
            new Figure("R1", $"end to end over RabbitMQ, {n} messages, a consumer with its inbox (concurrency {HandlerConcurrency}), vs RabbitMQ.Client with confirms and {Consumers} consumers with manual acks", cairn.EndToEnd, "msg/s", baseline?.EndToEnd, Note: note),
        ];
    }

    public static async Task<List<Figure>> R2Async(Scale scale)
    {
        if (Uri is null)
        {
            Console.WriteLine("  skipped: CAIRN_RABBITMQ is not set (eval \"$(tests/rabbitmq.sh start)\")");
            return [];
        }

        const int Rate = 500;
        var duration = scale.LatencyDuration;
        await CairnLatencyAsync(Rate, scale.LatencyWarmup); // warm-up rounds, not counted: JIT, connections, first queues
        if (!scale.CairnOnly)
        {
            await DirectLatencyAsync(Rate, scale.LatencyWarmup);
        }

        var (cairn, baseline) = await MessageBench.CompareAsync(scale.LatencyRounds, scale.CairnOnly, () => CairnLatencyAsync(Rate, duration), () => DirectLatencyAsync(Rate, duration), r => r.P50);
        var title = $"publish-to-handler latency over RabbitMQ at {Rate} msg/s, one consumer";
        return
        [
            new Figure("R2-p50", title + ", p50", cairn.P50, "ms", baseline?.P50),
            new Figure("R2-p99", title + ", p99", cairn.P99, "ms", baseline?.P99),
            new Figure("R2-max", title + ", max", cairn.Max, "ms", baseline?.Max),
        ];
    }

    private static OutgoingMessage Message(int n) => new("bench.r", MessagePayloads.Json(n));

    /// <summary>
    /// Cairn's side, its reader's prefetch the baseline's total for as many consumers: the baseline's consumers each
    /// have a channel with <see cref="Prefetch"/>, while Cairn's consumers in one process share one reader per queue.
    /// </summary>
    private static async Task<(TempDatabase Db, Sqlite.SqliteEventStore Store, RabbitMqMessageBroker Broker, RabbitMqOutboxRelay Relay)> OpenCairnAsync(int consumers)
    {
        var db = new TempDatabase("r-cairn");
        var (store, backend) = MessageBench.OpenCairn(db);
        var broker = new RabbitMqMessageBroker(backend, new RabbitMqOptions { Uri = new Uri(Uri!), Prefetch = (ushort)(Prefetch * consumers), QueuePrefix = $"bench-{Guid.NewGuid():N}." });
        var relay = new RabbitMqOutboxRelay(broker);
        await relay.StartAsync(CancellationToken.None);
        return (db, store, broker, relay);
    }

    private static async Task CloseCairnAsync((TempDatabase Db, Sqlite.SqliteEventStore Store, RabbitMqMessageBroker Broker, RabbitMqOutboxRelay Relay) cairn, QueueName queue)
    {
        await cairn.Relay.StopAsync(CancellationToken.None);
        await DeleteAsync(cairn.Broker.AmqpName(queue));
        await cairn.Broker.DisposeAsync();
        await cairn.Store.DisposeAsync();
        cairn.Db.Dispose();
    }

    private static async Task DeleteAsync(string queue)
    {
        var factory = new ConnectionFactory { Uri = new Uri(Uri!) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        await channel.QueueDeleteAsync(queue);
        await channel.QueueDeleteAsync(queue + RabbitMqMessageBroker.DeadLetterSuffix);
    }

    private static async Task<Throughput> CairnThroughputAsync(int messages)
    {
        var cairn = await OpenCairnAsync(Consumers);
        var queue = new QueueName("r1");
        try
        {
            await cairn.Broker.DeclareQueueAsync(new QueueDefinition(queue), CancellationToken.None);
            var started = Stopwatch.GetTimestamp();
            var consumed = HandleCairnAsync(cairn.Broker, queue, new Progress(messages));
            await Task.WhenAll(Enumerable.Range(0, Senders).Select(s => Task.Run(async () =>
            {
                for (var i = s * Batch; i < messages; i += Senders * Batch)
                {
                    await cairn.Broker.SendBatchAsync(queue, Enumerable.Range(i, Batch).Select(Message));
                }
            })));
            var sent = Stopwatch.GetTimestamp();
            var finished = await consumed;
            return new Throughput(messages, MessageBench.Seconds(started, sent), MessageBench.Seconds(started, finished));
        }
        finally
        {
            await CloseCairnAsync(cairn, queue);
        }
    }

    /// <summary>
    /// R1's Cairn consumer, as an application runs one: a <see cref="QueueConsumer"/> with its inbox on, whose every
    /// handling commits the inbox record with the acknowledgement (a redelivery then has no second effect), holding the
    /// baseline's total prefetch. Returns when the last handling's commit is done.
    /// </summary>
    private static async Task<long> HandleCairnAsync(RabbitMqMessageBroker broker, QueueName queue, Progress progress)
    {
        var options = new ConsumerOptions(queue, "r1") { Concurrency = HandlerConcurrency, Prefetch = Prefetch * Consumers, UseInbox = true };
        await using var consumer = new QueueConsumer(broker, options, (_, _) =>
        {
            progress.Add(1);
            return ValueTask.CompletedTask;
        });
        await consumer.StartAsync(CancellationToken.None);
        await progress.Done.Task.WaitAsync(MessageBench.Timeout);

        // The handlers have run; stopping waits for their commits (inbox record and acknowledgement) to finish.
        using (var stopping = new CancellationTokenSource(MessageBench.Timeout))
        {
            await consumer.StopAsync(stopping.Token);
        }

        var status = consumer.Status;
        if (status.Handled < progress.Acknowledged)
        {
            throw new InvalidOperationException($"{queue}: {status.Handled} handlings committed of {progress.Acknowledged}.");
        }

        return Stopwatch.GetTimestamp();
    }

    private static async Task<long> ConsumeCairnAsync(RabbitMqMessageBroker broker, QueueName queue, Progress progress, Action<Delivery>? handle)
    {
        using var done = new CancellationTokenSource(MessageBench.Timeout);
        using var finished = progress.Done.Task.ContinueWith(_ => done.Cancel(), TaskScheduler.Default);
        await Task.WhenAll(Enumerable.Range(0, handle is null ? Consumers : 1).Select(_ => Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                IReadOnlyList<Delivery> deliveries;
                try
                {
                    deliveries = await broker.ReceiveAsync(queue, MessageBench.Receive, done.Token);
                }
                catch (OperationCanceledException) when (done.IsCancellationRequested)
                {
                    return;
                }

                if (deliveries.Count == 0)
                {
                    continue;
                }

                foreach (var delivery in deliveries)
                {
                    handle?.Invoke(delivery);
                }

                await broker.AcknowledgeAsync([.. deliveries.Select(d => d.Lease)], CancellationToken.None);
                progress.Add(deliveries.Count);
            }
        })));
        if (!progress.Done.Task.IsCompleted)
        {
            throw new InvalidOperationException($"{queue}: only {progress.Acknowledged} messages arrived before the time-out.");
        }

        return await progress.Done.Task;
    }

    private static async Task<(IConnection Connection, string Queue)> OpenDirectAsync()
    {
        var factory = new ConnectionFactory { Uri = new Uri(Uri!) };
        var connection = await factory.CreateConnectionAsync();
        var queue = $"bench-direct-{Guid.NewGuid():N}";
        await using var channel = await connection.CreateChannelAsync();
        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, new Dictionary<string, object?> { ["x-queue-type"] = "quorum" });
        return (connection, queue);
    }

    private static async Task<IChannel> ConfirmingChannelAsync(IConnection connection) =>
        await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true, outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(1024)));

    private static BasicProperties DirectProperties() => new() { DeliveryMode = DeliveryModes.Persistent, ContentType = "application/json" };

    /// <summary>Consumers with manual acknowledgements, each on its channel; <paramref name="progress"/> says when all arrived.</summary>
    private static async Task<List<IChannel>> ConsumeDirectAsync(IConnection connection, string queue, Progress progress, int consumers, Action<ReadOnlyMemory<byte>>? handle)
    {
        var channels = new List<IChannel>();
        for (var c = 0; c < consumers; c++)
        {
            var channel = await connection.CreateChannelAsync();
            await channel.BasicQosAsync(0, Prefetch, false);
            var consumer = new AsyncEventingBasicConsumer(channel);
            consumer.ReceivedAsync += async (_, delivery) =>
            {
                handle?.Invoke(delivery.Body);
                await channel.BasicAckAsync(delivery.DeliveryTag, false);
                progress.Add(1);
            };
            await channel.BasicConsumeAsync(queue, autoAck: false, consumer);
            channels.Add(channel);
        }

        return channels;
    }

    private static async Task<Throughput> DirectThroughputAsync(int messages)
    {
        var (connection, queue) = await OpenDirectAsync();
        await using (connection)
        {
            var started = Stopwatch.GetTimestamp();
            var progress = new Progress(messages);
            var channels = await ConsumeDirectAsync(connection, queue, progress, Consumers, null);
            await Task.WhenAll(Enumerable.Range(0, Senders).Select(s => Task.Run(async () =>
            {
                await using var channel = await ConfirmingChannelAsync(connection);
                for (var i = s * Batch; i < messages; i += Senders * Batch)
                {
                    var batch = Enumerable.Range(i, Batch).Select(n => channel.BasicPublishAsync("", queue, true, DirectProperties(), (ReadOnlyMemory<byte>)MessagePayloads.Json(n)).AsTask()).ToList();
                    await Task.WhenAll(batch);
                }
            })));
            var sent = Stopwatch.GetTimestamp();
            var finished = await progress.Done.Task.WaitAsync(MessageBench.Timeout);
            foreach (var channel in channels)
            {
                await channel.DisposeAsync();
            }

            await DeleteAsync(queue);
            return new Throughput(messages, MessageBench.Seconds(started, sent), MessageBench.Seconds(started, finished));
        }
    }

    /// <summary>A payload carrying its send time, read back by the handler.</summary>
    private static byte[] Stamped()
    {
        var data = new byte[200];
        BinaryPrimitives.WriteInt64LittleEndian(data, Stopwatch.GetTimestamp());
        return data;
    }

    private static double MillisecondsSince(ReadOnlySpan<byte> data) =>
        (Stopwatch.GetTimestamp() - BinaryPrimitives.ReadInt64LittleEndian(data)) * 1000.0 / Stopwatch.Frequency;

    private static Latency Summarise(ConcurrentBag<double> samples)
    {
        var sorted = samples.ToArray();
        Array.Sort(sorted);
        return new Latency(MessageBench.Percentile(sorted, 50), MessageBench.Percentile(sorted, 99), sorted[^1], sorted.Length);
    }

    /// <summary>Sends at <paramref name="rate"/> messages/s for <paramref name="duration"/>, each sent on its own; returns how many.</summary>
    private static async Task<int> PacedAsync(int rate, TimeSpan duration, Func<Task> send)
    {
        var started = Stopwatch.GetTimestamp();
        var sent = 0;
        var pending = new List<Task>();
        while (Stopwatch.GetElapsedTime(started) < duration)
        {
            var due = (int)(Stopwatch.GetElapsedTime(started).TotalSeconds * rate);
            while (sent < due)
            {
                pending.Add(send());
                sent++;
            }

            pending.RemoveAll(t => t.IsCompletedSuccessfully);
            await Task.Delay(1);
        }

        await Task.WhenAll(pending);
        return sent;
    }

    private static async Task<Latency> CairnLatencyAsync(int rate, TimeSpan duration)
    {
        var cairn = await OpenCairnAsync(1);
        var queue = new QueueName("r2");
        try
        {
            await cairn.Broker.DeclareQueueAsync(new QueueDefinition(queue), CancellationToken.None);
            var samples = new ConcurrentBag<double>();
            var progress = new Progress();
            var consumed = ConsumeCairnAsync(cairn.Broker, queue, progress, d => samples.Add(MillisecondsSince(d.Message.Data.Span)));
            progress.Expect(await PacedAsync(rate, duration, () => cairn.Broker.SendAsync(queue, new OutgoingMessage("bench.r2", Stamped()) { ContentType = "application/octet-stream" })));
            await consumed;
            return Summarise(samples);
        }
        finally
        {
            await CloseCairnAsync(cairn, queue);
        }
    }

    private static async Task<Latency> DirectLatencyAsync(int rate, TimeSpan duration)
    {
        var (connection, queue) = await OpenDirectAsync();
        await using (connection)
        {
            var samples = new ConcurrentBag<double>();
            var progress = new Progress();
            var channels = await ConsumeDirectAsync(connection, queue, progress, 1, body => samples.Add(MillisecondsSince(body.Span)));
            await using var publisher = await ConfirmingChannelAsync(connection);
            progress.Expect(await PacedAsync(rate, duration, () => publisher.BasicPublishAsync("", queue, true, DirectProperties(), (ReadOnlyMemory<byte>)Stamped()).AsTask()));
            await progress.Done.Task.WaitAsync(MessageBench.Timeout);
            foreach (var channel in channels)
            {
                await channel.DisposeAsync();
            }

            await DeleteAsync(queue);
            return Summarise(samples);
        }
    }
}
