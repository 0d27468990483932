using System.Text;
using Cairn.Conformance.Support;
using Cairn.Messaging;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// A reader writes the acknowledgements that come together as one <c>basic.ack</c> with <c>multiple</c> set for the run
/// of deliveries all settled, and one by one above a delivery still held. RabbitMQ closes a channel on a tag
/// acknowledged twice, so each delivery must be settled once, whatever order the handlers finish in.
/// </summary>
public sealed class AcknowledgementTests
{
    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static string Text(Delivery delivery) => Encoding.UTF8.GetString(delivery.Message.Data.Span);

    /// <summary>
    /// Receives until <paramref name="count"/> messages came, bounded as a whole: a message acknowledged by mistake never
    /// comes, and the test fails rather than waits.
    /// </summary>
    private static Task<List<Delivery>> ReceiveCountAsync(RabbitMqMessageBroker broker, QueueName queue, int count, TimeSpan? lease = null)
    {
        return UntilAsync().Bounded();

        async Task<List<Delivery>> UntilAsync()
        {
            var received = new List<Delivery>();
            while (received.Count < count)
            {
                received.AddRange(await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = count - received.Count, Wait = TimeSpan.FromSeconds(5), Lease = lease }, default));
            }

            return received;
        }
    }

    [Fact]
    public async Task acknowledgements_in_any_order_and_around_a_delivery_given_back_settle_each_delivery_once_on_one_channel()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("acks"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendBatchAsync(queue, Enumerable.Range(1, 6).Select(Numbered));

        Task<List<Delivery>> ReceiveAsync(int count, TimeSpan? lease = null) => ReceiveCountAsync(sut.Broker, queue, count, lease);

        Task AcknowledgeAsync(params Delivery[] deliveries) => sut.Broker.AcknowledgeAsync([.. deliveries.Select(d => d.Lease)], default).Bounded();

        var first = await ReceiveAsync(2);
        var expiring = Assert.Single(await ReceiveAsync(1, TimeSpan.FromMilliseconds(200)));
        var rest = await ReceiveAsync(3);
        Assert.Equal(["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}", "{\"n\":5}", "{\"n\":6}"], first.Concat([expiring]).Concat(rest).Select(Text));
        var channel = sut.Broker.ReaderChannelOf(queue);

        // The last and the fourth in one call, then the first: the second and the third are still held.
        await AcknowledgeAsync(rest[2], rest[0]);
        await AcknowledgeAsync(first[0]);

        // The third's lease runs out: it is given back, and delivered again.
        var again = Assert.Single(await ReceiveAsync(1));
        Assert.Equal("{\"n\":3}", Text(again));
        Assert.Equal(2, again.ReceiveCount);
        await AcknowledgeAsync(first[1], rest[1]);
        await AcknowledgeAsync(again);

        // A message sent now comes on the same channel: RabbitMQ would have closed it, before delivering anything more,
        // had a tag been acknowledged twice or one been unknown.
        await sut.Broker.SendAsync(queue, Numbered(7));
        var seventh = Assert.Single(await ReceiveAsync(1));
        Assert.Equal("{\"n\":7}", Text(seventh));
        Assert.Same(channel, sut.Broker.ReaderChannelOf(queue));
        await AcknowledgeAsync(seventh);

        // The relay takes the seventh off the outbox once RabbitMQ has confirmed it, which may come after its delivery.
        await Wait.UntilAsync(
            async () => await sut.Broker.GetStatsAsync(queue, default) is { Visible: 0, Leased: 0 },
            "nothing is left in the queue, the outbox or this process's leases");
    }

    [Fact]
    public async Task after_a_dropped_connection_a_buffered_message_is_counted_visible_once()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("stats"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.Zero }, default).Bounded());
        await sut.Broker.SendAsync(queue, new OutgoingMessage("test.message", Encoding.UTF8.GetBytes("{\"n\":1}")));
        await Wait.UntilAsync(() => sut.Broker.BufferedOf(queue) == 1, "message 1 buffered by the reader");

        // The outbox keeps a message until RabbitMQ confirms it, which may come after its delivery: until then the
        // message is counted in both.
        await Wait.UntilAsync(async () => (await sut.Broker.GetStatsAsync(queue, default)).Visible == 1, "the buffered message is counted visible once");

        // The old channel's copy stays in the buffer until a receive skips it; RabbitMQ delivers the message again.
        // The loss is awaited first: until the client has seen the close, the old connection still reads as open.
        var losses = sut.Broker.Connection.ConsumingLosses;
        await rabbit.CtlAsync("close_all_connections", "test");
        await Wait.UntilAsync(() => sut.Broker.Connection.ConsumingLosses > losses, "the consuming connection's loss is seen");
        await Wait.UntilAsync(() => sut.Broker.Connection.ConsumingIsOpen, "the consuming connection recovered");
        await Wait.UntilAsync(() => sut.Broker.BufferedOf(queue) == 1, "the recovered channel delivered it again");

        // RabbitMQ's own count and the buffer are read apart, so a moment may show the message in both (the stats are
        // not exact); once RabbitMQ's count has caught up, it is counted once. Counting the old channel's copy kept it
        // at two.
        await Wait.UntilAsync(async () => (await sut.Broker.GetStatsAsync(queue, default)).Visible == 1, "the message is counted visible once");
        Assert.Single(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.Zero }, default).Bounded());
    }

    private static Task Recovered(global::RabbitMQ.Client.IConnection connection)
    {
        var recovered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.RecoverySucceededAsync += (_, _) =>
        {
            recovered.TrySetResult();
            return Task.CompletedTask;
        };
        return recovered.Task;
    }

    [Fact]
    public async Task after_the_connection_recovers_the_reader_still_writes_runs_of_acknowledgements_as_one()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("recovered"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        async Task SettleThreeAsync(int from)
        {
            await sut.Broker.SendBatchAsync(queue, Enumerable.Range(from, 3).Select(Numbered));
            var received = await ReceiveCountAsync(sut.Broker, queue, 3);
            Assert.Equal(Enumerable.Range(from, 3).Select(n => $"{{\"n\":{n}}}"), received.Select(Text));
            await sut.Broker.AcknowledgeAsync([.. received.Select(d => d.Lease)], default).Bounded();
        }

        await SettleThreeAsync(1);
        var channel = sut.Broker.ReaderChannelOf(queue);
        var before = sut.Broker.MultipleAcknowledgementsOf(queue);
        Assert.True(before >= 1, "the first three were acknowledged in order: at least one acknowledgement with multiple");

        // The first three are confirmed before the connections close: a confirm the close cut off would send one of them
        // again, after the next three. And the next three are sent once both connections are back: one published on the
        // publishing channel while it recovers is tried again after the others. Either way RabbitMQ would deliver them
        // in another order than sent, which no queue in RabbitMQ promises after a failure.
        await Wait.UntilAsync(
            async () => await sut.Broker.GetStatsAsync(queue, default) is { Visible: 0, Leased: 0 },
            "the first three are confirmed and settled");

        // RabbitMQ.Client numbers the recovered channel's deliveries on from the last tag it saw; the reader's count of
        // settled deliveries starts there, so runs are still acknowledged as one.
        var generations = sut.Broker.ChannelGenerationsOf(queue);
        var recovered = new[] { await sut.Broker.Connection.GetAsync(default), sut.Broker.Connection.OpenedPublishing! }.Select(Recovered).ToList();
        await rabbit.CtlAsync("close_all_connections", "test");
        await Task.WhenAll(recovered).Bounded();
        await Wait.UntilAsync(() => sut.Broker.ChannelGenerationsOf(queue) > generations, "the reader's consumer recovered");
        await SettleThreeAsync(4);

        // The recovery of the reader's consumer moved its generation on (awaited above), so a delivery the closed
        // channel's dispatcher handed over late could not be settled on the recovered one.
        Assert.True(sut.Broker.MultipleAcknowledgementsOf(queue) > before, "an acknowledgement with multiple after the recovery");
        Assert.Same(channel, sut.Broker.ReaderChannelOf(queue));
        await Wait.UntilAsync(
            async () => await sut.Broker.GetStatsAsync(queue, default) is { Visible: 0, Leased: 0 },
            "nothing is left in the queue, the outbox or this process's leases");
    }

    [Fact]
    public async Task deliveries_of_the_recovered_channel_that_come_before_the_old_channel_is_reported_closed_are_handled_once_on_the_same_reader()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("late-shutdown"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        // RabbitMQ.Client runs a connection's shutdown handlers in turn, and the recovery goes on meanwhile. This handler,
        // registered before the reader's channel opens and so run before the channel is told of the shutdown, holds that
        // report back until the recovered channel has delivered: the order a slow handler or a starved thread pool gives.
        var connection = await sut.Broker.Connection.GetAsync(default);
        var recovered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var holding = 0;
        connection.RecoverySucceededAsync += (_, _) =>
        {
            recovered.TrySetResult();
            return Task.CompletedTask;
        };
        connection.ConnectionShutdownAsync += async (_, _) =>
        {
            if (Interlocked.Exchange(ref holding, 1) == 0)
            {
                await Task.WhenAny(release.Task, Task.Delay(TimeSpan.FromSeconds(60)));
            }
        };

        await sut.Broker.SendBatchAsync(queue, Enumerable.Range(1, 3).Select(Numbered));
        var before = await ReceiveCountAsync(sut.Broker, queue, 3);
        await sut.Broker.AcknowledgeAsync([.. before.Select(d => d.Lease)], default).Bounded();
        var channel = sut.Broker.ReaderChannelOf(queue);

        await rabbit.CtlAsync("close_all_connections", "test");
        await recovered.Task.Bounded();
        await sut.Broker.SendBatchAsync(queue, Enumerable.Range(4, 3).Select(Numbered));
        await Wait.UntilAsync(() => sut.Broker.BufferedOf(queue) == 3, "the recovered channel delivered the three to the reader");
        Assert.Equal(1, Volatile.Read(ref holding)); // the old channel's shutdown is still held back
        release.SetResult();

        // The three are received once each, from the reader that was there, and settled on its recovered channel.
        var after = await ReceiveCountAsync(sut.Broker, queue, 3);
        Assert.Equal(["{\"n\":4}", "{\"n\":5}", "{\"n\":6}"], after.Select(Text));
        Assert.All(after, d => Assert.Equal(1, d.ReceiveCount));
        await sut.Broker.AcknowledgeAsync([.. after.Select(d => d.Lease)], default).Bounded();
        Assert.Same(channel, sut.Broker.ReaderChannelOf(queue));

        // Nothing was acknowledged that was not handled: the next three come, in order, and the queue empties.
        await sut.Broker.SendBatchAsync(queue, Enumerable.Range(7, 3).Select(Numbered));
        var last = await ReceiveCountAsync(sut.Broker, queue, 3);
        Assert.Equal(["{\"n\":7}", "{\"n\":8}", "{\"n\":9}"], last.Select(Text));
        await sut.Broker.AcknowledgeAsync([.. last.Select(d => d.Lease)], default).Bounded();
        Assert.Same(channel, sut.Broker.ReaderChannelOf(queue));
        await Wait.UntilAsync(
            async () => await sut.Broker.GetStatsAsync(queue, default) is { Visible: 0, Leased: 0 },
            "nothing is left in the queue, the outbox or this process's leases");
    }
}
