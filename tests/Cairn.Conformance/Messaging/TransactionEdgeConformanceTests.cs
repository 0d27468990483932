using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>
/// Edges of <see cref="MessageTransaction"/> on every backend: every part commits or none does, whichever part is
/// refused; the commit result's counts and positions; the inbox under repeats; empty and large transactions.
/// </summary>
public abstract class TransactionEdgeConformanceTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Inbox = "tx-inbox";
    private static readonly QueueName Outbox = "tx-outbox";
    private static readonly QueueName Other = "tx-other";
    private static readonly TopicName Events = "tx-events";
    private static readonly StreamName Order = new("order-1");
    private static readonly StreamName Invoice = new("invoice-1");

    /// <summary>A store with the inbox and outbox queues, and a topic subscribed by both outbox and other.</summary>
    private async Task<(StoreUnderTest Sut, IMessageBroker Broker)> CreateAsync(params QueueDefinition[] extra)
    {
        var (sut, broker) = await CreateBrokerAsync([new QueueDefinition(Inbox) { Lease = TimeSpan.FromSeconds(10) }, new QueueDefinition(Outbox), new QueueDefinition(Other), .. extra]);
        await broker.DeclareTopicAsync(Events, default);
        await broker.SubscribeAsync(new TopicSubscription(Events, "to-outbox", Outbox), default);
        await broker.SubscribeAsync(new TopicSubscription(Events, "to-other", Other), default);
        return (sut, broker);
    }

    /// <summary>Asserts that nothing of a refused handling landed, and that its lease is still held.</summary>
    private async Task AssertNothingWrittenAsync(StoreUnderTest sut, IMessageBroker broker, Delivery held, string checkpoint)
    {
        Assert.Null(await sut.Store.GetStreamVersionAsync(Order));
        Assert.Null(await sut.Store.GetStreamVersionAsync(Invoice));
        Assert.Empty(await DrainAsync(broker, Outbox));
        Assert.Empty(await DrainAsync(broker, Other));
        Assert.False(await broker.WasProcessedAsync("billing", held.Message.Id, default));
        Assert.Null(await sut.Checkpoints.GetAsync(checkpoint, default));

        // The acknowledgement did not land either: the lease still holds the message, and settles it now.
        await broker.AcknowledgeAsync([held.Lease], default);
        Assert.Empty(await ReceiveNowAsync(broker, Inbox));
    }

    private async Task<Delivery> ReceiveOneAsync(IMessageBroker broker)
    {
        await broker.SendAsync(Inbox, Numbered(1));
        return Assert.Single(await ReceiveNowAsync(broker, Inbox));
    }

    /// <summary>The whole of a handling: two appends, sends, a publish, the acknowledgement, the inbox and a checkpoint.</summary>
    private static MessageTransaction Handling(Delivery delivery, string checkpoint) =>
        new MessageTransaction()
            .Append(new AppendRequest(Order, ExpectedVersion.NoStream, [TestEvents.Numbered(1)]))
            .Append(new AppendRequest(Invoice, ExpectedVersion.Any, [TestEvents.Numbered(2)]))
            .Send(Outbox, Numbered(10))
            .Send(Other, Numbered(11))
            .Publish(Events, Numbered(12))
            .Acknowledge(delivery.Lease)
            .MarkProcessed("billing", delivery)
            .SetCheckpoint(checkpoint, new GlobalPosition(5));

    [Fact]
    public async Task a_publish_to_an_unknown_topic_after_appends_sends_and_a_settlement_writes_nothing()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var held = await ReceiveOneAsync(broker);

        var error = await Assert.ThrowsAsync<TopicNotFoundException>(() => broker.CommitAsync(Handling(held, "cp").Publish("tx-nowhere", Numbered(13)), default));
        Assert.Equal("tx-nowhere", error.Topic.Value);
        await AssertNothingWrittenAsync(sut, broker, held, "cp");
    }

    [Fact]
    public async Task a_send_to_an_unknown_queue_as_the_last_of_many_parts_writes_nothing()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var held = await ReceiveOneAsync(broker);

        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.CommitAsync(Handling(held, "cp").Send("tx-missing", Numbered(13)), default));
        await AssertNothingWrittenAsync(sut, broker, held, "cp");
    }

    [Fact]
    public async Task a_conflict_in_a_later_append_undoes_the_earlier_appends_and_every_send()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var held = await ReceiveOneAsync(broker);
        await sut.Store.AppendToStreamAsync(new StreamName("taken-1"), ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);

        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => broker.CommitAsync(
            Handling(held, "cp").Append(new AppendRequest(new StreamName("taken-1"), ExpectedVersion.NoStream, [TestEvents.Numbered(3)])),
            default));
        await AssertNothingWrittenAsync(sut, broker, held, "cp");
        Assert.Equal(1, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task a_copy_a_subscribed_queue_refuses_fails_the_whole_transaction()
    {
        // The topic's second subscription leads to a FIFO queue: the publish without a group key is refused there.
        var (sut, broker) = await CreateAsync(new QueueDefinition("tx-fifo") { Fifo = true });
        await using var _ = sut;
        await broker.SubscribeAsync(new TopicSubscription(Events, "to-fifo", "tx-fifo"), default);
        var held = await ReceiveOneAsync(broker);

        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.CommitAsync(Handling(held, "cp"), default));
        await AssertNothingWrittenAsync(sut, broker, held, "cp");
        Assert.Empty(await DrainAsync(broker, "tx-fifo"));
    }

    [Fact]
    public async Task an_oversized_copy_for_one_subscription_fails_the_whole_transaction()
    {
        var (sut, broker) = await CreateAsync(new QueueDefinition("tx-small") { MaxMessageSize = 4 });
        await using var _ = sut;
        await broker.SubscribeAsync(new TopicSubscription(Events, "to-small", "tx-small"), default);
        var held = await ReceiveOneAsync(broker);

        await Assert.ThrowsAsync<MessageTooLargeException>(() => broker.CommitAsync(Handling(held, "cp"), default));
        await AssertNothingWrittenAsync(sut, broker, held, "cp");
        Assert.Empty(await DrainAsync(broker, "tx-small"));
    }

    [Fact]
    public async Task a_checkpoint_that_moved_on_fails_the_whole_transaction()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var held = await ReceiveOneAsync(broker);
        await sut.Checkpoints.SetAsync("route:x", new GlobalPosition(3), default);

        await Assert.ThrowsAsync<CheckpointConflictException>(() => broker.CommitAsync(
            Handling(held, "cp").SetCheckpoint("route:x", new GlobalPosition(9), GlobalPosition.Start),
            default));
        Assert.Equal(new GlobalPosition(3), await sut.Checkpoints.GetAsync("route:x", default));
        await AssertNothingWrittenAsync(sut, broker, held, "cp");
    }

    [Fact]
    public async Task a_lost_lease_among_the_acknowledgements_writes_nothing_and_settles_none()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        await broker.SendBatchAsync(Inbox, [Numbered(1), Numbered(2)]);
        var deliveries = await ReceiveNowAsync(broker, Inbox);
        Assert.Equal(2, deliveries.Count);
        await broker.AcknowledgeAsync([deliveries[1].Lease], default);

        await Assert.ThrowsAsync<LeaseLostException>(() => broker.CommitAsync(
            Handling(deliveries[0], "cp").Acknowledge(deliveries[1].Lease),
            default));
        await AssertNothingWrittenAsync(sut, broker, deliveries[0], "cp");
    }

    [Fact]
    public async Task a_refused_transaction_leaves_its_deduplication_ids_unremembered()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var once = Numbered(1) with { DeduplicationId = "d-1" };
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.CommitAsync(
            new MessageTransaction().Send(Outbox, once).Send("tx-missing", Numbered(2)),
            default));

        var result = await broker.CommitAsync(new MessageTransaction().Send(Outbox, once with { Id = MessageId.New() }), default);
        Assert.Equal((1, 0), (result.MessagesEnqueued, result.MessagesDeduplicated));
        Assert.Equal([1], await DrainAsync(broker, Outbox));
    }

    [Fact]
    public async Task a_full_handling_reports_every_append_and_every_copy()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var held = await ReceiveOneAsync(broker);
        await sut.Store.AppendToStreamAsync(new StreamName("before-1"), ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);

        var result = await broker.CommitAsync(Handling(held, "cp"), default);

        Assert.False(result.AlreadyProcessed);
        Assert.Equal((4, 0), (result.MessagesEnqueued, result.MessagesDeduplicated));
        Assert.Equal(2, result.Appends.Count);
        Assert.Equal((new GlobalPosition(2), new GlobalPosition(2)), (result.Appends[0].FirstPosition, result.Appends[0].LastPosition));
        Assert.Equal((new GlobalPosition(3), new GlobalPosition(3)), (result.Appends[1].FirstPosition, result.Appends[1].LastPosition));
        Assert.Equal(new StreamAppendResult(Invoice, 0, 0), Assert.Single(result.Appends[1].Streams));
        Assert.False(result.Appends[0].WasDuplicate);

        var all = await sut.Store.ReadAllAsync().ToListAsync();
        Assert.Equal([Order, Invoice], all.Skip(1).Select(e => e.Stream));
        Assert.Equal(new GlobalPosition(5), await sut.Checkpoints.GetAsync("cp", default));
        Assert.True(await broker.WasProcessedAsync("billing", held.Message.Id, default));
        Assert.Equal([10, 12], await DrainAsync(broker, Outbox));
        Assert.Equal([11, 12], await DrainAsync(broker, Other));
        Assert.Empty(await ReceiveNowAsync(broker, Inbox));
    }

    [Fact]
    public async Task deduplicated_copies_are_counted_once_each_and_not_enqueued()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var first = await broker.CommitAsync(
            new MessageTransaction()
                .Send(Outbox, Numbered(1) with { DeduplicationId = "d" })
                .Send(Outbox, Numbered(2) with { DeduplicationId = "d" })
                .Send(Other, Numbered(3) with { DeduplicationId = "d" }),
            default);
        Assert.Equal((2, 1), (first.MessagesEnqueued, first.MessagesDeduplicated));

        // A publish with the same id reaches both subscriptions' queues, where the id is already remembered.
        var second = await broker.CommitAsync(new MessageTransaction().Publish(Events, Numbered(4) with { DeduplicationId = "d" }), default);
        Assert.Equal((0, 2), (second.MessagesEnqueued, second.MessagesDeduplicated));
        Assert.Equal([1], await DrainAsync(broker, Outbox));
        Assert.Equal([3], await DrainAsync(broker, Other));
    }

    [Fact]
    public async Task a_repeat_of_a_handled_message_settles_it_and_writes_no_effect_and_no_checkpoint()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var held = await ReceiveOneAsync(broker);
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", held.Message.Id), default);

        var result = await broker.CommitAsync(Handling(held, "cp"), default);

        Assert.True(result.AlreadyProcessed);
        Assert.Empty(result.Appends);
        Assert.Equal((0, 0), (result.MessagesEnqueued, result.MessagesDeduplicated));
        Assert.Null(await sut.Store.GetStreamVersionAsync(Order));
        Assert.Null(await sut.Store.GetStreamVersionAsync(Invoice));
        Assert.Empty(await DrainAsync(broker, Outbox));
        Assert.Empty(await DrainAsync(broker, Other));
        Assert.Null(await sut.Checkpoints.GetAsync("cp", default));

        // The acknowledgement did apply.
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync([held.Lease], default));
        Assert.Empty(await ReceiveNowAsync(broker, Inbox));
    }

    [Fact]
    public async Task two_copies_of_one_handling_committed_at_once_write_their_effects_once()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var message = MessageId.New();
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() => broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(new StreamName($"copy-{i}"), ExpectedVersion.NoStream, [TestEvents.Numbered(i)]))
                .Send(Outbox, Numbered(i))
                .MarkProcessed("billing", message),
            default))));

        Assert.Equal(1, results.Count(r => !r.AlreadyProcessed));
        Assert.Single(await DrainAsync(broker, Outbox));
        Assert.Equal(1, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task concurrent_transactions_one_refused_after_many_writes_leave_the_others_whole()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var commits = Enumerable.Range(0, 10).Select(i => Task.Run(async () =>
        {
            var transaction = new MessageTransaction()
                .Append(new AppendRequest(new StreamName($"c-{i}"), ExpectedVersion.NoStream, [TestEvents.Numbered(i)]));
            for (var k = 0; k < 20; k++)
            {
                transaction.Send(Outbox, Numbered((i * 100) + k));
            }

            if (i % 2 == 1)
            {
                transaction.Send("tx-missing", Numbered(-1));
            }

            try
            {
                await broker.CommitAsync(transaction, default);
                return true;
            }
            catch (QueueNotFoundException)
            {
                return false;
            }
        })).ToList();

        var outcomes = await Task.WhenAll(commits);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i % 2 == 0), outcomes);
        var received = await DrainAsync(broker, Outbox);
        Assert.Equal(100, received.Count);
        Assert.All(received, n => Assert.Equal(0, n / 100 % 2));
        Assert.Equal(5, await sut.Store.ReadAllAsync().CountAsync());
    }

    [Fact]
    public async Task an_empty_transaction_commits_nothing_and_reports_nothing()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var transaction = new MessageTransaction();
        Assert.True(transaction.IsEmpty);

        var result = await broker.CommitAsync(transaction, default);
        Assert.Equal((0, 0, false), (result.MessagesEnqueued, result.MessagesDeduplicated, result.AlreadyProcessed));
        Assert.Empty(result.Appends);
        Assert.Empty(await sut.Store.ReadAllAsync().ToListAsync());
    }

    [Fact]
    public async Task a_large_transaction_over_many_streams_and_queues_commits_whole_or_not_at_all()
    {
        var queues = Enumerable.Range(0, 20).Select(q => new QueueDefinition($"tx-many-{q}")).ToArray();
        var (sut, broker) = await CreateAsync(queues);
        await using var _ = sut;

        MessageTransaction Build()
        {
            var transaction = new MessageTransaction();
            for (var s = 0; s < 200; s++)
            {
                transaction.Append(new AppendRequest(new StreamName($"many-{s}"), ExpectedVersion.NoStream, [TestEvents.Numbered(s), TestEvents.Numbered(s)]));
            }

            for (var m = 0; m < 2000; m++)
            {
                transaction.Send(queues[m % 20].Name, Numbered(m));
            }

            return transaction;
        }

        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.CommitAsync(Build().Send("tx-missing", Numbered(-1)), default));
        Assert.Empty(await sut.Store.ReadAllAsync().ToListAsync());
        foreach (var queue in queues)
        {
            Assert.Equal(0, (await broker.GetStatsAsync(queue.Name, default)).Visible);
        }

        var result = await broker.CommitAsync(Build(), default);
        Assert.Equal(2000, result.MessagesEnqueued);
        Assert.Equal(200, result.Appends.Count);
        Assert.Equal(new GlobalPosition(399), result.Appends[^1].FirstPosition);
        Assert.Equal(new GlobalPosition(400), result.Appends[^1].LastPosition);
        Assert.Equal(400, await sut.Store.ReadAllAsync().CountAsync());
        foreach (var queue in queues)
        {
            Assert.Equal(100, (await broker.GetStatsAsync(queue.Name, default)).Visible);
        }
    }

    [Fact]
    public async Task bad_parts_are_refused_as_they_are_added_or_at_commit_with_a_typed_error()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var transaction = new MessageTransaction();
        Assert.Throws<ArgumentNullException>(() => transaction.Append(null!));
        Assert.Throws<ArgumentNullException>(() => transaction.Send(Outbox, null!));
        Assert.Throws<ArgumentNullException>(() => transaction.Publish(Events, null!));
        Assert.True(transaction.IsEmpty);

        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.CommitAsync(new MessageTransaction().Send(default, Numbered(1)), default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.CommitAsync(new MessageTransaction().Publish(default, Numbered(1)), default));
        var twice = Numbered(1);
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.CommitAsync(
            new MessageTransaction().Append(new AppendRequest(Order, ExpectedVersion.Any, [TestEvents.Numbered(1)])).Send(Outbox, twice).Send(Outbox, twice),
            default));
        Assert.Null(await sut.Store.GetStreamVersionAsync(Order));
        Assert.Empty(await DrainAsync(broker, Outbox));
    }

    [Fact]
    public async Task a_transaction_committed_again_after_a_refusal_commits_once_fixed()
    {
        // A transaction refused as a whole can be committed again once what refused it is fixed, and then lands whole.
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var transaction = new MessageTransaction()
            .Append(new AppendRequest(Order, ExpectedVersion.NoStream, [TestEvents.Numbered(1)]))
            .Send("tx-later", Numbered(1))
            .Send(Outbox, Numbered(2));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.CommitAsync(transaction, default));
        await broker.DeclareQueueAsync(new QueueDefinition("tx-later"), default);

        var result = await broker.CommitAsync(transaction, default);
        Assert.Equal(2, result.MessagesEnqueued);
        Assert.False(result.Appends[0].WasDuplicate);
        Assert.Equal(0L, await sut.Store.GetStreamVersionAsync(Order));
        Assert.Equal([1], await DrainAsync(broker, "tx-later"));
        Assert.Equal([2], await DrainAsync(broker, Outbox));
    }

    // A commit retried after a time-out that left its outcome unknown: its appends (events carrying their ids) land once,
    // its messages are sent again unless an inbox record stops the whole repeat, as the messaging page says.
    [Fact]
    public async Task a_transaction_committed_again_appends_once_and_sends_again_unless_its_inbox_record_stops_it()
    {
        var (sut, broker) = await CreateAsync();
        await using var _ = sut;
        var placed = TestEvents.Numbered(1) with { Id = MessageId.New() };
        var retried = new MessageTransaction()
            .Append(new AppendRequest(Order, ExpectedVersion.NoStream, [placed]))
            .Send(Outbox, Numbered(10));

        await broker.CommitAsync(retried, default);
        var again = await broker.CommitAsync(retried, default);

        Assert.True(again.Appends[0].WasDuplicate);
        Assert.Equal(1, again.MessagesEnqueued);
        Assert.Equal(0, await sut.Store.GetStreamVersionAsync(Order));
        Assert.Equal([10, 10], await DrainAsync(broker, Outbox));

        var marked = new MessageTransaction()
            .MarkProcessed("billing", MessageId.New())
            .Send(Outbox, Numbered(20));
        await broker.CommitAsync(marked, default);
        var repeat = await broker.CommitAsync(marked, default);

        Assert.True(repeat.AlreadyProcessed);
        Assert.Equal(0, repeat.MessagesEnqueued);
        Assert.Equal([20], await DrainAsync(broker, Outbox));
    }
}
