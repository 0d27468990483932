using System.Text;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.Messaging;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// A RabbitMQ memory alarm, raised on a broker of the test's own: RabbitMQ blocks the connections that publish, and
/// stops reading from them. Consumers on a connection of their own go on acknowledging, so queues still drain.
/// </summary>
public sealed class ResourceAlarmTests
{
    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    [Fact]
    public async Task while_rabbitmq_blocks_publishing_consumers_still_drain_their_queue_and_the_check_says_why()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();

        // One delivery ahead at a time: a receive after the first gets a message only if the acknowledgement before it
        // reached RabbitMQ.
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri, o => o with { Prefetch = 1 });
        var queue = new QueueName(RabbitMqServer.NewName("alarm"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendBatchAsync(queue, Enumerable.Range(0, 5).Select(Numbered));
        await sut.RelayedAsync(queue, 5);

        async Task<HealthCheckResult> CheckAsync() => await sut.Relay.CheckHealthAsync(new CairnHealthOptions(), default);
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync()).Status);

        // A watermark of 0 raises the memory alarm at once; the next publish gets the publishing connection blocked.
        await rabbit.CtlAsync("set_vm_memory_high_watermark", "0");
        try
        {
            await sut.Broker.SendAsync(queue, Numbered(5));
            await Wait.UntilAsync(() => sut.Broker.Connection.PublishingBlocked is not null, "RabbitMQ blocked the publishing connection");
            // Degraded, not unhealthy: commands still commit, their sends waiting in the outbox.
            var blocked = await CheckAsync();
            Assert.Equal(HealthStatus.Degraded, blocked.Status);
            Assert.Contains("has blocked publishing (low on memory", blocked.Description, StringComparison.Ordinal);
            Assert.True((long)blocked.Data["outbox_waiting"] >= 1);

            // A redrive would publish: it is refused at once, saying why, rather than left to time out.
            var refused = await Assert.ThrowsAsync<RabbitMqBlockedException>(() => sut.Broker.RedriveAsync(queue, new RedriveRequest(), default));
            Assert.Equal("low on memory", refused.Reason);

            // A release publishes a copy, which waits while publishing is blocked; cancelled, it gives the original
            // back at once rather than leaving it unsettled.
            var one = new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(10) };
            var released = Assert.Single(await sut.Broker.ReceiveAsync(queue, one, default).Bounded());
            using (var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
            {
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sut.Broker.ReleaseAsync(released.Lease, TimeSpan.Zero, null, cancel.Token)).Bounded();
            }

            // The five messages already in RabbitMQ, the released one again among them, are received and acknowledged
            // one by one all the same.
            var drained = new List<string>();
            for (var i = 0; i < 5; i++)
            {
                var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, one, default).Bounded());
                drained.Add(Encoding.UTF8.GetString(delivery.Message.Data.Span));
                if (delivery.Message.Id == released.Message.Id)
                {
                    Assert.Equal(2, delivery.ReceiveCount);
                }

                await sut.Broker.AcknowledgeAsync([delivery.Lease], default).Bounded();
            }

            Assert.Equal(Enumerable.Range(0, 5).Select(n => $"{{\"n\":{n}}}"), drained.Order(StringComparer.Ordinal));
            Assert.NotNull(sut.Broker.Connection.PublishingBlocked);
        }
        finally
        {
            await rabbit.CtlAsync("set_vm_memory_high_watermark", "0.9");
        }

        // Once the alarm clears, the message sent meanwhile goes out of the outbox and the check is healthy again.
        await Wait.UntilAsync(() => sut.Broker.Connection.PublishingBlocked is null, "RabbitMQ unblocked the publishing connection");
        var last = Assert.Single(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) }, default).Bounded());
        Assert.Equal("{\"n\":5}", Encoding.UTF8.GetString(last.Message.Data.Span));
        await sut.Broker.AcknowledgeAsync([last.Lease], default);
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync()).Status);
    }

    [Fact]
    public async Task a_dead_letter_or_last_release_cancelled_while_rabbitmq_blocks_publishing_ends_and_gives_its_delivery_back()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("alarm-dlq"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 1 }, default);
        await sut.Broker.SendBatchAsync(queue, Enumerable.Range(0, 2).Select(Numbered));
        await sut.RelayedAsync(queue, 2);

        await rabbit.CtlAsync("set_vm_memory_high_watermark", "0");
        try
        {
            await sut.Broker.SendAsync(queue, Numbered(2));
            await Wait.UntilAsync(() => sut.Broker.Connection.PublishingBlocked is not null, "RabbitMQ blocked the publishing connection");
            var deliveries = await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 2, Wait = TimeSpan.FromSeconds(10) }, default).Bounded();
            Assert.Equal(2, deliveries.Count);

            // Both publish a copy to the dead-letter queue, which waits while publishing is blocked; cancelled, each
            // ends at once and gives its delivery back rather than leaving it unsettled.
            using (var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
            {
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sut.Broker.DeadLetterAsync(deliveries[0].Lease, "invalid", null, cancel.Token)).Bounded();
            }

            using (var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
            {
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sut.Broker.ReleaseAsync(deliveries[1].Lease, TimeSpan.Zero, null, cancel.Token)).Bounded();
            }

            Assert.Equal(0, (await sut.Broker.GetStatsAsync(queue, default)).DeadLettered);
        }
        finally
        {
            await rabbit.CtlAsync("set_vm_memory_high_watermark", "0.9");
        }
    }

    [Fact]
    public async Task while_rabbitmq_blocks_publishing_deliveries_to_dead_letter_are_held_and_the_receive_goes_on_to_the_others()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("poison"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        // Two messages no Cairn reader can read (not CloudEvents), each ahead of one of Cairn's: a receive dead-letters
        // them, which publishes a copy to the dead-letter queue.
        var factory = new ConnectionFactory { Uri = new Uri(rabbit.Uri) };
        await using (var connection = await factory.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
        {
            var amqpName = sut.Broker.AmqpName(queue);
            await channel.BasicPublishAsync("", amqpName, true, new BasicProperties { DeliveryMode = DeliveryModes.Persistent }, "not a cloud event"u8.ToArray());
            await sut.Broker.SendAsync(queue, Numbered(1));
            await sut.RelayedAsync(queue, 2);
            await channel.BasicPublishAsync("", amqpName, true, new BasicProperties { DeliveryMode = DeliveryModes.Persistent }, "nor this"u8.ToArray());
            await sut.Broker.SendAsync(queue, Numbered(2));
            await sut.RelayedAsync(queue, 4);
        }

        // Nothing publishes after the alarm is raised, so RabbitMQ has not told Cairn yet that publishing is blocked:
        // the receive learns it only by trying to dead-letter the first unreadable message.
        await rabbit.CtlAsync("set_vm_memory_high_watermark", "0");
        try
        {
            Assert.Null(sut.Broker.Connection.PublishingBlocked);
            var received = new List<string>();
            await ReceiveAsync().Bounded();
            async Task ReceiveAsync()
            {
                while (received.Count < 2)
                {
                    foreach (var delivery in await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 2, Wait = TimeSpan.FromSeconds(10) }, default))
                    {
                        received.Add(Encoding.UTF8.GetString(delivery.Message.Data.Span));
                        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
                    }
                }
            }

            // Both of Cairn's are received and acknowledged behind the unreadable ones, which are held, unsettled, and
            // counted with this process's leases.
            Assert.Equal(["{\"n\":1}", "{\"n\":2}"], received.Order(StringComparer.Ordinal));
            Assert.NotNull(sut.Broker.Connection.PublishingBlocked);
            var during = await sut.Broker.GetStatsAsync(queue, default);
            Assert.Equal(0, during.DeadLettered);
            Assert.Equal(2, during.Leased);
            await sut.Broker.SendAsync(queue, Numbered(3));
        }
        finally
        {
            await rabbit.CtlAsync("set_vm_memory_high_watermark", "0.9");
        }

        // Once publishing is unblocked, the held deliveries are dead-lettered, and the message sent meanwhile arrives.
        await Wait.UntilAsync(async () => (await sut.Broker.GetStatsAsync(queue, default)).DeadLettered == 2, "the held deliveries are dead-lettered");
        var last = Assert.Single(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) }, default).Bounded());
        Assert.Equal("{\"n\":3}", Encoding.UTF8.GetString(last.Message.Data.Span));
        await sut.Broker.AcknowledgeAsync([last.Lease], default);

        // Visible counts the outbox's messages in flight too, and the relay acknowledges n:3 in the outbox only once
        // RabbitMQ's confirm is back, which may come after the message was received here.
        await Wait.UntilAsync(
            async () => await sut.Broker.GetStatsAsync(queue, default) is { Visible: 0, Leased: 0 },
            "the queue holds nothing visible or leased once the relay acknowledged n:3 in the outbox");
    }
}
