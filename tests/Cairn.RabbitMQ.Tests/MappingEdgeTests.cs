using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>How the transport maps Cairn's messaging model onto RabbitMQ at its edges: reserved names, FIFO dead letters redriven into RabbitMQ, dead-letter queues deleted behind Cairn's back.</summary>
public sealed class MappingEdgeTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(10) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // 'amq.orders' is a valid Cairn queue name, but RabbitMQ keeps the 'amq.' prefix for itself (ACCESS_REFUSED): over
    // RabbitMQ such a name is refused by Cairn, naming the queue, rather than by RabbitMQ.Client's channel error.
    [Fact]
    public async Task a_queue_named_with_rabbitmqs_reserved_amq_prefix_is_refused_with_a_typed_error()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName("amq." + RabbitMqServer.NewName("reserved"));

        var thrown = await Record.ExceptionAsync(() => sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default).Bounded());

        var refused = Assert.IsType<InvalidMessagingNameException>(thrown);
        Assert.Contains("amq.", refused.Message, StringComparison.Ordinal);
        Assert.Null(await sut.Broker.GetQueueAsync(queue, default));
    }

    // A FIFO queue's dead letter redriven to a queue in RabbitMQ goes through that queue's outbox, where the redrive
    // starts its retention again, as every backend does. Published with its first enqueue time, a dead letter older than
    // the target's retention was dropped by its first receive over RabbitMQ: counted as moved, and lost.
    [Fact]
    public async Task a_fifo_dead_letter_older_than_the_targets_retention_redriven_to_a_rabbitmq_queue_is_delivered_not_dropped()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.UtcNow);
        await using var sut = await TransportUnderTest.StartAsync(storeOptions: new EventStoreOptions { Source = "urn:test", TimeProvider = clock });
        var ledger = new QueueName(RabbitMqServer.NewName("oldfifo"));
        var notices = new QueueName(RabbitMqServer.NewName("oldtarget"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true, MaxReceiveCount = 1 }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(notices) { Retention = TimeSpan.FromHours(1) }, default);

        var sent = Numbered(1) with { GroupKey = "a" };
        await sut.Broker.SendAsync(ledger, sent);
        var head = Assert.Single(await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions { MaxMessages = 1 }, default));
        await sut.Broker.ReleaseAsync(head.Lease, TimeSpan.Zero, new FailureInfo("Boom", "failed", null), default);
        Assert.Single(await sut.Broker.ListDeadLettersAsync(ledger, 0, 10, default));

        // The operator fixes the cause two hours later and redrives the dead letter to a queue in RabbitMQ.
        clock.Advance(TimeSpan.FromHours(2));
        Assert.Equal(1, await sut.Broker.RedriveAsync(ledger, new RedriveRequest { Target = notices }, default).Bounded());
        await sut.RelayedAsync(notices, 1);

        var redriven = await sut.Broker.ReceiveAsync(notices, Waiting, default).Bounded();
        Assert.Single(redriven);
        Assert.Equal(sent.Id, redriven[0].Message.Id);
    }

    // Every backend keeps a redriven dead letter's first receive time, and so does a redrive within RabbitMQ; a FIFO
    // queue's dead letter redriven to a queue in RabbitMQ keeps it too, where its next receive took itself for the first.
    [Fact]
    public async Task a_fifo_dead_letter_redriven_to_a_rabbitmq_queue_keeps_the_time_it_was_first_received()
    {
        var clock = new ManualTimeProvider(DateTimeOffset.UtcNow);
        await using var sut = await TransportUnderTest.StartAsync(storeOptions: new EventStoreOptions { Source = "urn:test", TimeProvider = clock });
        var ledger = new QueueName(RabbitMqServer.NewName("firstfifo"));
        var notices = new QueueName(RabbitMqServer.NewName("firsttarget"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true, MaxReceiveCount = 1 }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(notices), default);

        await sut.Broker.SendAsync(ledger, Numbered(1) with { GroupKey = "a" });
        var head = Assert.Single(await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions { MaxMessages = 1 }, default));
        await sut.Broker.ReleaseAsync(head.Lease, TimeSpan.Zero, new FailureInfo("Boom", "failed", null), default);
        var deadLetter = Assert.Single(await sut.Broker.ListDeadLettersAsync(ledger, 0, 10, default));
        Assert.Equal(head.FirstReceivedAt, deadLetter.FirstReceivedAt);

        clock.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(1, await sut.Broker.RedriveAsync(ledger, new RedriveRequest { Target = notices }, default).Bounded());
        var redriven = Assert.Single(await sut.Broker.ReceiveAsync(notices, Waiting, default).Bounded());

        Assert.Equal(head.FirstReceivedAt, redriven.FirstReceivedAt);
        Assert.Equal(1, redriven.Redrives);
    }

    // A FIFO queue's dead letters are the backend's: redriving them into the FIFO queue publishes nothing to RabbitMQ,
    // so it goes on while a resource alarm blocks publishing (it was refused with RabbitMqBlockedException).
    [Fact]
    public async Task a_fifo_queues_redrive_into_itself_is_not_refused_while_rabbitmq_blocks_publishing()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        await using var sut = await TransportUnderTest.StartAsync(rabbit.Uri);
        var ledger = new QueueName(RabbitMqServer.NewName("alarmfifo"));
        var queue = new QueueName(RabbitMqServer.NewName("alarmstd"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(ledger) { Fifo = true, MaxReceiveCount = 1 }, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(0));
        await sut.RelayedAsync(queue, 1);

        var sent = Numbered(1) with { GroupKey = "a" };
        await sut.Broker.SendAsync(ledger, sent);
        var head = Assert.Single(await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions { MaxMessages = 1 }, default));
        await sut.Broker.ReleaseAsync(head.Lease, TimeSpan.Zero, new FailureInfo("Boom", "failed", null), default);
        Assert.Single(await sut.Broker.ListDeadLettersAsync(ledger, 0, 10, default));

        await rabbit.CtlAsync("set_vm_memory_high_watermark", "0");
        try
        {
            await sut.Broker.SendAsync(queue, Numbered(2));
            await Wait.UntilAsync(() => sut.Broker.Connection.PublishingBlocked is not null, "RabbitMQ blocked the publishing connection");

            Assert.Equal(1, await sut.Broker.RedriveAsync(ledger, new RedriveRequest(), default).Bounded());
            Assert.Equal(sent.Id, Assert.Single(await sut.Broker.ReceiveAsync(ledger, new ReceiveOptions { MaxMessages = 1 }, default)).Message.Id);
        }
        finally
        {
            await rabbit.CtlAsync("set_vm_memory_high_watermark", "0.9");
        }
    }

    // A '<queue>.dlq' deleted behind Cairn's back (an operator clearing dead letters with RabbitMQ's tools) is declared
    // again by a listing or a purge of dead letters, as by the next dead letter and statistics: they failed with
    // RabbitMQ's NOT_FOUND, trusting this process's "declared once" record.
    [Fact]
    public async Task dead_letters_of_a_queue_whose_dead_letter_queue_was_deleted_behind_cairns_back_are_listed_as_none()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("listdlqgone"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));

        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(sut.Broker.DeadLettersIn(queue)));

        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default).Bounded());
        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(sut.Broker.DeadLettersIn(queue)));
        Assert.Equal(0, await sut.Broker.PurgeDeadLettersAsync(queue, null, default).Bounded());
    }
}
