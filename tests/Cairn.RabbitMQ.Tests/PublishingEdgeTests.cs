using System.Text;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.Messaging;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The publishing side at its edges: messages RabbitMQ cannot take, names that clash with a queue's companions in
/// RabbitMQ or do not fit its limits, settings the relay cannot keep, and a failure's stack trace on release.
/// </summary>
public sealed class PublishingEdgeTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // A message whose headers would not fit RabbitMQ's content-header frame is refused at its commit; the relay's "RabbitMQ
    // cannot take it" is for what a commit never checked. The commit counts the message before its correlation id
    // (written twice), causation id and trace parent are filled in from a handler's context: a send just under the
    // commit's limit, from such a context, was refused by the relay and dead-lettered in the outbox, where no consumer
    // sees it, though RabbitMQ would have taken it.
    [Fact]
    public async Task a_send_its_commit_accepted_for_its_header_size_is_published_from_a_handlers_context()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("edge"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        // As the commit counts it: 512 + type (32 + 12) twice + source (32 + 5) + the entry (6 + 12 + 1 + value) = 49,152.
        var message = Numbered(1) with
        {
            Source = "urn:x",
            Metadata = new Dictionary<string, string> { ["k"] = new string('v', 48_496) },
        };
        using (MessageContext.Begin(correlationId: new string('c', 256), causationId: new string('d', 256)))
        {
            await sut.Broker.SendAsync(queue, message);
        }

        var received = await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded();
        var outboxDead = await sut.Broker.Backend.ListDeadLettersAsync(RabbitMqMessageBroker.OutboxOf(queue), 0, 10, default);
        Assert.True(received.Count == 1, $"the committed send never arrived; the outbox dead-lettered it: {string.Join("; ", outboxDead.Select(d => d.Reason))}");
        Assert.Equal(new string('c', 256), received[0].Message.CorrelationId);

        // One byte more is refused at its commit.
        var over = Numbered(2) with { Source = "urn:x", Metadata = new Dictionary<string, string> { ["k"] = new string('v', 48_497) } };
        await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.SendAsync(queue, over));
    }

    [Fact]
    public async Task a_queue_named_as_another_queues_dead_letters_or_delay_queue_is_refused_and_nothing_is_declared()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var orders = RabbitMqServer.NewName("orders");
        foreach (var name in new[] { orders + ".dlq", orders + ".wait.1300" })
        {
            var refused = await Assert.ThrowsAsync<InvalidMessagingNameException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(new QueueName(name)), default));
            Assert.Contains("another queue's dead letters and delay queues", refused.Message, StringComparison.Ordinal);
            Assert.Null(await sut.Broker.GetQueueAsync(new QueueName(name), default));
        }
    }

    [Fact]
    public async Task a_queue_name_too_long_for_rabbitmq_in_utf8_is_refused_with_a_typed_error_and_nothing_is_declared()
    {
        await using var sut = await TransportUnderTest.StartAsync(configure: o => o with { QueuePrefix = new string('\u961f', 64) });
        var queue = new QueueName("q" + new string('a', 99));

        var refused = await Assert.ThrowsAsync<InvalidMessagingNameException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default));
        Assert.Contains("255 bytes", refused.Message, StringComparison.Ordinal);
        Assert.Null(await sut.Broker.GetQueueAsync(queue, default));
    }

    [Fact]
    public async Task a_declaration_rabbitmq_refuses_is_a_conflict_and_leaves_nothing_declared_in_the_backend()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("classic"));

        // Another application's classic queue of that name.
        var factory = new ConnectionFactory { Uri = new Uri(RabbitMqServer.Uri) };
        await using (var connection = await factory.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            await channel.QueueDeclareAsync(sut.Broker.AmqpName(queue), durable: true, exclusive: false, autoDelete: false);
        }

        try
        {
            var refused = await Assert.ThrowsAsync<QueueDefinitionConflictException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default));
            Assert.Contains("RabbitMQ refused to declare it", refused.Message, StringComparison.Ordinal);
            Assert.Null(await sut.Broker.GetQueueAsync(queue, default));
            await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.SendAsync(queue, Numbered(1)));

            // The broker goes on: another queue is declared and used.
            var other = new QueueName(RabbitMqServer.NewName("other"));
            await sut.Broker.DeclareQueueAsync(new QueueDefinition(other), default);
            await sut.Broker.SendAsync(other, Numbered(2));
            Assert.Single(await sut.Broker.ReceiveAsync(other, Waiting, default).Bounded());
        }
        finally
        {
            await using var connection = await factory.CreateConnectionAsync();
            await using var channel = await connection.CreateChannelAsync();
            await channel.QueueDeleteAsync(sut.Broker.AmqpName(queue));
        }
    }

    [Fact]
    public async Task a_queue_allowing_larger_messages_than_rabbitmq_takes_is_refused_at_its_declaration()
    {
        await using var sut = await TransportUnderTest.StartAsync(configure: o => o with { MaxMessageSize = 1024 * 1024 });
        var queue = new QueueName(RabbitMqServer.NewName("huge"));

        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxMessageSize = 4 * 1024 * 1024 }, default));
        Assert.Contains("RabbitMqOptions.MaxMessageSize", refused.Message, StringComparison.Ordinal);
        Assert.Null(await sut.Broker.GetQueueAsync(queue, default));

        // A FIFO queue stays in the backend, which takes it.
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(new QueueName(RabbitMqServer.NewName("kept"))) { Fifo = true, MaxMessageSize = 4 * 1024 * 1024 }, default);
    }

    /// <summary>
    /// A FIFO queue (kept in the backend) takes messages no queue in RabbitMQ could: headers past AMQP's content-header
    /// frame, or data past RabbitMQ's limit. Redriven from its dead letters to a queue in RabbitMQ, such a message lands
    /// in that queue's outbox. Published, it made RabbitMQ close the publishing connection (or channel), failing
    /// everything in flight, and was returned and tried again for ever; now the relay dead-letters it in the outbox,
    /// where the health check (degraded, naming the outbox) and the relay's backlog gauge (dead-lettered) show it.
    /// </summary>
    [Theory]
    [InlineData("headers")]
    [InlineData("data")]
    public async Task an_outbox_message_rabbitmq_cannot_take_is_dead_lettered_in_its_outbox_and_never_published(string tooLarge)
    {
        await using var sut = await TransportUnderTest.StartAsync(configure: o => o with { MaxMessageSize = 1024 * 1024 });
        var ledger = new QueueName(RabbitMqServer.NewName("ledger"));
        var target = new QueueName(RabbitMqServer.NewName("target"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true, MaxMessageSize = 4 * 1024 * 1024 }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(target), default);
        using var telemetry = new TelemetryRecorder(name => name == CairnDiagnostics.MessagingName);
        await sut.Broker.SendAsync(target, Numbered(0));
        Assert.Single(await sut.Broker.ReceiveAsync(target, Waiting, default).Bounded());
        var publishing = Assert.IsAssignableFrom<IConnection>(sut.Broker.Connection.OpenedPublishing);
        var shutdowns = new List<string>();
        publishing.ConnectionShutdownAsync += (_, e) =>
        {
            lock (shutdowns)
            {
                shutdowns.Add(e.ReplyText);
            }

            return Task.CompletedTask;
        };

        var big = tooLarge == "headers"
            ? Numbered(1) with { GroupKey = "g", Metadata = new Dictionary<string, string> { ["note"] = new string('x', 200_000) } }
            : new OutgoingMessage("test.blob", new byte[2 * 1024 * 1024]) { ContentType = "application/octet-stream", GroupKey = "g" };
        await sut.Broker.SendAsync(ledger, big);
        var kept = Assert.Single(await sut.Broker.ReceiveAsync(ledger, Waiting, default).Bounded());
        await sut.Broker.DeadLetterAsync(kept.Lease, "parked", null, default);
        Assert.Equal(1, await sut.Broker.RedriveAsync(ledger, new RedriveRequest { Target = target }, default));

        var outbox = RabbitMqMessageBroker.OutboxOf(target);
        await Wait.UntilAsync(async () => (await sut.Broker.Backend.GetStatsAsync(outbox, default)).DeadLettered == 1, "the relay dead-letters it in the outbox");
        var letter = Assert.Single(await sut.Broker.Backend.ListDeadLettersAsync(outbox, 0, 10, default));
        Assert.Equal(big.Id, letter.Message.Id);
        Assert.StartsWith("RabbitMQ cannot take it: ", letter.Reason, StringComparison.Ordinal);

        var health = await sut.Relay.CheckHealthAsync(new CairnHealthOptions(), default);
        Assert.Equal(HealthStatus.Degraded, health.Status);
        Assert.Contains($"the outbox of queue '{target}' holds 1 message(s) dead-lettered there", health.Description, StringComparison.Ordinal);
        telemetry.ReadGauges();
        Assert.Equal(1, telemetry.Last($"cairn.messaging.relay.backlog|queue={target}|state=dead_lettered"));

        // The relay goes on: the next message arrives, on the same publishing connection, and the dead letter stays put.
        await sut.Broker.SendAsync(target, Numbered(2));
        var next = Assert.Single(await sut.Broker.ReceiveAsync(target, Waiting, default).Bounded());
        Assert.Equal("{\"n\":2}", Encoding.UTF8.GetString(next.Message.Data.Span));
        Assert.Equal(1, (await sut.Broker.Backend.GetStatsAsync(outbox, default)).DeadLettered);
        lock (shutdowns)
        {
            Assert.Empty(shutdowns);
        }
    }

    /// <summary>
    /// The relay puts back an outbox's dead letters whose relay leases ran out, not those RabbitMQ cannot take, and
    /// looks past any number of the latter: one behind a first page of them (1,000) was never published again.
    /// </summary>
    [Fact]
    public async Task an_outbox_dead_letter_behind_a_page_of_unpublishable_ones_is_still_published_again()
    {
        const int unpublishable = 1000;
        await using var sut = await TransportUnderTest.StartAsync(configure: o => o with { RelayRescanInterval = TimeSpan.FromMilliseconds(100) });
        await sut.Relay.StopAsync(default);
        var queue = new QueueName(RabbitMqServer.NewName("behind"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var outbox = RabbitMqMessageBroker.OutboxOf(queue);

        // Before the relay runs again: 1,000 outbox dead letters RabbitMQ cannot take, then one whose relay leases ran out.
        var transaction = new MessageTransaction();
        for (var i = 0; i <= unpublishable; i++)
        {
            transaction.Send(outbox, Numbered(i));
        }

        await sut.Broker.Backend.CommitAsync(transaction, default);
        var settled = 0;
        while (settled <= unpublishable)
        {
            foreach (var delivery in await sut.Broker.Backend.ReceiveAsync(outbox, new ReceiveOptions { MaxMessages = 100 }, default))
            {
                var last = Encoding.UTF8.GetString(delivery.Message.Data.Span) == $"{{\"n\":{unpublishable}}}";
                await sut.Broker.Backend.DeadLetterAsync(delivery.Lease, last ? "its relay leases ran out" : RabbitMqOutboxRelay.UnpublishableReason + "too large", null, default);
                settled++;
            }
        }

        var relay = new RabbitMqOutboxRelay(sut.Broker);
        await relay.StartAsync(default);
        try
        {
            var received = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
            Assert.Equal($"{{\"n\":{unpublishable}}}", Encoding.UTF8.GetString(received.Message.Data.Span));
            Assert.Equal(1, received.Redrives); // put back as a redrive (rabbitmq.md)
            Assert.Equal(unpublishable, (await sut.Broker.Backend.GetStatsAsync(outbox, default)).DeadLettered);
        }
        finally
        {
            await relay.StopAsync(default);
        }
    }

    /// <summary>Counts, per queue, the stats read and dead-letter pages listed through it.</summary>
    private sealed class CountingBackend(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _counts = new();

        public int Count(string call, QueueName queue) => _counts.GetValueOrDefault(call + " " + queue.Value);

        public override Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
        {
            _counts.AddOrUpdate("stats " + queue.Value, 1, (_, n) => n + 1);
            return base.GetStatsAsync(queue, cancellationToken);
        }

        public override Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(QueueName queue, long afterSequence, int limit, CancellationToken cancellationToken)
        {
            _counts.AddOrUpdate("list " + queue.Value, 1, (_, n) => n + 1);
            return base.ListDeadLettersAsync(queue, afterSequence, limit, cancellationToken);
        }
    }

    /// <summary>Dead-letters every message of <paramref name="outbox"/> ready now, with <paramref name="reason"/>.</summary>
    private static async Task DeadLetterOutboxAsync(TransportUnderTest sut, QueueName outbox, int count, string reason)
    {
        var settled = 0;
        while (settled < count)
        {
            foreach (var delivery in await sut.Broker.Backend.ReceiveAsync(outbox, new ReceiveOptions { MaxMessages = 100 }, default))
            {
                await sut.Broker.Backend.DeadLetterAsync(delivery.Lease, reason, null, default);
                settled++;
            }
        }
    }

    /// <summary>
    /// An outbox whose dead letters are all ones RabbitMQ cannot take has nothing to put back: its rescans (here every
    /// 10 ms) go by the count of them rather than listing every page each time, and still see a dead letter that can be
    /// put back as soon as one comes, whatever its place among the others.
    /// </summary>
    [Fact]
    public async Task an_outbox_holding_only_dead_letters_rabbitmq_cannot_take_is_not_listed_at_every_rescan()
    {
        CountingBackend? counting = null;
        await using var sut = await TransportUnderTest.StartAsync(
            configure: o => o with { RelayRescanInterval = TimeSpan.FromMilliseconds(10) },
            backend: inner => counting = new CountingBackend(inner));
        await sut.Relay.StopAsync(default);
        var queue = new QueueName(RabbitMqServer.NewName("unpublishable"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var outbox = RabbitMqMessageBroker.OutboxOf(queue);

        // The first message is enqueued before the three RabbitMQ cannot take, and dead-lettered after them: it lies
        // ahead of them in the outbox's order.
        var transaction = new MessageTransaction();
        for (var i = 0; i < 4; i++)
        {
            transaction.Send(outbox, Numbered(i));
        }

        await sut.Broker.Backend.CommitAsync(transaction, default);
        var first = Assert.Single(await sut.Broker.Backend.ReceiveAsync(outbox, new ReceiveOptions { MaxMessages = 1 }, default));
        await DeadLetterOutboxAsync(sut, outbox, 3, RabbitMqOutboxRelay.UnpublishableReason + "too large");

        var relay = new RabbitMqOutboxRelay(sut.Broker);
        await relay.StartAsync(default);
        try
        {
            var rescans = counting!.Count("stats", outbox);
            await Wait.UntilAsync(() => counting.Count("stats", outbox) >= rescans + 30, "thirty rescans");
            var listed = counting.Count("list", outbox);
            Assert.True(listed is >= 1 and <= 2, $"the outbox's dead letters were listed {listed} times in thirty rescans");

            await sut.Broker.Backend.DeadLetterAsync(first.Lease, "its relay leases ran out", null, default);
            var received = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
            Assert.Equal("{\"n\":0}", Encoding.UTF8.GetString(received.Message.Data.Span));
            Assert.Equal(3, (await sut.Broker.Backend.GetStatsAsync(outbox, default)).DeadLettered);
        }
        finally
        {
            await relay.StopAsync(default);
        }
    }

    [Theory]
    [InlineData(nameof(RabbitMqOptions.RelayRescanInterval))]
    [InlineData(nameof(RabbitMqOptions.MaxReconnectDelay))]
    [InlineData(nameof(RabbitMqOptions.MaxMessageSize))]
    [InlineData(nameof(RabbitMqOptions.RelayLease))]
    public void a_setting_the_relay_cannot_keep_is_refused_naming_it(string setting)
    {
        var options = new RabbitMqOptions { Uri = new Uri("amqp://localhost/") };
        options = setting switch
        {
            nameof(RabbitMqOptions.RelayRescanInterval) => options with { RelayRescanInterval = TimeSpan.FromDays(60) },
            nameof(RabbitMqOptions.MaxReconnectDelay) => options with { MaxReconnectDelay = TimeSpan.FromDays(60) },
            nameof(RabbitMqOptions.RelayLease) => options with { RelayLease = TimeSpan.FromMilliseconds(500) },
            _ => options with { MaxMessageSize = 0 },
        };

        var refused = Assert.Throws<InvalidMessageException>(options.Validate);
        Assert.Contains(setting, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_delay_past_the_retention_is_refused_naming_the_queue_not_its_outbox()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("short"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { Retention = TimeSpan.FromHours(1) }, default);

        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.SendAsync(queue, Numbered(1) with { Delay = TimeSpan.FromHours(2) }));
        Assert.DoesNotContain(RabbitMqMessageBroker.OutboxPrefix, refused.Message, StringComparison.Ordinal);
        Assert.Contains($"queue '{queue}'", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A message RabbitMQ keeps refusing (a queue over its max-length) is tried again after pauses that double from
    /// ReconnectDelay: the loop's next take used to pick the returned message up at once, skipping the pause, and tried
    /// it about ten times a second, each try a backend write.
    /// </summary>
    [Fact]
    public async Task a_message_rabbitmq_keeps_refusing_is_tried_again_only_after_the_pauses()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri, o => o with { MaxReconnectDelay = TimeSpan.FromSeconds(10) });
        var queue = new QueueName(RabbitMqServer.NewName("refusing"));
        await RabbitMqServer.RunScriptAsync(
            "ctl", rabbit.Directory, "set_policy", "none", $"^{System.Text.RegularExpressions.Regex.Escape(sut.Broker.AmqpName(queue))}$",
            """{"max-length":1,"overflow":"reject-publish"}""", "--apply-to", "queues");
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        // A quorum queue refuses publishes once it is over its max-length.
        await sut.Broker.SendAsync(queue, Numbered(0));
        await Wait.UntilAsync(() => sut.Relay.Published == 1, "the first message is in the queue");
        await sut.Broker.SendAsync(queue, Numbered(1));
        await Wait.UntilAsync(() => sut.Relay.Published == 2, "the second message filled the queue over its length");
        await sut.Broker.SendAsync(queue, Numbered(2));
        await Wait.UntilAsync(() => sut.Relay.Returned > 0, "RabbitMQ refused the publish");

        // A window of time, not a wait for something: pauses of 0.2, 0.4, 0.8, 1.6 and 3.2 s allow at most 6 tries in 5 s.
        await Task.Delay(TimeSpan.FromSeconds(5));
        Assert.InRange(sut.Relay.Returned, 1, 6);
    }

    /// <summary>
    /// While RabbitMQ blocks publishing, a batch awaits its confirm longer than the relay's outbox lease. The lease is
    /// kept, so the row is not taken and published again once per lease (one send, several deliveries, from a single
    /// healthy process, when the alarm cleared).
    /// </summary>
    [Fact]
    public async Task a_message_sent_during_a_resource_alarm_longer_than_the_relay_lease_is_published_once()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri, o => o with { RelayLease = TimeSpan.FromSeconds(2) });
        var queue = new QueueName(RabbitMqServer.NewName("alarm-long"));
        await StartAlarmAfterOneMessageAsync(rabbit, sut, queue);
        try
        {

            // Three extensions: the confirm has been awaited for three lease halves, past the lease.
            await Wait.UntilAsync(() => sut.Relay.LeaseExtensions >= 3, "the relay keeps the batch's lease while the alarm lasts");
        }
        finally
        {
            await rabbit.CtlAsync("set_vm_memory_high_watermark", "0.9");
        }

        var copies = new List<string>();
        while (copies.Count < 2)
        {
            foreach (var delivery in await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded())
            {
                copies.Add(Encoding.UTF8.GetString(delivery.Message.Data.Span));
                await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
            }
        }

        // Nothing more comes: a copy published again would have been enqueued when the alarm cleared, before n:1 was.
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 10, Wait = TimeSpan.FromSeconds(1) }, default).Bounded());
        Assert.Equal(["{\"n\":0}", "{\"n\":1}"], copies.Order(StringComparer.Ordinal));

        // The relay counts n:1 as published once it has acknowledged it in the outbox, after RabbitMQ's confirm, which
        // may come after its delivery here.
        await Wait.UntilAsync(() => sut.Relay.Published >= 2, "the relay counted n:1 as published");
        Assert.Equal(2, sut.Relay.Published);
    }

    /// <summary>
    /// While RabbitMQ blocks publishing (a resource alarm) the relay's publishes get no confirm; stopping it (a host's
    /// shutdown) waited for them until the alarm cleared. It aborts the blocked publishing connection instead; the
    /// message waits in the outbox and is delivered once the alarm is over.
    /// </summary>
    [Fact]
    public async Task stopping_the_relay_while_rabbitmq_blocks_publishing_ends_at_once_and_loses_nothing()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("alarm-stop"));
        await StartAlarmAfterOneMessageAsync(rabbit, sut, queue);
        try
        {
            await sut.Relay.StopAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(1, sut.Relay.Published);
        }
        finally
        {
            await rabbit.CtlAsync("set_vm_memory_high_watermark", "0.9");
        }

        // Once the alarm is over, a relay started again over the same broker (on a new connection) delivers what waited.
        var relay = new RabbitMqOutboxRelay(sut.Broker);
        await relay.StartAsync(default);
        try
        {
            var received = new List<string>();
            while (received.Count < 2)
            {
                foreach (var delivery in await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded())
                {
                    received.Add(Encoding.UTF8.GetString(delivery.Message.Data.Span));
                    await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
                }
            }

            Assert.Equal(["{\"n\":0}", "{\"n\":1}"], received.Order(StringComparer.Ordinal));
        }
        finally
        {
            await relay.StopAsync(default);
        }
    }

    /// <summary>
    /// Declares the queue, has n:0 published, raises RabbitMQ's memory alarm and sends n:1, which waits for its confirm
    /// on the blocked connection. The caller lowers the alarm again.
    /// </summary>
    private static async Task StartAlarmAfterOneMessageAsync(OwnRabbitMq rabbit, TransportUnderTest sut, QueueName queue)
    {
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(0));
        await Wait.UntilAsync(() => sut.Relay.Published == 1, "the relay works");
        await rabbit.CtlAsync("set_vm_memory_high_watermark", "0");
        await sut.Broker.SendAsync(queue, Numbered(1));
        await Wait.UntilAsync(() => sut.Broker.Connection.PublishingBlocked is not null, "RabbitMQ blocked the publishing connection");
    }

    [Fact]
    public async Task a_group_key_on_a_standard_queue_survives_the_round_trip_as_on_every_backend()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("plain"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1) with { GroupKey = "customer-7" });
        await sut.Broker.SendAsync(queue, Numbered(2));

        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        var second = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal("customer-7", first.Message.GroupKey);
        Assert.Null(second.Message.GroupKey);
    }

    [Fact]
    public async Task a_release_whose_failure_has_no_stack_trace_does_not_keep_the_previous_failures()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("failures"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.ReleaseAsync(first.Lease, TimeSpan.Zero, new FailureInfo("System.InvalidOperationException", "first failure", "   at Somewhere()"), default);
        var second = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal("   at Somewhere()", second.LastFailure!.StackTrace);

        await sut.Broker.ReleaseAsync(second.Lease, TimeSpan.Zero, new FailureInfo("Billing.Declined", "card declined", null), default);
        var third = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal("card declined", third.LastFailure!.Message);
        Assert.Null(third.LastFailure.StackTrace);
    }
}
