using System.Text;
using Cairn.Conformance.Support;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// RabbitMQ.Client recovers a channel only with its connection. A queue's reader whose channel RabbitMQ closed while
/// the connection stayed up, or whose consumer RabbitMQ cancelled, is replaced, so the process keeps consuming.
/// </summary>
public sealed class ReaderRestartTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static string Text(Delivery delivery) => Encoding.UTF8.GetString(delivery.Message.Data.Span);

    [Fact]
    public async Task a_reader_whose_channel_rabbitmq_closed_is_replaced_and_the_queue_is_consumed_again()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("closed"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.AcknowledgeAsync([first.Lease], default);

        // An acknowledgement of a delivery the channel never had: RabbitMQ closes the channel (406), not the connection.
        var channel = sut.Broker.ReaderChannelOf(queue)!;
        await channel.BasicAckAsync(999_999, false);
        await Wait.UntilAsync(() => channel.IsClosed, "RabbitMQ closed the reader's channel");
        Assert.True((await sut.Broker.Connection.GetAsync(default)).IsOpen);

        await sut.Broker.SendAsync(queue, Numbered(2));
        var second = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal("{\"n\":2}", Text(second));
        await sut.Broker.AcknowledgeAsync([second.Lease], default);
        Assert.NotSame(channel, sut.Broker.ReaderChannelOf(queue));
    }

    [Fact]
    public async Task a_connection_lost_under_a_waiting_receive_keeps_its_reader_and_the_receive_gets_the_next_message()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("dropped"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, Waiting with { Wait = TimeSpan.Zero }, default).Bounded());
        var reader = sut.Broker.ReaderChannelOf(queue);

        // The client raises its consumer's cancel event on a lost connection too; recovery mends this one.
        var waiting = sut.Broker.ReceiveAsync(queue, Waiting, default);
        await rabbit.CtlAsync("close_all_connections", "test");
        await Wait.UntilAsync(() => sut.Broker.Connection.ConsumingIsOpen, "the consuming connection recovered");
        await sut.Broker.SendAsync(queue, Numbered(4));
        var delivery = Assert.Single(await waiting.Bounded());
        Assert.Equal("{\"n\":4}", Text(delivery));
        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
        Assert.Same(reader, sut.Broker.ReaderChannelOf(queue));
    }

    [Fact]
    public async Task a_receive_waiting_when_its_queue_is_deleted_gets_the_next_message_sent_to_it()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("deleted"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, Waiting with { Wait = TimeSpan.Zero }, default).Bounded());

        // An operator deletes the queue under the waiting receive: RabbitMQ cancels the reader's consumer.
        var before = sut.Broker.ReaderChannelOf(queue);
        var waiting = sut.Broker.ReceiveAsync(queue, Waiting, default);
        var factory = new ConnectionFactory { Uri = sut.Broker.Options.Uri };
        await using (var admin = await factory.CreateConnectionAsync())
        await using (var adminChannel = await admin.CreateChannelAsync())
        {
            await adminChannel.QueueDeleteAsync(sut.Broker.AmqpName(queue));
        }

        // The queue is declared again, by the new reader or the relay's publish, and the message reaches the receive.
        await sut.Broker.SendAsync(queue, Numbered(3));
        var received = await waiting.Bounded();
        Assert.True(received.Count == 1, $"the receive got {received.Count} message(s); the relay published {sut.Relay.Published} and returned {sut.Relay.Returned}; the reader was replaced: {!ReferenceEquals(before, sut.Broker.ReaderChannelOf(queue))}");
        var delivery = received[0];
        Assert.Equal("{\"n\":3}", Text(delivery));
        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
    }

    [Fact]
    public async Task a_reader_whose_queue_was_deleted_takes_nothing_from_the_queue_declared_again_after_the_connection_recovers()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var idle = await TransportUnderTest.StartAsync(rabbit.Uri);
        await using var other = await TransportUnderTest.StartAsync(rabbit.Uri);
        var queue = new QueueName(RabbitMqServer.NewName("redeclared"));
        await idle.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await idle.Broker.ReceiveAsync(queue, Waiting with { Wait = TimeSpan.Zero }, default).Bounded());

        // The queue is deleted while no receive waits in this process: its reader dies, and nothing replaces it yet.
        var factory = new ConnectionFactory { Uri = idle.Broker.Options.Uri };
        await using (var admin = await factory.CreateConnectionAsync())
        await using (var adminChannel = await admin.CreateChannelAsync())
        {
            await adminChannel.QueueDeleteAsync(idle.Broker.AmqpName(queue));
        }

        await Wait.UntilAsync(() => idle.Broker.ReaderDeadOf(queue) is not null, "the reader learning that its consumer was cancelled");

        // Another process declares the queue again, and the connections are lost and recovered.
        await other.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var connection = await idle.Broker.Connection.GetAsync(default);
        var recovered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.RecoverySucceededAsync += (_, _) =>
        {
            recovered.TrySetResult();
            return Task.CompletedTask;
        };
        await rabbit.CtlAsync("close_all_connections", "test");
        await recovered.Task.Bounded();
        await Wait.UntilAsync(() => other.Broker.Connection.ConsumingIsOpen, "the other process's consuming connection recovered");

        // Every message sent now reaches the other process: none waits, unacknowledged, on the dead reader's channel.
        await other.Broker.SendBatchAsync(queue, Enumerable.Range(1, 6).Select(Numbered));
        var received = new List<Delivery>();
        await ReceiveAllAsync().Bounded();
        async Task ReceiveAllAsync()
        {
            while (received.Count < 6)
            {
                received.AddRange(await other.Broker.ReceiveAsync(queue, Waiting with { MaxMessages = 6 - received.Count }, default));
            }
        }

        Assert.Equal(Enumerable.Range(1, 6).Select(n => $"{{\"n\":{n}}}").Order(), received.Select(Text).Order());
        await other.Broker.AcknowledgeAsync([.. received.Select(d => d.Lease)], default);
    }
}
