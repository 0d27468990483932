using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The consuming and dead-letter side at its edges: foreign messages (large headers, native AMQP values), redrives,
/// tokens of another broker instance, of no queue or of an unknown one.
/// </summary>
public sealed class ConsumingEdgeTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // A redriven message keeps the time it was first received, as every backend keeps it; its receive count starts
    // again.
    [Fact]
    public async Task a_redriven_message_keeps_the_time_it_was_first_received()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("redrivefirst"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.DeadLetterAsync(delivery.Lease, "poison", null, default).Bounded();
        Assert.Equal(delivery.FirstReceivedAt, Assert.Single(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default)).FirstReceivedAt);

        Assert.Equal(1, await sut.Broker.RedriveAsync(queue, new RedriveRequest(), default).Bounded());
        var again = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal(delivery.Message.Id, again.Message.Id);
        Assert.Equal(1, again.ReceiveCount);
        Assert.Equal(delivery.FirstReceivedAt, again.FirstReceivedAt);
        await sut.Broker.AcknowledgeAsync([again.Lease], default);
    }

    // A delivery whose lease ran out comes again knowing when it was first received, as on every backend: given back
    // with a basic.nack alone, which carries no headers, the next receive would take itself for the first.
    [Fact]
    public async Task after_a_lease_runs_out_the_next_receive_keeps_the_time_the_message_was_first_received()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("expiryfirst"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 2 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting with { Lease = TimeSpan.FromMilliseconds(200) }, default).Bounded());

        // Not settled: the lease runs out and the message comes again.
        var second = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal(first.Message.Id, second.Message.Id);
        Assert.Equal(2, second.ReceiveCount);
        Assert.True(second.PreviousLeaseExpired);
        Assert.Equal(first.FirstReceivedAt, second.FirstReceivedAt);
        await sut.Broker.AcknowledgeAsync([second.Lease], default);
    }

    // A message from another AMQP client may carry large application headers (RabbitMQ took it: it fit the frame).
    // Its dead letter is a copy with Cairn's headers added, which must still fit RabbitMQ's frame_max: over it,
    // RabbitMQ closes the publishing connection ("FRAME_ERROR … frame_too_large"), the delivery comes back, and it could
    // never be dead-lettered. A release and a dead letter on receipt publish such a copy too.
    [Fact]
    public async Task a_foreign_message_with_large_headers_can_still_be_dead_lettered()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("bigheaders"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var id = Guid.NewGuid();
        var headers = new Dictionary<string, object?>
        {
            ["cloudEvents:specversion"] = "1.0",
            ["cloudEvents:id"] = id.ToString(),
            ["cloudEvents:type"] = "com.example.thing",
            ["cloudEvents:source"] = "urn:other-app",
            ["app-trace"] = new string('t', 128_000),
        };
        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync(
            "",
            sut.Broker.AmqpName(queue),
            true,
            new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Persistent, Headers = headers },
            """{"n":1}"""u8.ToArray()).AsTask());

        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal(id, delivery.Message.Id.Value);
        await sut.Broker.DeadLetterAsync(delivery.Lease, "poison", new FailureInfo("Bad", new string('m', 4000), new string('s', 8000)), default).Bounded();

        await Wait.UntilAsync(async () => (await sut.Broker.GetStatsAsync(queue, default)).DeadLettered == 1, "the message is dead-lettered");
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(1) }, default).Bounded());
    }

    // A default lease token (its queue name missing), or a default queue name, is refused with a typed error, as the
    // backend refuses it: QueueNotFoundException for a lease, InvalidMessagingNameException for a queue, and
    // GetQueueAsync answers null.
    [Fact]
    public async Task a_default_lease_token_or_queue_name_is_refused_with_a_typed_error_not_a_null_reference()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("defaults"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var broker = sut.Broker;

        // As the backend itself refuses it:
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.Backend.CommitAsync(new MessageTransaction().Acknowledge(default), default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.Backend.AcknowledgeAsync([default(LeaseToken)], default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.AcknowledgeAsync([default(LeaseToken)], default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.ReleaseAsync(default, TimeSpan.Zero, null, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.ReturnAsync(default, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.ExtendLeaseAsync(default, TimeSpan.FromMinutes(1), default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.DeadLetterAsync(default, "poison", null, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.CommitAsync(new MessageTransaction().Acknowledge(default), default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.ReceiveAsync(default, new ReceiveOptions(), default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.GetStatsAsync(default, default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.ListDeadLettersAsync(default, 0, 10, default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.GetDeadLetterAsync(default, MessageId.New(), default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.PurgeDeadLettersAsync(default, null, default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.RedriveAsync(default, new RedriveRequest(), default));
        Assert.Null(await broker.GetQueueAsync(default, default));
    }

    // A lease token of a queue that does not exist is refused with QueueNotFoundException, as the backend refuses it, so
    // a typo in a queue name is told from a lease that ran out.
    [Fact]
    public async Task a_lease_token_of_an_unknown_queue_is_refused_as_the_backend_refuses_it()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var unknown = new QueueName(RabbitMqServer.NewName("nosuch"));
        var token = new LeaseToken(unknown, 1, 1);

        Assert.Equal(unknown, (await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.Backend.AcknowledgeAsync([token], default))).Queue);
        Assert.Equal(unknown, (await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.AcknowledgeAsync([token], default))).Queue);
        await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.ReleaseAsync(token, TimeSpan.Zero, null, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.ReturnAsync(token, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.ExtendLeaseAsync(token, TimeSpan.FromSeconds(1), default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => sut.Broker.DeadLetterAsync(token, "poison", null, default));
    }

    // CloudEvents' AMQP binding (3.1.3.2): an attribute may travel as a native AMQP value (boolean, long, timestamp) or
    // as its canonical string, and a receiver must read both. Cairn's metadata holds each extension attribute's
    // canonical string: "true", not .NET's "True"; RFC 3339 text, not an AmqpTimestamp's "((1764590400))".
    [Fact]
    public async Task a_foreign_cloudevents_extension_sent_as_a_native_amqp_value_is_read_as_its_canonical_string()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("nativeext"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var seen = DateTimeOffset.FromUnixTimeSeconds(1_764_590_400);
        var headers = new Dictionary<string, object?>
        {
            ["cloudEvents:specversion"] = "1.0",
            ["cloudEvents:id"] = Guid.NewGuid().ToString(),
            ["cloudEvents:type"] = "com.example.thing",
            ["cloudEvents:source"] = "urn:other-app",
            ["cloudEvents:sampled"] = true,
            ["cloudEvents:attempt"] = 3L,
            ["cloudEvents:seenat"] = new AmqpTimestamp(seen.ToUnixTimeSeconds()),
        };
        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync(
            "",
            sut.Broker.AmqpName(queue),
            true,
            new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Persistent, Headers = headers },
            """{"n":1}"""u8.ToArray()).AsTask());

        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
        var metadata = delivery.Message.Metadata;
        Assert.Equal("3", metadata["attempt"]);
        Assert.Equal("true", metadata["sampled"]);
        Assert.Equal(seen, DateTimeOffset.Parse(metadata["seenat"], System.Globalization.CultureInfo.InvariantCulture));
    }

    // A message whose lease ran out on its last allowed receive is dead-lettered by the next receive that reaches it,
    // which hands it to no one: the dead letter's last receive is the one whose lease ran out, as on every backend.
    [Fact]
    public async Task a_message_dead_lettered_after_its_last_lease_ran_out_keeps_the_times_of_its_real_receives()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("lastlease"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 1 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var only = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting with { Lease = TimeSpan.FromMilliseconds(200) }, default).Bounded());
        Assert.Equal(1, only.ReceiveCount);

        // Not settled: its one lease runs out, and a later receive dead-letters it rather than delivering it.
        DeadLetter? letter = null;
        await Wait.UntilAsync(
            async () =>
            {
                Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMilliseconds(200) }, default));
                letter = (await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default)).SingleOrDefault();
                return letter is not null;
            },
            "the message is dead-lettered");

        Assert.Contains("lease ran out", letter!.Reason, StringComparison.Ordinal);
        Assert.Equal(1, letter.Attempts);
        Assert.Equal(only.FirstReceivedAt, letter.LastReceivedAt);
        Assert.Equal(only.FirstReceivedAt, letter.FirstReceivedAt);

        // Redriven, it starts over: its first receive then is no lease run out.
        Assert.Equal(1, await sut.Broker.RedriveAsync(queue, new RedriveRequest(), default).Bounded());
        var again = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal((1, false), (again.ReceiveCount, again.PreviousLeaseExpired));
        await sut.Broker.AcknowledgeAsync([again.Lease], default);
    }

    // A lease token names a queue, a sequence and a receive count, no channel: two broker instances (two hosts in one
    // process, or a broker built again) must not issue equal tokens, or one's token would settle the other's delivery
    // and delete a message its handler still holds. Every backend refuses a token that is not the current holder's.
    [Fact]
    public async Task a_lease_token_issued_by_another_broker_instance_never_settles_this_instances_delivery()
    {
        await using var sut = await TransportUnderTest.StartAsync(configure: o => o with { Prefetch = 1 });
        await using var other = new RabbitMqMessageBroker(sut.Broker.Backend, sut.Broker.Options);
        var queue = new QueueName(RabbitMqServer.NewName("twoinstances"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendBatchAsync(queue, [Numbered(1), Numbered(2)]);

        var mine = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        var theirs = Assert.Single(await other.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.NotEqual(mine.Message.Id, theirs.Message.Id);

        await Assert.ThrowsAsync<LeaseLostException>(() => other.AcknowledgeAsync([mine.Lease], default));
        await other.AcknowledgeAsync([theirs.Lease], default);
        await sut.Broker.AcknowledgeAsync([mine.Lease], default);
    }
}
