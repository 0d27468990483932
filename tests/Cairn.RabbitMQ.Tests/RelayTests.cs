using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

public sealed class RelayTests
{
    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // A commit's handler still running when the relay stopped made its queue a loop that ended at once; the next start
    // made no new one for the queue, which was never relayed again.
    [Fact]
    public async Task a_loop_made_while_the_relay_stopped_does_not_keep_its_queue_from_being_relayed_after_a_restart()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("restarted"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Relay.StopAsync(default);
        await sut.Relay.Ensure(queue).Task.WaitAsync(TimeSpan.FromSeconds(10));

        await sut.Relay.StartAsync(default);
        await sut.Broker.SendAsync(queue, Numbered(1));

        var delivered = Assert.Single(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default).Bounded());
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(delivered.Message.Data.Span));
    }

    // After a failure the relay pauses, doubling up to MaxReconnectDelay. Each commit woke it, ending the pause: while
    // RabbitMQ (here, the outbox) was unreachable, a steady stream of commits had it try again at once on every one.
    [Fact]
    public async Task commits_do_not_cut_the_relays_pause_after_a_failure_short()
    {
        var directory = Path.Combine(Path.GetTempPath(), "cairn-rabbitmq-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            using var store = new Cairn.Sqlite.SqliteEventStore(new Cairn.Sqlite.SqliteEventStoreOptions { ConnectionString = $"Data Source={Path.Combine(directory, "cairn.db")}" }, new Cairn.EventStore.EventStoreOptions { Source = "urn:test" });
            var backend = new FailingOutboxBackend(new Cairn.Sqlite.SqliteMessageBroker(store));
            var options = new RabbitMqOptions { Uri = new Uri(RabbitMqServer.Uri), RelayPollWait = TimeSpan.FromMilliseconds(200), ReconnectDelay = TimeSpan.FromSeconds(3), MaxReconnectDelay = TimeSpan.FromSeconds(3) };
            await using var broker = new RabbitMqMessageBroker(backend, options);
            var queue = new QueueName(RabbitMqServer.NewName("paused"));
            await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
            await using var relay = new RabbitMqOutboxRelay(broker);
            backend.Failing = true;
            await relay.StartAsync(default);
            await broker.SendAsync(queue, new OutgoingMessage("test.message", Encoding.UTF8.GetBytes("{\"n\":0}")));
            await Wait.UntilAsync(() => backend.FailedTakes >= 1, "the relay's first take fails");

            // Twenty commits within the pause: none of them makes the relay try again before it is over.
            var failedBefore = backend.FailedTakes;
            for (var n = 1; n <= 20; n++)
            {
                await broker.SendAsync(queue, new OutgoingMessage("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}")));
            }

            Assert.True(backend.FailedTakes - failedBefore <= 1, $"the relay tried {backend.FailedTakes - failedBefore} times during one pause");

            // Once the outbox answers again, everything committed meanwhile goes out.
            backend.Failing = false;
            var received = 0;
            await Wait.UntilAsync(
                async () =>
                {
                    var batch = await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 32, Wait = TimeSpan.FromMilliseconds(200) }, default);
                    if (batch.Count > 0)
                    {
                        await broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
                    }

                    return (received += batch.Count) == 21;
                },
                "every message committed during the failure is relayed");
            await relay.StopAsync(default);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>A backend whose outbox takes fail while <see cref="Failing"/> is set, counting them.</summary>
    private sealed class FailingOutboxBackend(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        private int _failedTakes;

        public volatile bool Failing;

        public int FailedTakes => Volatile.Read(ref _failedTakes);

        public override Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
        {
            if (Failing && RabbitMqMessageBroker.QueueOfOutbox(queue) is not null)
            {
                Interlocked.Increment(ref _failedTakes);
                throw new InvalidOperationException("the outbox cannot be read");
            }

            return Inner.ReceiveAsync(queue, options, cancellationToken);
        }
    }

    [Fact]
    public async Task with_several_batches_in_flight_refused_publishes_stay_in_the_outbox_and_arrive_later_and_no_confirmed_one_is_published_again()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        // Batches of 10 in a window of 100 outstanding publishes (200 - 50%): up to ten batches in flight at once.
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri, o => o with { RelayBatchSize = 10, MaxOutstandingConfirms = 200 });
        var queue = new QueueName(RabbitMqServer.NewName("capped"));
        // RabbitMQ refuses (basic.nack) every publish while the queue holds 40 messages: most of a burst is refused.
        await RabbitMqServer.RunScriptAsync(
            "ctl", rabbit.Directory, "set_policy", "cap", $"^{Regex.Escape(sut.Broker.AmqpName(queue))}$",
            """{"max-length":40,"overflow":"reject-publish"}""", "--apply-to", "queues");
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        using var telemetry = new TelemetryRecorder(name => name == CairnDiagnostics.MessagingName);
        const int Total = 200;
        var sent = Enumerable.Range(0, Total).Select(Numbered).ToList();

        var sending = Stopwatch.StartNew();
        await sut.Broker.SendBatchAsync(queue, sent);
        await Wait.UntilAsync(() => sut.Relay.Returned > 0, "RabbitMQ refused some publishes and the relay returned them to the outbox");
        var outbox = await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default);
        Assert.True(outbox.Visible + outbox.Leased > 0, "the refused messages wait in the outbox");

        // The gauges show the outbox: every message RabbitMQ has not confirmed, due again or being published again.
        await Wait.UntilAsync(
            () =>
            {
                telemetry.ReadGauges();
                var backlog = telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=due") + telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=in_flight");
                return backlog > 0 && backlog == Total - sut.Relay.Published;
            },
            "the relay's backlog gauges count the messages RabbitMQ did not confirm");
        Assert.Equal(0, telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=delayed"));
        var waited = telemetry.Last($"cairn.messaging.relay.oldest_age|queue={queue}");
        Assert.InRange(waited!.Value, 0, sending.Elapsed.TotalSeconds);

        // The relay counts a return in its own figure, then in the metric: the first may show before the second.
        await Wait.UntilAsync(() => telemetry.Total($"cairn.messaging.relay.returned|queue={queue}") > 0, "the relay's returns are counted in the metric");

        var received = new List<MessageId>();
        while (received.Count < Total)
        {
            var batch = await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 20, Wait = TimeSpan.FromSeconds(20) }, default).Bounded();
            Assert.NotEmpty(batch);
            received.AddRange(batch.Select(d => d.Message.Id));
            await sut.Broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }

        // Every message once: the refused ones were published again, none that RabbitMQ had confirmed was.
        Assert.Equal(sent.Select(m => m.Id.ToString()).Order(StringComparer.Ordinal), received.Select(id => id.ToString()).Order(StringComparer.Ordinal));
        await Wait.UntilAsync(() => sut.Relay.Published == Total, "the relay counted every message as confirmed once");
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMilliseconds(500) }, default));
        outbox = await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default);
        Assert.Equal(0, outbox.Visible + outbox.Leased + outbox.Delayed);
        Assert.True(sut.Relay.Returned > 0);

        // Each message counted once as published, each refusal as returned, each batch's confirms timed.
        Assert.Equal(Total, telemetry.Total($"cairn.messaging.relay.published|queue={queue}"));
        Assert.Equal(sut.Relay.Returned, telemetry.Total($"cairn.messaging.relay.returned|queue={queue}"));
        Assert.InRange(telemetry.Total($"cairn.messaging.relay.confirm.duration|queue={queue}"), Total / 10, long.MaxValue);
        telemetry.ReadGauges();
        Assert.Equal(0, telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=due"));
        Assert.Equal(0, telemetry.Last($"cairn.messaging.relay.oldest_age|queue={queue}"));
    }

    [Fact]
    public async Task a_delayed_send_waits_in_the_outbox_counted_as_delayed_without_ageing_it()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("later"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        using var telemetry = new TelemetryRecorder(name => name == CairnDiagnostics.MessagingName);

        await sut.Broker.SendAsync(queue, Numbered(1) with { Delay = TimeSpan.FromHours(1) });
        var now = Numbered(2);
        await sut.Broker.SendAsync(queue, now);
        var due = Assert.Single(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default).Bounded());
        await sut.Broker.AcknowledgeAsync([due.Lease], default);
        await Wait.UntilAsync(() => telemetry.Total($"cairn.messaging.relay.published|queue={queue}") == 1, "the due message is counted as published");
        telemetry.ReadGauges();

        Assert.Equal(1, telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=delayed"));
        Assert.Equal(0, telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=due"));
        Assert.Equal(0, telemetry.Last($"cairn.messaging.relay.backlog|queue={queue}|state=in_flight"));

        // A delayed send waits by design: it does not age the outbox.
        Assert.Equal(0, telemetry.Last($"cairn.messaging.relay.oldest_age|queue={queue}"));
        Assert.Equal(now.Id, due.Message.Id);
        Assert.Equal(0, telemetry.Total($"cairn.messaging.relay.returned|queue={queue}"));
    }
}
