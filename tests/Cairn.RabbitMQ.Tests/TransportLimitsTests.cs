using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// What RabbitMQ cannot take, met before it can stall anything: headers over a content-header frame, delays past its
/// largest message TTL, delay queues that expired or were deleted, foreign messages with headers Cairn cannot read,
/// and outbox rows the backend dead-lettered after their relay leases ran out.
/// </summary>
public sealed class TransportLimitsTests
{
    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static async Task<List<Delivery>> ReceiveAsync(IMessageBroker broker, QueueName queue, int count)
    {
        var received = new List<Delivery>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (received.Count < count && DateTime.UtcNow < deadline)
        {
            received.AddRange(await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = count - received.Count, Wait = TimeSpan.FromSeconds(1) }, default));
        }

        return received;
    }

    [Fact]
    public async Task a_send_whose_headers_could_not_fit_rabbitmqs_frame_is_refused_at_its_commit_and_the_relay_goes_on()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("headers"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        // 60 KB of metadata fits the queue's 256 KiB size limit, but not beside the rest in one 128 KiB header frame.
        var big = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.SendAsync(queue, Numbered(1) with { Metadata = new Dictionary<string, string> { ["note"] = new string('x', 60_000) } }));
        Assert.Contains("headers", big.Message, StringComparison.Ordinal);
        var key = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.SendAsync(queue, Numbered(2) with { Metadata = new Dictionary<string, string> { [new string('k', 250)] = "v" } }));
        Assert.Contains("255 bytes", key.Message, StringComparison.Ordinal);

        // Within the bound, and with a long failure on the way back, it goes through.
        await sut.Broker.SendAsync(queue, Numbered(3) with { Metadata = new Dictionary<string, string> { ["note"] = new string('x', 40_000) } });
        var first = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        await sut.Broker.ReleaseAsync(first.Lease, TimeSpan.Zero, new FailureInfo("Big", new string('m', 200_000), new string('s', 200_000)), default);
        var again = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        Assert.Equal(40_000, again.Message.Metadata["note"].Length);
        Assert.StartsWith("mmm", again.LastFailure!.Message, StringComparison.Ordinal);
        Assert.True(again.LastFailure.Message.Length <= AmqpMessageCodec.MaxFailureTextLength + 1);
        await sut.Broker.AcknowledgeAsync([again.Lease], default);
        Assert.Equal(0, sut.Relay.Returned);
    }

    [Fact]
    public async Task attributes_too_long_for_an_amqp_property_travel_in_headers_alone_and_a_content_type_too_long_is_refused()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("longprops"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        // Each is within Cairn's 256 characters, and over the 255 bytes of an AMQP short string in UTF-8.
        var correlation = new string('c', 256);
        var type = "order." + new string('日', 100);
        await sut.Broker.SendAsync(queue, Numbered(1) with { CorrelationId = correlation });
        await sut.Broker.SendAsync(queue, new OutgoingMessage(type, "{}"u8.ToArray()));
        var received = await ReceiveAsync(sut.Broker, queue, 2);
        Assert.Equal(2, received.Count);
        Assert.Contains(received, d => d.Message.CorrelationId == correlation);
        Assert.Contains(received, d => d.Message.Type == type);
        await sut.Broker.AcknowledgeAsync([.. received.Select(d => d.Lease)], default);

        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.SendAsync(queue, Numbered(2) with { ContentType = "application/" + new string('x', 250) + "+json" }));
        Assert.Contains("content type", refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, sut.Relay.Returned);
    }

    [Fact]
    public async Task a_publish_whose_headers_could_not_fit_is_refused_only_when_its_topic_feeds_a_queue_in_rabbitmq()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var topic = new TopicName(RabbitMqServer.NewName("bigpub"));
        var ledger = new QueueName(RabbitMqServer.NewName("ledger"));
        var queue = new QueueName(RabbitMqServer.NewName("inrabbit"));
        await sut.Broker.DeclareTopicAsync(topic, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var big = Numbered(1) with { GroupKey = "g", Metadata = new Dictionary<string, string> { ["note"] = new string('x', 60_000) } };

        // Fed only to a FIFO queue, which the backend keeps: taken.
        await sut.Broker.SubscribeAsync(new TopicSubscription(topic, "kept", ledger), default);
        Assert.Equal(1, (await sut.Broker.PublishAsync(topic, big)).MessagesEnqueued);

        await sut.Broker.SubscribeAsync(new TopicSubscription(topic, "relayed", queue), default);
        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.PublishAsync(topic, big with { Id = MessageId.New() }));
        Assert.Contains(topic.Value, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_release_on_the_last_allowed_receive_dead_letters_whatever_its_delay()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("lastone"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 1 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var delivery = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));

        await sut.Broker.ReleaseAsync(delivery.Lease, TimeSpan.FromDays(60), null, default);

        await Wait.UntilAsync(async () => (await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default)).Count == 1, "the message is dead-lettered");
    }

    [Fact]
    public async Task a_release_past_rabbitmqs_longest_delay_is_refused_and_the_lease_stays_held()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("toolong"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var delivery = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));

        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => sut.Broker.ReleaseAsync(delivery.Lease, TimeSpan.FromDays(60), null, default));

        Assert.Contains("49.7 days", refused.Message, StringComparison.Ordinal);
        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(99, 99)]
    [InlineData(100, 100)]
    [InlineData(101, 110)]
    [InlineData(1_234, 1_300)]
    [InlineData(9_999, 10_000)]
    [InlineData(10_001, 11_000)]
    [InlineData(61_000, 61_000)]
    [InlineData(123_456, 130_000)]
    public void a_delay_is_rounded_up_to_two_significant_digits(long ms, long queued)
    {
        Assert.Equal(queued, RabbitMqMessageBroker.DelayQueueMilliseconds(TimeSpan.FromMilliseconds(ms)));
    }

    [Fact]
    public async Task a_delay_queue_has_no_expiry_that_could_delete_it_with_messages_in_it()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("noexpiry"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 10 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        await sut.Broker.ReleaseAsync(first.Lease, TimeSpan.FromMilliseconds(300), null, default);
        Assert.Equal(first.Message.Id, Assert.Single(await ReceiveAsync(sut.Broker, queue, 1)).Message.Id);

        // RabbitMQ's x-expires counts neither publishes nor declarations of a quorum queue as use: one in steady use
        // expired with its messages. Declared with one, the queue is refused as having none.
        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeclarePassiveAsync(sut.Broker.DelayQueueName(queue, 300)));
        var arguments = sut.Broker.DelayQueueArguments(queue, 300);
        arguments["x-expires"] = 600_000;
        var refusal = await Assert.ThrowsAnyAsync<OperationInterruptedException>(() => RabbitMqServer.WithChannelAsync(channel => channel.QueueDeclareAsync(
            sut.Broker.DelayQueueName(queue, 300), durable: true, exclusive: false, autoDelete: false, arguments)));
        Assert.Contains("inequivalent arg 'x-expires'", refusal.ShutdownReason?.ReplyText, StringComparison.Ordinal);
        Assert.Contains("current is none", refusal.ShutdownReason?.ReplyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_delay_queue_deleted_behind_cairns_back_is_declared_again_by_the_next_release()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("delaygone"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 10 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var delay = TimeSpan.FromMilliseconds(300);
        var first = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        await sut.Broker.ReleaseAsync(first.Lease, delay, null, default);
        var second = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));

        // As an operator deleting idle delay queues may.
        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(sut.Broker.DelayQueueName(queue, 300)));

        // The next release finds no route, declares the queue again and publishes its copy there.
        await sut.Broker.ReleaseAsync(second.Lease, delay, null, default);
        var third = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        Assert.Equal(first.Message.Id, third.Message.Id);
        Assert.Equal(3, third.ReceiveCount);
        await sut.Broker.AcknowledgeAsync([third.Lease], default);
    }

    [Fact]
    public async Task a_redrive_to_a_queue_deleted_in_rabbitmq_behind_cairns_back_declares_it_again()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("gone"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var delivery = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        await sut.Broker.DeadLetterAsync(delivery.Lease, "failed", null, default);
        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(sut.Broker.AmqpName(queue)));

        Assert.Equal(1, await sut.Broker.RedriveAsync(queue, new RedriveRequest(), default));

        var again = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        Assert.Equal(delivery.Message.Id, again.Message.Id);
        await sut.Broker.AcknowledgeAsync([again.Lease], default);
    }

    [Theory]
    [InlineData("empty-id")]
    [InlineData("millisecond-timestamp")]
    public async Task a_foreign_message_whose_headers_cairn_cannot_read_is_dead_lettered_not_left_unsettled(string fault)
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("foreign"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var properties = new BasicProperties
        {
            DeliveryMode = DeliveryModes.Persistent,
            Headers = new Dictionary<string, object?>
            {
                [AmqpMessageCodec.Id] = fault == "empty-id" ? Guid.Empty.ToString() : Guid.NewGuid().ToString(),
                [AmqpMessageCodec.Type] = "foreign.event",
            },
        };
        if (fault == "millisecond-timestamp")
        {
            // A common mistake of other publishers: the AMQP timestamp in milliseconds, and no cloudEvents:time.
            properties.Timestamp = new AmqpTimestamp(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        }

        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync("", sut.Broker.AmqpName(queue), true, properties, "{}"u8.ToArray()).AsTask());
        await sut.Broker.SendAsync(queue, Numbered(1));

        var received = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(received.Message.Data.Span));
        await sut.Broker.AcknowledgeAsync([received.Lease], default);
        await Wait.UntilAsync(async () => (await sut.Broker.GetStatsAsync(queue, default)).DeadLettered == 1, $"the message with the {fault} is dead-lettered");
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
    }

    [Fact]
    public async Task an_outbox_row_the_backend_dead_lettered_after_its_relay_leases_ran_out_is_published_again()
    {
        await using var sut = await TransportUnderTest.StartAsync(configure: o => o with { RelayRescanInterval = TimeSpan.FromMilliseconds(200) });
        var queue = new QueueName(RabbitMqServer.NewName("once"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 1 }, default);
        await sut.Relay.StopAsync(default);
        await sut.Broker.SendAsync(queue, Numbered(1));

        // Another process's relay takes the row and dies before RabbitMQ confirms it; its lease runs out on the
        // queue's only allowed receive, so the backend's next look dead-letters the row in the outbox.
        var outbox = RabbitMqMessageBroker.OutboxOf(queue);
        Assert.Single(await sut.Broker.Backend.ReceiveAsync(outbox, new ReceiveOptions { Lease = TimeSpan.FromMilliseconds(1) }, default));
        await Wait.UntilAsync(async () => (await sut.Broker.Backend.ReceiveAsync(outbox, new ReceiveOptions(), default)).Count == 0 && (await sut.Broker.Backend.GetStatsAsync(outbox, default)).DeadLettered == 1, "the outbox row is dead-lettered in the backend");

        await sut.Relay.StartAsync(default);
        var received = Assert.Single(await ReceiveAsync(sut.Broker, queue, 1));
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(received.Message.Data.Span));
        Assert.Equal(0, (await sut.Broker.Backend.GetStatsAsync(outbox, default)).DeadLettered);
    }
}
