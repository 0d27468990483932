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

    private static async Task WithChannelAsync(Func<IChannel, Task> use)
    {
        var factory = new ConnectionFactory { Uri = new Uri(RabbitMqServer.Uri) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await use(channel);
    }

    // The conformance suite (DeadLetterTests.a_redrive_back_to_the_source_keeps_the_id_and_history_and_resets_the_count)
    // requires a redriven message to keep its first receive time; the SQLite backend keeps first_received_ticks. The
    // RabbitMQ redrive removes cairn-first-received-at, so the next receive reports itself as the first.
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

    // A lease that runs out gives the delivery back with basic.nack (requeue): the message RabbitMQ delivers again has
    // no cairn-first-received-at (only a republished copy carries it), so each receive after a lease ran out reports
    // itself as the first. Every backend keeps the first receive's time (Delivery.FirstReceivedAt), and the dead letter
    // of a message whose leases kept running out then records the last receive as its first.
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
    // Dead-lettering it publishes a copy with Cairn's dead-letter headers added; when that no longer fits RabbitMQ's
    // frame_max, the publish fails (RabbitMQ closes the publishing connection), the delivery is given back, and it
    // can never be dead-lettered: a poison message that comes back for ever, taking the relay's connection down each time.
    // Observed: AlreadyClosedException "FRAME_ERROR ... {frame_too_large,140675,131064}" from DeadLetterAsync; the
    // publishing connection recovers and the message is delivered again (ReceiveCount 2). A release, a last-receive
    // dead letter and an unreadable foreign message's dead letter on receipt take the same path.
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
        await WithChannelAsync(channel => channel.BasicPublishAsync(
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

    // Bad input is refused with a typed error naming the fault (ARCHITECTURE.md, promise 10). A default lease token
    // (its queue name missing), or a default queue name, fails over RabbitMQ with a NullReferenceException from
    // GetQueueAsync (queue.Value.Length), where the SQLite backend it wraps refuses it with QueueNotFoundException (a
    // lease) or InvalidMessagingNameException (a queue), and answers GetQueueAsync with null.
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

    // The backend refuses a lease token of a queue that does not exist with QueueNotFoundException; over RabbitMQ the
    // same token fails as a lost lease, so a caller cannot tell a typo in a queue name from a lease that ran out.
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
    // as its canonical string, and a receiver MUST interpret both. Cairn's metadata is the canonical string of each
    // extension attribute, but the codec turns a boolean into .NET's "True" and an AMQP timestamp into
    // "((1764590400))" (AmqpTimestamp.ToString), where the canonical forms are "true" and RFC 3339 text.
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
        await WithChannelAsync(channel => channel.BasicPublishAsync(
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

    // A message whose lease ran out on its last allowed receive is dead-lettered by the next receive that reaches it.
    // That receive does not hand the message to anyone, yet its time is recorded as the dead letter's last receive
    // (MoveToDeadLettersAsync writes held.ReceivedAt, the time of the receive that found it over the limit). The SQLite
    // backend dead-letters such a row without touching last_received_ticks: its last receive is the one whose lease ran out.
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

    // A lease token over RabbitMQ is (queue, a counter this broker instance starts at 1, the receive count), so two
    // instances (two hosts in one process, or a broker built again after a restart) issue equal tokens for different
    // messages. A token from one then settles the other's delivery: here B acknowledges A's token and deletes the
    // message B's own handler holds, unhandled. Every backend refuses a token that is not the current holder's
    // (QueueTests.a_stale_lease_token_never_settles_a_later_message).
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
