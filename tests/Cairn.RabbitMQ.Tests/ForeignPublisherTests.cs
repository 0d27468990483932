using Cairn.Conformance.Support;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>CloudEvents published into Cairn's queues by another AMQP client: what Cairn reads, and what it cannot.</summary>
public sealed class ForeignPublisherTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(10) };

    private static Task PublishAsync(TransportUnderTest sut, QueueName queue, Dictionary<string, object?> headers) =>
        RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync(
            "",
            sut.Broker.AmqpName(queue),
            true,
            new BasicProperties { ContentType = "application/json", DeliveryMode = DeliveryModes.Persistent, Headers = headers },
            """{"n":1}"""u8.ToArray()).AsTask());

    // CloudEvents' time is optional, and the AMQP binding may carry it as an AMQP timestamp. Such a message has no
    // cairn-enqueued-at: how long it has waited counts from its first receive, not from its event's time (which said
    // 1970 when absent, so the message was dropped as past its retention, neither delivered nor dead-lettered).
    [Theory]
    [InlineData("no time")]
    [InlineData("time as an AMQP timestamp")]
    [InlineData("time of an event 30 days old")]
    public async Task a_cloudevent_without_cairns_enqueued_at_is_delivered(string time)
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("foreign"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.Zero }, default));

        var id = Guid.NewGuid();
        var sentAt = DateTimeOffset.UtcNow;
        var headers = new Dictionary<string, object?>
        {
            ["cloudEvents:specversion"] = "1.0",
            ["cloudEvents:id"] = id.ToString(),
            ["cloudEvents:type"] = "com.example.thing",
            ["cloudEvents:source"] = "urn:other-app",
        };
        var eventTime = time switch
        {
            "time as an AMQP timestamp" => DateTimeOffset.FromUnixTimeSeconds(sentAt.ToUnixTimeSeconds()),
            "time of an event 30 days old" => sentAt.AddDays(-30),
            _ => (DateTimeOffset?)null,
        };
        if (time == "time as an AMQP timestamp")
        {
            headers["cloudEvents:time"] = new AmqpTimestamp(sentAt.ToUnixTimeSeconds());
        }
        else if (eventTime is { } old)
        {
            headers["cloudEvents:time"] = old.ToString("O");
        }

        await PublishAsync(sut, queue, headers);

        var received = await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded();
        var stats = await sut.Broker.GetStatsAsync(queue, default);
        Assert.True(received.Count == 1, $"the CloudEvent was not received ({time}); the queue holds {stats.Visible} visible and {stats.DeadLettered} dead-lettered");
        var message = received[0].Message;
        Assert.Equal(id, message.Id.Value);
        if (eventTime is { } expected)
        {
            Assert.Equal(expected, message.Time);
        }
        else
        {
            // No time of its own: the time it was first received here stands in.
            Assert.InRange(message.Time, sentAt.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
        }

        Assert.InRange(received[0].EnqueuedAt, sentAt.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));

        // Given back for a retry, it keeps the time it was first received as its enqueued time.
        await sut.Broker.ReleaseAsync(received[0].Lease, TimeSpan.Zero, null, default);
        var again = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal(received[0].EnqueuedAt, again.EnqueuedAt);
        Assert.Equal(message.Time, again.Message.Time);
    }

    // A delivery Cairn cannot read is dead-lettered as unreadable, its reason in cairn-dead-letter-reason: the one clue an
    // operator gets must name the fault. An id that is not a GUID (the AMQP binding's own example is "1234-1234-1234")
    // was reported as a missing id or type header.
    [Fact]
    public async Task a_cloudevent_whose_id_is_not_a_guid_is_dead_lettered_with_a_reason_naming_its_id()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("foreignid"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.Zero }, default));

        await PublishAsync(sut, queue, new Dictionary<string, object?>
        {
            ["cloudEvents:specversion"] = "1.0",
            ["cloudEvents:id"] = "1234-1234-1234",
            ["cloudEvents:type"] = "com.example.someevent",
            ["cloudEvents:source"] = "/mycontext/subcontext",
            ["cloudEvents:time"] = DateTimeOffset.UtcNow.ToString("O"),
        });
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(2) }, default).Bounded());

        string? reason = null;
        await RabbitMqServer.WithChannelAsync(async channel =>
        {
            BasicGetResult? got = null;
            await Wait.UntilAsync(async () => (got = await channel.BasicGetAsync(sut.Broker.DeadLettersIn(queue), autoAck: true)) is not null, "the unreadable message reached the dead-letter queue");
            reason = AmqpMessageCodec.GetString(got!.BasicProperties.Headers, AmqpMessageCodec.DeadLetterReason);
        });

        Assert.Equal("the message is not a CloudEvent in AMQP's binary mode that Cairn can read: its cloudEvents:id '1234-1234-1234' is not a GUID other than zero, as Cairn's message ids are", reason);
    }
}
