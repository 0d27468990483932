using System.Text;
using System.Text.RegularExpressions;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

public sealed class RelayTests
{
    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

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
        const int Total = 200;
        var sent = Enumerable.Range(0, Total).Select(Numbered).ToList();

        await sut.Broker.SendBatchAsync(queue, sent);
        await Wait.UntilAsync(() => sut.Relay.Returned > 0, "RabbitMQ refused some publishes and the relay returned them to the outbox");
        var outbox = await sut.Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default);
        Assert.True(outbox.Visible + outbox.Leased > 0, "the refused messages wait in the outbox");

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
    }
}
