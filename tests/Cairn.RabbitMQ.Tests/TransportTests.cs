using System.Diagnostics;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Cairn.Sqlite;
using System.Net.Security;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

public sealed class TransportTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 10, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static async Task<IReadOnlyList<Delivery>> ReceiveAsync(IMessageBroker broker, QueueName queue, int count)
    {
        var received = new List<Delivery>();
        while (received.Count < count)
        {
            var batch = await broker.ReceiveAsync(queue, Waiting with { MaxMessages = count - received.Count }, default).Bounded();
            Assert.NotEmpty(batch);
            received.AddRange(batch);
        }

        return received;
    }

    [Fact]
    public async Task a_sent_message_reaches_rabbitmq_through_the_outbox_and_is_received_with_its_envelope()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("orders"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var sent = Numbered(7) with { Subject = "order-7", CorrelationId = "flow-1", Metadata = new Dictionary<string, string> { ["tenant"] = "t1" } };

        var result = await sut.Broker.SendAsync(queue, sent);
        var delivery = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));

        Assert.Equal(1, result.MessagesEnqueued);
        Assert.Equal(sent.Id, delivery.Message.Id);
        Assert.Equal("test.message", delivery.Message.Type);
        Assert.Equal("urn:test", delivery.Message.Source);
        Assert.Equal("order-7", delivery.Message.Subject);
        Assert.Equal("flow-1", delivery.Message.CorrelationId);
        Assert.Equal("t1", delivery.Message.Metadata["tenant"]);
        Assert.Equal("{\"n\":7}", Encoding.UTF8.GetString(delivery.Message.Data.Span));
        Assert.Equal(1, delivery.ReceiveCount);
        Assert.False(delivery.PreviousLeaseExpired);
        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
        await Assert.ThrowsAsync<LeaseLostException>(() => sut.Broker.AcknowledgeAsync([delivery.Lease], default));
        Assert.Equal(0, (await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default)).Visible);
    }

    [Fact]
    public async Task the_amqp_headers_carry_every_cloudevents_attribute_as_the_amqp_binding_names_them()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("headers"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var sent = Numbered(1) with
        {
            Subject = "order-1",
            DataSchema = "urn:schema:test.message:1",
            CorrelationId = "flow-9",
            CausationId = "cause-3",
            TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            Metadata = new Dictionary<string, string> { ["tenant"] = "t9" },
        };
        await sut.Broker.SendAsync(queue, sent);

        // Read as any AMQP client would, without Cairn.
        var factory = new ConnectionFactory { Uri = new Uri(RabbitMqServer.Uri) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        BasicGetResult? raw = null;
        await Wait.UntilAsync(async () => (raw = await channel.BasicGetAsync(queue.Value, autoAck: true)) is not null, "the relay published the message");

        var headers = raw!.BasicProperties.Headers!;
        string Header(string name) => Encoding.UTF8.GetString(Assert.IsType<byte[]>(headers[name]));
        Assert.Equal("1.0", Header("cloudEvents:specversion"));
        Assert.Equal(sent.Id.ToString(), Header("cloudEvents:id"));
        Assert.Equal("test.message", Header("cloudEvents:type"));
        Assert.Equal("urn:test", Header("cloudEvents:source"));
        Assert.Equal("order-1", Header("cloudEvents:subject"));
        Assert.Equal("urn:schema:test.message:1", Header("cloudEvents:dataschema"));
        Assert.Equal("flow-9", Header("cloudEvents:correlationid"));
        Assert.Equal("cause-3", Header("cloudEvents:causationid"));
        Assert.Equal(sent.TraceParent, Header("cloudEvents:traceparent"));
        Assert.Equal("t9", Header("cloudEvents:tenant"));
        Assert.True(DateTimeOffset.TryParse(Header("cloudEvents:time"), out _));
        Assert.Equal("application/json", raw.BasicProperties.ContentType);
        Assert.Equal(sent.Id.ToString(), raw.BasicProperties.MessageId);
        Assert.Equal("flow-9", raw.BasicProperties.CorrelationId);
        Assert.Equal(DeliveryModes.Persistent, raw.BasicProperties.DeliveryMode);
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(raw.Body.Span));
    }

    [Fact]
    public async Task a_publish_fans_out_to_the_subscribed_queues_whose_filter_rule_it_passes()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var topic = new TopicName(RabbitMqServer.NewName("orders"));
        var dutch = new QueueName(RabbitMqServer.NewName("dutch"));
        var all = new QueueName(RabbitMqServer.NewName("all"));
        await sut.Broker.DeclareTopicAsync(topic, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(dutch), default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(all), default);
        await sut.Broker.SubscribeAsync(new TopicSubscription(topic, "dutch", dutch, FilterRule.Parse("""{"data":{"country":["NL"]}}""")), default);
        await sut.Broker.SubscribeAsync(new TopicSubscription(topic, "all", all), default);

        var nl = await sut.Broker.PublishAsync(topic, new OutgoingMessage("order.placed", """{"country":"NL"}"""u8.ToArray()));
        var de = await sut.Broker.PublishAsync(topic, new OutgoingMessage("order.placed", """{"country":"DE"}"""u8.ToArray()));

        Assert.Equal(2, nl.MessagesEnqueued);
        Assert.Equal(1, de.MessagesEnqueued);
        var toAll = await ReceiveAsync(sut.Broker, all, 2);
        var toDutch = Assert.Single(await ReceiveAsync(sut.Broker, dutch, 1));
        Assert.Contains("NL", Encoding.UTF8.GetString(toDutch.Message.Data.Span), StringComparison.Ordinal);
        Assert.Empty(await sut.Broker.ReceiveAsync(dutch, new ReceiveOptions { Wait = TimeSpan.FromMilliseconds(300) }, default));
        Assert.Equal(2, toAll.Select(d => d.Message.Id).Distinct().Count());
        var subscriptions = await sut.Broker.ListSubscriptionsAsync(topic, default);
        Assert.Equal([all, dutch], subscriptions.Select(s => s.Queue).OrderBy(q => q == dutch));
    }

    [Fact]
    public async Task a_dead_lettered_message_keeps_its_reason_and_failure_and_is_redriven_to_its_queue()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("mail"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var sent = Numbered(3);
        await sut.Broker.SendAsync(queue, sent);
        var delivery = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        var failure = FailureInfo.From(new InvalidOperationException("no template"));

        await sut.Broker.DeadLetterAsync(delivery.Lease, "the template is missing", failure, default);

        var deadLetter = Assert.Single(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
        Assert.Equal(sent.Id, deadLetter.Message.Id);
        Assert.Equal("the template is missing", deadLetter.Reason);
        Assert.Equal(failure.Type, deadLetter.Failure?.Type);
        Assert.Equal("no template", deadLetter.Failure?.Message);
        Assert.Equal(1, deadLetter.Attempts);
        Assert.Equal(queue, deadLetter.Queue);
        Assert.NotNull(await sut.Broker.GetDeadLetterAsync(queue, sent.Id, default));
        Assert.Equal(1, (await sut.Broker.GetStatsAsync(queue, default)).DeadLettered);

        Assert.Equal(1, await sut.Broker.RedriveAsync(queue, new RedriveRequest(), default));

        var again = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        Assert.Equal(sent.Id, again.Message.Id);
        Assert.Equal(1, again.ReceiveCount);
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
        await sut.Broker.AcknowledgeAsync([again.Lease], default);
    }

    [Fact]
    public async Task a_message_released_on_its_last_allowed_receive_is_dead_lettered_with_the_attempts()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("retry"));
        using var telemetry = new TelemetryRecorder(name => name == CairnDiagnostics.MessagingName);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 2 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var failure = FailureInfo.From(new TimeoutException("slow"));

        var first = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        await sut.Broker.ReleaseAsync(first.Lease, TimeSpan.Zero, failure, default);
        var second = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        await sut.Broker.ReleaseAsync(second.Lease, TimeSpan.Zero, failure, default);

        Assert.Equal(2, second.ReceiveCount);
        Assert.Equal("slow", second.LastFailure?.Message);
        var deadLetter = Assert.Single(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
        Assert.Equal("it failed on each of its 2 allowed receives", deadLetter.Reason);
        Assert.Equal(2, deadLetter.Attempts);
        Assert.Equal(1, telemetry.Total($"cairn.messaging.dead_lettered|queue={queue}"));
        Assert.Equal(1, await sut.Broker.PurgeDeadLettersAsync(queue, [deadLetter.Message.Id], default));
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
    }

    [Fact]
    public async Task a_release_with_a_delay_is_delivered_again_only_after_the_delay()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("later"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(5));
        var first = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        var delay = TimeSpan.FromSeconds(2);

        var released = Stopwatch.StartNew();
        await sut.Broker.ReleaseAsync(first.Lease, delay, FailureInfo.From(new InvalidOperationException("busy")), default);
        var early = await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromMilliseconds(500) }, default);
        var again = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));

        Assert.Empty(early);
        Assert.True(released.Elapsed >= delay - TimeSpan.FromMilliseconds(50), $"delivered again after {released.Elapsed}");
        Assert.Equal(first.Message.Id, again.Message.Id);
        Assert.Equal(2, again.ReceiveCount);
        Assert.Equal("busy", again.LastFailure?.Message);
    }

    [Fact]
    public async Task a_lease_that_runs_out_gives_the_message_back_and_the_inbox_recognises_the_repeat()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("inbox"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting with { Lease = TimeSpan.FromMilliseconds(300) }, default).Bounded());

        // Handled and committed, but the acknowledgement never made it (the lease ran out first).
        var handled = await sut.Broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", first).Send(queue, Numbered(2)), default);
        var second = await ReceiveAsync(sut.Broker, queue, 2);
        var repeat = second.Single(d => d.Message.Id == first.Message.Id);
        var duplicate = await sut.Broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", repeat).Acknowledge(repeat.Lease).Send(queue, Numbered(3)), default);

        Assert.False(handled.AlreadyProcessed);
        Assert.True(duplicate.AlreadyProcessed);
        Assert.Equal(2, repeat.ReceiveCount);
        Assert.True(repeat.PreviousLeaseExpired);
        Assert.True(await sut.Broker.WasProcessedAsync("billing", first.Message.Id, default));
        await Assert.ThrowsAsync<LeaseLostException>(() => sut.Broker.AcknowledgeAsync([first.Lease], default));
        await Assert.ThrowsAsync<LeaseLostException>(() => sut.Broker.AcknowledgeAsync([repeat.Lease], default));
    }

    [Fact]
    public async Task a_commit_with_a_lost_lease_writes_nothing()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("lost"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var made = new LeaseToken(queue, 12345, 1);

        await Assert.ThrowsAsync<LeaseLostException>(() => sut.Broker.CommitAsync(
            new MessageTransaction().Acknowledge(made).Append(new AppendRequest(new StreamName("order-1"), ExpectedVersion.Any, [new EventData(MessageId.New(), "order.placed", "{}"u8.ToArray())])).Send(queue, Numbered(1)),
            default));

        Assert.Equal(0, (await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default)).Visible);
        Assert.Empty(await ((IEventReader)sut.Store).ReadAllAsync().ToListAsync());
    }

    [Fact]
    public async Task a_queue_s_gauges_over_rabbitmq_report_its_depth_but_no_age_rabbitmq_cannot_tell()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        using var instrumented = new InstrumentedMessageBroker(sut.Broker);
        var queue = new QueueName(RabbitMqServer.NewName("gauged"));
        await instrumented.DeclareQueueAsync(new QueueDefinition(queue), default);
        using var telemetry = new TelemetryRecorder(name => name == CairnDiagnostics.MessagingName);

        // Empty as this process sees it; another process may hold its messages, so no age rather than a wrong 0.
        telemetry.ReadGauges();
        Assert.Equal(0, telemetry.Last($"cairn.messaging.queue.depth|queue={queue}|state=visible"));
        Assert.Null(telemetry.Last($"cairn.messaging.queue.oldest_age|queue={queue}"));
        await instrumented.SendAsync(queue, Numbered(1));
        await Wait.UntilAsync(
            () =>
            {
                telemetry.ReadGauges();
                return telemetry.Last($"cairn.messaging.queue.depth|queue={queue}|state=visible") == 1;
            },
            "the message reaches RabbitMQ");

        // RabbitMQ does not tell how long its oldest message has waited.
        Assert.Null(telemetry.Last($"cairn.messaging.queue.oldest_age|queue={queue}"));
        Assert.False((await instrumented.GetStatsAsync(queue, default)).Exact);
    }

    [Fact]
    public async Task a_gauge_reading_while_rabbitmq_hangs_ends_within_its_timeout_and_leaves_the_queue_out()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        using var instrumented = new InstrumentedMessageBroker(sut.Broker);
        var queue = new QueueName(RabbitMqServer.NewName("hung"));
        await instrumented.DeclareQueueAsync(new QueueDefinition(queue), default);
        using var telemetry = new TelemetryRecorder(name => name == CairnDiagnostics.MessagingName);
        var depth = $"cairn.messaging.queue.depth|queue={queue}|state=visible";
        telemetry.ReadGauges();
        Assert.Equal(0, telemetry.Last(depth));

        await rabbit.FreezeAsync();
        try
        {
            // Two gauges read the queue, each waiting at most the statistics timeout (2 s); without it, each would wait
            // for RabbitMQ.Client's own time-out (20 s), and every metric of the process with it.
            var reading = Stopwatch.StartNew();
            telemetry.ReadGauges();
            Assert.InRange(reading.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(15));
            Assert.Null(telemetry.Last(depth));
        }
        finally
        {
            await rabbit.ThawAsync();
        }

        await Wait.UntilAsync(
            () =>
            {
                telemetry.ReadGauges();
                return telemetry.Last(depth) == 0;
            },
            "the queue is read again once RabbitMQ answers");
    }

    [Fact]
    public async Task a_fifo_queue_stays_in_the_backend_and_commits_with_the_queues_in_rabbitmq()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var ledger = new QueueName(RabbitMqServer.NewName("ledger"));
        var notices = new QueueName(RabbitMqServer.NewName("notices"));
        var topic = new TopicName(RabbitMqServer.NewName("entries"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true, MaxReceiveCount = 1 }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(notices), default);
        await sut.Broker.DeclareTopicAsync(topic, default);
        await sut.Broker.SubscribeAsync(new TopicSubscription(topic, "ledger", ledger), default);
        await sut.Broker.SubscribeAsync(new TopicSubscription(topic, "notices", notices), default);

        var entries = new[] { Numbered(1) with { GroupKey = "a" }, Numbered(10) with { GroupKey = "b" }, Numbered(2) with { GroupKey = "a" } };
        var published = await sut.Broker.CommitAsync(entries.Aggregate(new MessageTransaction(), (t, e) => t.Publish(topic, e)), default);
        Assert.Equal(6, published.MessagesEnqueued);

        // The FIFO copies are in the backend at once, one head per group, with no outbox and nothing in RabbitMQ.
        var heads = await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions { MaxMessages = 10 }, default);
        Assert.Equal([entries[0].Id, entries[1].Id], heads.Select(d => d.Message.Id));
        Assert.Null(await sut.Broker.Backend.GetQueueAsync(RabbitMqMessageBroker.OutboxOf(ledger), default));
        Assert.Equal(new QueueDefinition(ledger) { Fifo = true, MaxReceiveCount = 1 }, await sut.Broker.GetQueueAsync(ledger, default));
        var notes = await ReceiveAsync(sut.Broker, notices, 3);

        // One commit settles a FIFO lease in the backend's transaction, records the inbox, and acknowledges a RabbitMQ delivery.
        await sut.Broker.CommitAsync(new MessageTransaction().Acknowledge(heads[0].Lease).Acknowledge(notes[0].Lease).MarkProcessed("bookkeeper", heads[0]), default);
        Assert.True(await sut.Broker.WasProcessedAsync("bookkeeper", entries[0].Id, default));
        var next = Assert.Single(await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions { MaxMessages = 10 }, default));
        Assert.Equal(entries[2].Id, next.Message.Id);
        await sut.Broker.AcknowledgeAsync([next.Lease, notes[1].Lease, notes[2].Lease], default);

        // Released on its last allowed receive, group b's head is dead-lettered in the backend, and redriven to a queue in
        // RabbitMQ it goes out through that queue's outbox.
        await sut.Broker.ReleaseAsync(heads[1].Lease, TimeSpan.Zero, FailureInfo.From(new InvalidOperationException("no account")), default);
        var stats = await sut.Broker.GetStatsAsync(ledger, default);
        Assert.Equal((0, 0, 1), (stats.Visible, stats.Leased, stats.DeadLettered));
        Assert.Equal("no account", (await sut.Broker.GetDeadLetterAsync(ledger, entries[1].Id, default))?.Failure?.Message);
        Assert.Equal(1, await sut.Broker.RedriveAsync(ledger, new RedriveRequest { Target = notices }, default));
        var redriven = Assert.Single(await ReceiveAsync(sut.Broker, notices, 1));
        Assert.Equal((entries[1].Id, "no account"), (redriven.Message.Id, redriven.LastFailure?.Message));
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(ledger, 0, 10, default));

        // RabbitMQ's dead letters cannot take a place in a queue the backend keeps.
        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.RedriveAsync(notices, new RedriveRequest { Target = ledger }, default));
        Assert.Contains(ledger.Value, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_fifo_lease_is_settled_by_another_instance_and_a_foreign_token_takes_no_lease_of_this_one()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var ledger = new QueueName(RabbitMqServer.NewName("ledger"));
        var orders = new QueueName(RabbitMqServer.NewName("orders"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(orders), default);
        await sut.Broker.SendAsync(ledger, Numbered(1) with { GroupKey = "a" });
        await sut.Broker.SendAsync(orders, Numbered(2));
        var head = Assert.Single(await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions(), default));
        var order = Assert.Single(await ReceiveAsync(sut.Broker, orders, 1));

        // Another instance on the same backend, as after a restart, has never met the FIFO queue: it still settles there.
        await using (var other = new RabbitMqMessageBroker(sut.Broker.Backend, sut.Broker.Options))
        {
            await other.AcknowledgeAsync([head.Lease], default);
        }

        Assert.Equal(0, (await sut.Broker.GetStatsAsync(ledger, default)).Leased);

        // A token that only shares a sequence with a held lease is refused, and the held lease stays settleable.
        await Assert.ThrowsAsync<LeaseLostException>(() => sut.Broker.ReturnAsync(new LeaseToken(orders, order.Lease.Sequence, 7), default));
        await sut.Broker.AcknowledgeAsync([order.Lease], default);
    }

    [Fact]
    public async Task bad_input_is_refused_naming_the_field()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var unknown = new QueueName(RabbitMqServer.NewName("unknown"));

        var notFound = await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.SendAsync(unknown, Numbered(1)));
        var standard = new QueueName(RabbitMqServer.NewName("standard"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(standard), default);
        var fifo = await Assert.ThrowsAsync<QueueDefinitionConflictException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(standard) { Fifo = true }, default));
        var ordered = new QueueName(RabbitMqServer.NewName("ordered"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ordered) { Fifo = true }, default);
        var unordered = await Assert.ThrowsAsync<QueueDefinitionConflictException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(ordered), default));
        var uri = Assert.Throws<InvalidMessageException>(() => new RabbitMqOptions { Uri = new Uri("http://localhost/") }.Validate());
        var prefetch = Assert.Throws<InvalidMessageException>(() => new RabbitMqOptions { Uri = new Uri("amqp://localhost/"), RelayBatchSize = 0 }.Validate());
        var name = await Assert.ThrowsAsync<InvalidMessagingNameException>(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(new string('q', 120)), default));

        Assert.Equal(unknown, notFound.Queue);
        Assert.Equal(standard, fifo.Queue);
        Assert.Contains("standard queue", fifo.Message, StringComparison.Ordinal);
        Assert.Equal(ordered, unordered.Queue);
        Assert.Contains("FIFO queue", unordered.Message, StringComparison.Ordinal);
        Assert.Contains("Uri", uri.Message, StringComparison.Ordinal);
        Assert.Contains("RelayBatchSize", prefetch.Message, StringComparison.Ordinal);
        Assert.Equal("queue", name.Kind);
        var queues = await sut.Broker.ListQueuesAsync(default);
        Assert.Equal([ordered.Value, standard.Value], queues.Select(q => q.Name.Value).Order(StringComparer.Ordinal));
        Assert.True(queues.Single(q => q.Name == ordered).Fifo);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("node-b/vhost")]
    [InlineData("guest@node-b")]
    [InlineData("node-b:0")]
    [InlineData("node-b:99999")]
    [InlineData("amqp://node-b")]
    [InlineData("node-b:port")]
    [InlineData("::1")]
    public void a_cluster_node_that_is_not_a_host_with_an_optional_port_is_refused_naming_it(string node)
    {
        var ex = Assert.Throws<InvalidMessageException>(() => new RabbitMqOptions { Uri = new Uri("amqp://guest:guest@node-a:5673/"), ClusterNodes = ["node-c", node] }.Validate());
        Assert.Equal($"RabbitMqOptions.ClusterNodes has '{node}'; each node must be a host name or address (IPv6 in brackets), with a port (1-65535) or without.", ex.Message);
    }

    [Fact]
    public void the_nodes_are_the_addresss_host_then_each_cluster_node_once_with_the_addresss_port_by_default()
    {
        var options = new RabbitMqOptions { Uri = new Uri("amqps://guest:guest@node-a:5673/shop"), ClusterNodes = ["node-b", "node-c:5700", "node-a:5673", "[::1]", "node-b"] };
        options.Validate();
        Assert.Equal([("node-a", 5673), ("node-b", 5673), ("node-c", 5700), ("::1", 5673)], options.Nodes());
        Assert.Equal([("node-a", 5672)], new RabbitMqOptions { Uri = new Uri("amqp://node-a/"), ClusterNodes = ["node-a:5672", "NODE-A"] }.Nodes());
        Assert.Equal([("node-a", 5671), ("node-b", 5671)], new RabbitMqOptions { Uri = new Uri("amqps://node-a/"), ClusterNodes = ["node-b", "node-a:5671"] }.Nodes());
    }

    [Fact]
    public async Task two_processes_declaring_one_name_both_ways_at_once_cannot_both_succeed()
    {
        // The race: each declare checks before the other writes. A backend that hides its queues from the checks
        // stands for that interleaving; its own refusal to flip a queue's kind must then decide.
        await using var sut = await TransportUnderTest.StartAsync();
        var blind = new Blind(new SqliteMessageBroker(sut.Store));
        await using var first = new RabbitMqMessageBroker(blind, sut.Broker.Options);
        await using var second = new RabbitMqMessageBroker(blind, sut.Broker.Options);

        var standardFirst = new QueueName(RabbitMqServer.NewName("race"));
        await first.DeclareQueueAsync(new QueueDefinition(standardFirst), default);
        var fifoSecond = await Assert.ThrowsAsync<QueueDefinitionConflictException>(() => second.DeclareQueueAsync(new QueueDefinition(standardFirst) { Fifo = true }, default));
        Assert.Equal(standardFirst, fifoSecond.Queue);

        var fifoFirst = new QueueName(RabbitMqServer.NewName("race"));
        await first.DeclareQueueAsync(new QueueDefinition(fifoFirst) { Fifo = true }, default);
        var standardSecond = await Assert.ThrowsAsync<QueueDefinitionConflictException>(() => second.DeclareQueueAsync(new QueueDefinition(fifoFirst), default));
        Assert.Equal(fifoFirst, standardSecond.Queue);

        // Each stays what it was first declared as, and the marks are not listed as queues.
        Assert.False((await sut.Broker.GetQueueAsync(standardFirst, default))!.Fifo);
        Assert.True((await sut.Broker.GetQueueAsync(fifoFirst, default))!.Fifo);
        var listed = (await sut.Broker.ListQueuesAsync(default)).Where(q => q.Name == standardFirst || q.Name == fifoFirst).ToList();
        Assert.Equal(2, listed.Count);
    }

    [Fact]
    public async Task each_cluster_node_gets_the_addresss_tls_settings_and_its_own_server_name_checked()
    {
        var options = new RabbitMqOptions { Uri = new Uri("amqps://guest:guest@node-a/shop"), ClusterNodes = ["node-b:5700"] };
        await using var connection = new RabbitMqConnection(options);
        var (factory, shared) = connection.CreateFactory(publishing: false);
        Assert.Null(shared);

        // RabbitMQ.Client alone would accept a certificate for another name over amqps.
        Assert.Equal(SslPolicyErrors.RemoteCertificateNameMismatch, new ConnectionFactory { Uri = options.Uri }.Ssl.AcceptablePolicyErrors);
        Assert.Equal(SslPolicyErrors.None, factory.Ssl.AcceptablePolicyErrors);
        var endpoints = connection.Endpoints(factory, shared);
        Assert.Equal([("node-a", 5671), ("node-b", 5700)], endpoints.Select(e => (e.HostName, e.Port)));
        Assert.All(endpoints, e =>
        {
            Assert.True(e.Ssl.Enabled);
            Assert.Equal(e.HostName, e.Ssl.ServerName);
            Assert.Equal(SslPolicyErrors.None, e.Ssl.AcceptablePolicyErrors);
            Assert.Equal(factory.Ssl.Version, e.Ssl.Version);
        });
    }

    [Fact]
    public async Task the_applications_callback_may_accept_a_name_mismatch_again_and_give_every_node_one_server_name()
    {
        // A certificate the whole cluster shares, for a name none of the nodes is reached by.
        var options = new RabbitMqOptions
        {
            Uri = new Uri("amqps://guest:guest@10.0.0.1/"),
            ClusterNodes = ["10.0.0.2"],
            ConfigureConnectionFactory = f =>
            {
                f.Ssl.ServerName = "rabbit.internal";
                f.Ssl.AcceptablePolicyErrors |= SslPolicyErrors.RemoteCertificateNameMismatch;
                f.AutomaticRecoveryEnabled = false;
            },
        };
        await using var connection = new RabbitMqConnection(options);
        var (factory, shared) = connection.CreateFactory(publishing: true);
        Assert.Equal("rabbit.internal", shared);
        Assert.True(factory.AutomaticRecoveryEnabled, "recovery is turned on again after the callback");
        Assert.Equal("cairn (publishing)", factory.ClientProvidedName);
        Assert.All(connection.Endpoints(factory, shared), e =>
        {
            Assert.Equal("rabbit.internal", e.Ssl.ServerName);
            Assert.Equal(SslPolicyErrors.RemoteCertificateNameMismatch, e.Ssl.AcceptablePolicyErrors);
        });
    }

    [Theory]
    [InlineData("amqps://guest:guest@[::1]/", "[::2]")]
    [InlineData("amqps://guest:guest@bücher.example/", "rabbit-2.example")]
    public async Task nodes_named_as_ipv6_or_international_hosts_keep_their_own_server_names(string uri, string node)
    {
        var options = new RabbitMqOptions { Uri = new Uri(uri), ClusterNodes = [node] };
        await using var connection = new RabbitMqConnection(options);
        var (factory, shared) = connection.CreateFactory(publishing: false);
        Assert.Null(shared);
        Assert.All(connection.Endpoints(factory, shared), e => Assert.Equal(e.HostName, e.Ssl.ServerName));
    }

    /// <summary>A backend whose queue lookups find nothing.</summary>
    private sealed class Blind(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public override Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken) => Task.FromResult<QueueDefinition?>(null);
    }
}
