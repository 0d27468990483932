using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// What only a shared database can show: brokers on stores with their own connection pools, as in separate processes,
/// competing for one queue's messages and waking each other's receivers through LISTEN/NOTIFY.
/// </summary>
public sealed class CompetingBrokersTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<IAsyncDisposable> _opened = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _opened.Count - 1; i >= 0; i--)
        {
            await _opened[i].DisposeAsync();
        }

        await PostgresServer.DropSchemaAsync(_schema);
    }

    /// <summary>A store with a pool of its own, and its broker: one process's view of the schema.</summary>
    private PostgresMessageBroker OpenProcess(TimeProvider? clock = null)
    {
        var store = new PostgresEventStore(
            new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema, ExternalCommitPollInterval = TimeSpan.FromMilliseconds(200) },
            new EventStoreOptions { TimeProvider = clock ?? TimeProvider.System, Source = "urn:test" });
        var broker = new PostgresMessageBroker(store);
        _opened.Add(store);
        _opened.Add(broker);
        return broker;
    }

    private static OutgoingMessage Numbered(int n, string? group = null, int sender = 0) =>
        new("test.numbered", Encoding.UTF8.GetBytes($"{{\"n\":{n},\"sender\":{sender}}}")) { GroupKey = group };

    private static (int N, int Sender) Read(Message message)
    {
        using var doc = JsonDocument.Parse(message.Data);
        return (doc.RootElement.GetProperty("n").GetInt32(), doc.RootElement.GetProperty("sender").GetInt32());
    }

    [Fact]
    public async Task receivers_of_two_processes_competing_for_one_queue_handle_every_message_exactly_once()
    {
        const int Messages = 600;
        var brokers = new[] { OpenProcess(), OpenProcess() };
        QueueName queue = "work";
        await brokers[0].DeclareQueueAsync(new QueueDefinition(queue) { Lease = TimeSpan.FromMinutes(5) }, default);
        await brokers[0].DeclareQueueAsync(new QueueDefinition("effects"), default);

        var handled = new ConcurrentDictionary<MessageId, int>();
        var done = new CancellationTokenSource();
        var receivers = new List<Task>();
        for (var r = 0; r < 8; r++)
        {
            var broker = brokers[r % 2];
            var consumer = $"handler-{r % 2}";
            receivers.Add(Task.Run(async () =>
            {
                while (!done.IsCancellationRequested)
                {
                    var batch = await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 5, Wait = TimeSpan.FromSeconds(1) }, default);
                    foreach (var delivery in batch)
                    {
                        handled.AddOrUpdate(delivery.Message.Id, 1, (_, count) => count + 1);

                        // The effect commits with the acknowledgement and the inbox record.
                        await broker.CommitAsync(
                            new MessageTransaction()
                                .Acknowledge(delivery.Lease)
                                .MarkProcessed(consumer, delivery.Message.Id)
                                .Send("effects", Numbered(Read(delivery.Message).N)),
                            default);
                    }

                    if (handled.Count >= Messages)
                    {
                        await done.CancelAsync();
                    }
                }
            }));
        }

        // Sent from both processes while the receivers run, in transactions of a few.
        var senders = Enumerable.Range(0, 2).Select(s => Task.Run(async () =>
        {
            for (var i = s * 5; i < Messages; i += 10)
            {
                await brokers[s].SendBatchAsync(queue, Enumerable.Range(i, 5).Select(n => Numbered(n, sender: s)));
            }
        }));
        await Task.WhenAll(senders).Bounded();
        await Task.WhenAll(receivers).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(Messages, handled.Count);
        Assert.All(handled, pair => Assert.Equal(1, pair.Value));
        var stats = await brokers[1].GetStatsAsync(queue, default);
        Assert.Equal(new QueueStats { Queue = queue }, stats);
        var effects = new List<int>();
        while (await brokers[1].ReceiveAsync("effects", new ReceiveOptions { MaxMessages = 100 }, default) is { Count: > 0 } batch)
        {
            effects.AddRange(batch.Select(d => Read(d.Message).N));
            await brokers[1].AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }

        Assert.Equal(Enumerable.Range(0, Messages), effects.Order());
    }

    [Fact]
    public async Task a_fifo_group_is_never_handled_by_two_receivers_at_once_and_keeps_each_senders_order()
    {
        const int Groups = 6;
        const int PerSenderAndGroup = 30;
        var brokers = new[] { OpenProcess(), OpenProcess() };
        QueueName queue = "ledger";
        await brokers[0].DeclareQueueAsync(new QueueDefinition(queue) { Fifo = true, Lease = TimeSpan.FromMinutes(5) }, default);

        var inFlight = new int[Groups];
        var overlaps = 0;
        var seen = new ConcurrentDictionary<(int Group, int Sender), List<int>>();
        var total = 0;
        var expected = Groups * PerSenderAndGroup * 2;
        var done = new CancellationTokenSource();
        var receivers = Enumerable.Range(0, 8).Select(r => Task.Run(async () =>
        {
            var broker = brokers[r % 2];
            while (!done.IsCancellationRequested)
            {
                var batch = await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 3, Wait = TimeSpan.FromSeconds(1) }, default);
                foreach (var delivery in batch)
                {
                    var group = int.Parse(delivery.Message.GroupKey![1..], System.Globalization.CultureInfo.InvariantCulture);
                    if (Interlocked.Increment(ref inFlight[group]) != 1)
                    {
                        Interlocked.Increment(ref overlaps);
                    }

                    var (n, sender) = Read(delivery.Message);
                    var list = seen.GetOrAdd((group, sender), _ => []);
                    lock (list)
                    {
                        list.Add(n);
                    }

                    await Task.Yield();

                    // Let go of the group before the acknowledgement commits: from then on another may take its next.
                    Interlocked.Decrement(ref inFlight[group]);
                    await broker.AcknowledgeAsync(delivery.Lease);
                    if (Interlocked.Increment(ref total) >= expected)
                    {
                        await done.CancelAsync();
                    }
                }
            }
        })).ToList();

        // Both processes send to every group at once, each in its own order.
        var senders = Enumerable.Range(0, 2).Select(s => Task.Run(async () =>
        {
            for (var i = 0; i < PerSenderAndGroup; i++)
            {
                await brokers[s].SendBatchAsync(queue, Enumerable.Range(0, Groups).Select(g => Numbered(i, "g" + g, s)));
            }
        }));
        await Task.WhenAll(senders).Bounded();
        await Task.WhenAll(receivers).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(0, overlaps);
        Assert.Equal(expected, total);
        Assert.Equal(Groups * 2, seen.Count);
        Assert.All(seen.Values, numbers => Assert.Equal(Enumerable.Range(0, PerSenderAndGroup), numbers));
    }

    [Fact]
    public async Task a_send_in_one_process_wakes_a_waiting_receiver_of_another_without_its_poll()
    {
        // The clock never moves, so neither the receiver's wait nor its poll can end it: only the notification can.
        var clock = new ManualTimeProvider();
        var receiving = OpenProcess(clock);
        var sending = OpenProcess(clock);
        QueueName queue = "orders";
        await sending.DeclareQueueAsync(new QueueDefinition(queue), default);

        var receive = receiving.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default);
        await receiving.Listener.WhenListeningAsync().Bounded();
        await clock.WhenTimerArmedAsync().Bounded();
        Assert.False(receive.IsCompleted);

        await sending.SendAsync(queue, Numbered(7));
        var delivery = Assert.Single(await receive.Bounded());
        Assert.Equal(7, Read(delivery.Message).N);
    }

    [Fact]
    public async Task a_listening_connection_that_is_killed_reconnects_and_wakes_receivers_again()
    {
        var clock = new ManualTimeProvider();
        var receiving = OpenProcess(clock);
        var sending = OpenProcess(clock);
        QueueName queue = "orders";
        await sending.DeclareQueueAsync(new QueueDefinition(queue), default);

        var first = receiving.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default);
        await receiving.Listener.WhenListeningAsync().Bounded();
        var killed = receiving.Listener.ProcessId;
        Assert.Equal(1, receiving.Listener.Connections);

        await using (var connection = new NpgsqlConnection(PostgresServer.ConnectionString))
        {
            await connection.OpenAsync();
            await using var terminate = new NpgsqlCommand("SELECT pg_terminate_backend($1)", connection);
            terminate.Parameters.Add(new NpgsqlParameter { Value = killed });
            Assert.True((bool)(await terminate.ExecuteScalarAsync())!);
        }

        await Wait.UntilAsync(() => receiving.Listener.Connections == 2, "the listener reconnects");
        await receiving.Listener.WhenListeningAsync().Bounded();
        Assert.NotEqual(killed, receiving.Listener.ProcessId);

        // The receive that waited through the drop is woken by a notification on the new connection.
        await clock.WhenTimerArmedAsync().Bounded();
        Assert.False(first.IsCompleted);
        await sending.SendAsync(queue, Numbered(1));
        Assert.Equal(1, Read(Assert.Single(await first.Bounded()).Message).N);

        // And so is the next one.
        var second = receiving.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default);
        await clock.WhenTimerArmedAsync().Bounded();
        await sending.SendAsync(queue, Numbered(2));
        Assert.Equal(2, Read(Assert.Single(await second.Bounded()).Message).N);
    }
}
