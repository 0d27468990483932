using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

public sealed class AcknowledgementTests
{
    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static async Task<List<Delivery>> ReceiveAsync(IMessageBroker broker, QueueName queue, int count)
    {
        var received = new List<Delivery>();
        while (received.Count < count)
        {
            var batch = await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = count - received.Count, Wait = TimeSpan.FromSeconds(20) }, default).Bounded();
            Assert.NotEmpty(batch);
            received.AddRange(batch);
        }

        return received;
    }

    [Fact]
    public async Task acknowledging_some_of_several_deliveries_in_any_order_never_acknowledges_an_unacknowledged_one()
    {
        var queue = new QueueName(RabbitMqServer.NewName("acks"));
        List<MessageId> unacknowledged;
        await using (var first = await TransportUnderTest.StartAsync())
        {
            await first.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
            await first.Broker.SendBatchAsync(queue, [.. Enumerable.Range(0, 10).Select(Numbered)]);
            // In the order RabbitMQ delivered them, so in the order of their delivery tags.
            var held = await ReceiveAsync(first.Broker, queue, 10);
            async Task AckAsync(params int[] indexes) => await first.Broker.AcknowledgeAsync([.. indexes.Select(i => held[i].Lease)], default);

            await AckAsync(2, 3); // above the lowest unsettled tags: one ack each
            await AckAsync(5, 1, 0); // 0 and 1 are the lowest unsettled: one multiple ack up to 1, which must not reach 4
            await AckAsync(8, 7); // 4 and 6 below them are unsettled
            unacknowledged = [held[4].Message.Id, held[6].Message.Id, held[9].Message.Id];

            // The channel is still open (a wrong multiple ack would have closed it): a new delivery is acknowledged.
            await first.Broker.SendAsync(queue, Numbered(10));
            var late = await ReceiveAsync(first.Broker, queue, 1);
            await first.Broker.AcknowledgeAsync([late[0].Lease], default);
        }

        // A consumer restarted: RabbitMQ delivers again exactly the three that were never acknowledged.
        await using var second = await TransportUnderTest.StartAsync();
        await second.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var again = await ReceiveAsync(second.Broker, queue, 3);
        Assert.Equal(unacknowledged.Select(id => id.ToString()).Order(StringComparer.Ordinal), again.Select(d => d.Message.Id.ToString()).Order(StringComparer.Ordinal));
        Assert.All(again, d => Assert.True(d.PreviousLeaseExpired));
        await second.Broker.AcknowledgeAsync([.. again.Select(d => d.Lease)], default);
        Assert.Empty(await second.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMilliseconds(500) }, default));
    }
}
