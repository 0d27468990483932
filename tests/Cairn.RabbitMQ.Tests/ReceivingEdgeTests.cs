using System.Text;
using Cairn.Conformance.Support;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ.Tests;

/// <summary>The receiving side at its edges: dead letters RabbitMQ holds, a reader whose receivers stopped, a disposed broker.</summary>
public sealed class ReceivingEdgeTests
{
    private static readonly ReceiveOptions Waiting = new() { MaxMessages = 1, Wait = TimeSpan.FromSeconds(20) };

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    // A '<queue>.dlq' deleted behind Cairn's back is declared again on its next use. Statistics read it with a passive
    // declaration, trusting this process's "declared once" record: they failed with RabbitMQ's NOT_FOUND until
    // something else declared it again, and the messaging health check, which reads every queue's statistics, called
    // the queue unhealthy for as long.
    [Fact]
    public async Task statistics_of_a_queue_whose_dead_letter_queue_was_deleted_behind_cairns_back_are_still_read()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("statsdlq"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        await sut.RelayedAsync(queue, 1);

        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(sut.Broker.DeadLettersIn(queue)));

        var stats = await sut.Broker.GetStatsAsync(queue, default).Bounded();
        Assert.Equal(1, stats.Visible);
        Assert.Equal(0, stats.DeadLettered);
    }

    // Declaring a queue again updates its settings (docs/messaging.md), which the backend keeps for every process
    // sharing it. Another process kept the settings it first read for good, so it went on with the old MaxReceiveCount:
    // a release on the last allowed receive put the message back instead of dead-lettering it.
    [Fact]
    public async Task a_queue_declared_again_elsewhere_is_received_with_its_new_settings_once_those_read_here_are_five_seconds_old()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var clock = new ManualTimeProvider(DateTimeOffset.UtcNow);
        await using var other = new RabbitMqMessageBroker(sut.Broker.Backend, sut.Broker.Options, timeProvider: clock);
        var queue = new QueueName(RabbitMqServer.NewName("redeclared"));
        var now = new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.Zero };
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 5 }, default);
        Assert.Empty(await other.ReceiveAsync(queue, now, default));

        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 1 }, default);
        clock.Advance(TimeSpan.FromSeconds(6));
        await sut.Broker.SendAsync(queue, Numbered(1));
        Delivery? delivery = null;
        await Wait.UntilAsync(async () => (delivery = (await other.ReceiveAsync(queue, now, default)).SingleOrDefault()) is not null, "the message is received in the other process");
        Assert.Equal(1, delivery!.ReceiveCount);
        await other.ReleaseAsync(delivery.Lease, TimeSpan.Zero, new FailureInfo("Boom", "failed", null), default).Bounded();

        // Its one allowed receive used, it is dead-lettered, not delivered a second time.
        await Wait.UntilAsync(async () => (await other.ListDeadLettersAsync(queue, 0, 10, default)).Count == 1, "the message is dead-lettered");
        Assert.Empty(await other.ReceiveAsync(queue, now, default));
    }

    // An operator deletes '<queue>.dlq' (clearing dead letters from RabbitMQ's management UI). As a delay queue, a
    // redrive target and the queue itself are, it is declared again on its next use: a message that fails is still
    // dead-lettered, rather than failing every time and looping for ever as a consumer's poison message.
    [Fact]
    public async Task a_dead_letter_queue_deleted_behind_cairns_back_is_declared_again_so_messages_can_still_be_dead_lettered()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("dlqgone"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue) { MaxReceiveCount = 10 }, default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        await RabbitMqServer.WithChannelAsync(channel => channel.QueueDeleteAsync(sut.Broker.DeadLettersIn(queue)));

        Exception? last = null;
        var deadLettered = false;
        for (var attempt = 0; attempt < 3 && !deadLettered; attempt++)
        {
            var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
            try
            {
                await sut.Broker.DeadLetterAsync(delivery.Lease, "poison", null, default).Bounded();
                deadLettered = true;
            }
            catch (Exception ex) when (ex is not TimeoutException)
            {
                last = ex;
            }
        }

        Assert.True(deadLettered, $"three dead-letter attempts all failed; the last with: {last?.GetType().Name}: {last?.Message}");
        Assert.Single(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
    }

    // A dead-letter listing takes a limit of 1–10,000 on every backend (docs/messaging.md); over RabbitMQ too, for a
    // FIFO queue, which the backend keeps, and for one in RabbitMQ.
    [Fact]
    public async Task a_dead_letter_listing_limit_every_backend_takes_is_taken_over_rabbitmq_too()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("limit"));
        var fifo = new QueueName(RabbitMqServer.NewName("limitfifo"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(fifo) { Fifo = true }, default);

        Assert.Empty(await sut.Broker.Backend.ListDeadLettersAsync(fifo, 0, 5000, default));
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(fifo, 0, 5000, default));
        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 5000, default));
    }

    // Over RabbitMQ a message can be delivered twice (the relay publishes again after a crash before its outbox
    // acknowledgement; docs/rabbitmq.md), and both copies can fail and be dead-lettered. A purge of that message's dead
    // letter by id leaves none of it: a later "redrive all" would otherwise bring the poison message back.
    [Fact]
    public async Task purging_a_dead_letter_by_id_removes_every_copy_of_that_message()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("dupdlq"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());

        // The same message published again, as a relay that died between RabbitMQ's confirm and its outbox acknowledgement does.
        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync("", sut.Broker.AmqpName(queue), true, RabbitMqMessageBroker.PropertiesFor(first.Message, first.EnqueuedAt), first.Message.Data).AsTask());
        var second = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        Assert.Equal(first.Message.Id, second.Message.Id);
        await sut.Broker.DeadLetterAsync(first.Lease, "poison", null, default);
        await sut.Broker.DeadLetterAsync(second.Lease, "poison", null, default);
        Assert.Equal(2, (await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default)).Count);

        await sut.Broker.PurgeDeadLettersAsync(queue, [first.Message.Id], default);

        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
    }

    // A redrive by id moves every copy of the message, as a purge by id removes every copy.
    [Fact]
    public async Task a_redrive_by_id_moves_every_copy_of_that_message()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("dupredrive"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var first = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync("", sut.Broker.AmqpName(queue), true, RabbitMqMessageBroker.PropertiesFor(first.Message, first.EnqueuedAt), first.Message.Data).AsTask());
        var second = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.DeadLetterAsync(first.Lease, "poison", null, default);
        await sut.Broker.DeadLetterAsync(second.Lease, "poison", null, default);

        Assert.Equal(2, await sut.Broker.RedriveAsync(queue, new RedriveRequest { MessageIds = [first.Message.Id] }, default).Bounded());

        Assert.Empty(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
        var back = new List<Delivery>();
        while (back.Count < 2)
        {
            back.AddRange(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        }

        Assert.All(back, d => Assert.Equal(first.Message.Id, d.Message.Id));
    }

    // A redrive of every dead letter while a consumer dead-letters each redriven message again at once (the poison is
    // still poison) moves each dead letter that was there once, and ends: it does not take its own copies again.
    [Fact]
    public async Task a_redrive_ends_though_a_consumer_dead_letters_what_it_moves_again_at_once()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("poisonloop"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        const int count = 20;
        for (var i = 0; i < count; i++)
        {
            await sut.Broker.SendAsync(queue, Numbered(i));
        }

        var deadLettered = 0;
        while (deadLettered < count)
        {
            foreach (var delivery in await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = count, Wait = TimeSpan.FromSeconds(20) }, default).Bounded())
            {
                await sut.Broker.DeadLetterAsync(delivery.Lease, "poison", null, default);
                deadLettered++;
            }
        }

        await using var consumer = new QueueConsumer(sut.Broker, new ConsumerOptions(queue) { Concurrency = 4 }, (_, _) => throw new NonRetryableMessageException("still poison"));
        await consumer.StartAsync(default);

        Assert.Equal(count, await sut.Broker.RedriveAsync(queue, new RedriveRequest(), default).Bounded());
    }

    // A process stops its consumer of a queue (a paused consumer, a feature switched off, a deploy draining one
    // process) while other processes keep consuming. The others get every message sent afterwards: the stopped
    // process's reader cancels its RabbitMQ consumer, rather than taking its share of new messages with its prefetch
    // and hiding them until RabbitMQ's consumer_timeout (30 minutes) closes its channel.
    [Fact]
    public async Task after_a_consumer_stops_in_one_process_the_messages_sent_afterwards_reach_the_processes_still_consuming()
    {
        await using var stopped = await TransportUnderTest.StartAsync();
        await using var running = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("shared"));
        await stopped.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await running.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);

        var handled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (var consumer = new QueueConsumer(stopped.Broker, new ConsumerOptions(queue) { Concurrency = 1, Prefetch = 1 }, (_, _) =>
        {
            handled.TrySetResult();
            return ValueTask.CompletedTask;
        }))
        {
            await consumer.StartAsync(default);
            await stopped.Broker.SendAsync(queue, Numbered(0));
            await handled.Task.Bounded();
            await consumer.StopAsync(default).Bounded();
        }

        // The running process's reader is started (and consuming) before the sends.
        Assert.Empty(await running.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.Zero }, default).Bounded());
        for (var i = 1; i <= 10; i++)
        {
            await running.Broker.SendAsync(queue, Numbered(i));
        }

        var received = new List<Delivery>();
        while (received.Count < 10)
        {
            var batch = await running.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 10, Wait = TimeSpan.FromSeconds(5) }, default).Bounded();
            if (batch.Count == 0)
            {
                break;
            }

            received.AddRange(batch);
            await running.Broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }

        Assert.True(received.Count == 10, $"the running process received {received.Count} of the 10 messages; the stopped one's reader holds {stopped.Broker.BufferedOf(queue)} unreceived");
    }

    // A message Cairn can read that reached '<queue>.dlq' other than through Cairn (RabbitMQ's own dead-lettering set
    // by an operator's policy, a shovel, a tool moving messages by hand) is a dead letter "dead-lettered outside
    // Cairn": found by id, moved by a redrive of all, counted by the stats, and listed from the first page, though it
    // has no sequence of Cairn's.
    [Fact]
    public async Task a_dead_letter_put_there_outside_cairn_is_listed_from_the_first_page()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("outside"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, Waiting, default).Bounded());
        await sut.Broker.AcknowledgeAsync([delivery.Lease], default);
        await RabbitMqServer.WithChannelAsync(channel => channel.BasicPublishAsync("", sut.Broker.DeadLettersIn(queue), true, RabbitMqMessageBroker.PropertiesFor(delivery.Message, delivery.EnqueuedAt), delivery.Message.Data).AsTask());

        Assert.NotNull(await sut.Broker.GetDeadLetterAsync(queue, delivery.Message.Id, default));
        Assert.Equal(1, (await sut.Broker.GetStatsAsync(queue, default)).DeadLettered);
        var listed = Assert.Single(await sut.Broker.ListDeadLettersAsync(queue, 0, 10, default));
        Assert.Equal(delivery.Message.Id, listed.Message.Id);
    }

    // An application's own receive loop ("while not stopping: ReceiveAsync with a 20 s wait") ends once the broker is
    // disposed (the host's relay owns and disposes it on stop): a receive fails with ObjectDisposedException, also when
    // the queue's reader had started, rather than returning an empty batch at once, every time.
    [Fact]
    public async Task a_receive_after_the_broker_is_disposed_fails_instead_of_returning_nothing_at_once()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("disposed"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        Assert.Empty(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.Zero }, default).Bounded());
        await sut.Relay.StopAsync(default);
        await sut.Broker.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => sut.Broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(5) }, default).Bounded());
    }

    // Two dead letters from outside Cairn with one time (a shovel's) page apart, one at a time: each is listed once,
    // their sequences told apart by their ids rather than equal, where the second page skipped the other.
    [Fact]
    public async Task Paging_lists_each_dead_letter_from_outside_cairn_that_shares_its_time_with_another()
    {
        await using var sut = await TransportUnderTest.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("outside2"));
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await sut.Broker.SendAsync(queue, Numbered(1));
        await sut.Broker.SendAsync(queue, Numbered(2));
        var deliveries = new List<Delivery>();
        while (deliveries.Count < 2)
        {
            deliveries.AddRange(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 2, Wait = TimeSpan.FromSeconds(20) }, default).Bounded());
        }

        await sut.Broker.AcknowledgeAsync([.. deliveries.Select(d => d.Lease)], default);

        // A shovel moves both to the dead-letter queue; they were enqueued at the same instant.
        var at = deliveries[0].EnqueuedAt;
        var factory = new ConnectionFactory { Uri = new Uri(RabbitMqServer.Uri) };
        await using (var connection = await factory.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
        {
            foreach (var delivery in deliveries)
            {
                await channel.BasicPublishAsync("", sut.Broker.DeadLettersIn(queue), true, RabbitMqMessageBroker.PropertiesFor(delivery.Message, at), delivery.Message.Data);
            }
        }

        var listed = new List<DeadLetter>();
        var after = 0L;
        for (var page = 0; page < 4; page++)
        {
            var next = await sut.Broker.ListDeadLettersAsync(queue, after, 1, default);
            if (next.Count == 0)
            {
                break;
            }

            listed.AddRange(next);
            after = next[^1].Sequence;
        }

        Assert.True(listed.Count == 2, $"paging one at a time listed {listed.Count} of the 2 dead letters (sequences {string.Join(", ", listed.Select(d => d.Sequence))})");
    }
}
