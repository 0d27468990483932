using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>One transaction for appends, sends, settlements, inbox records and checkpoints: all or nothing.</summary>
public abstract class MessageTransactionTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Inbox = "inbox";
    private static readonly QueueName Outbox = "outbox";
    private static readonly StreamName Order = new("order-1");

    [Fact]
    public async Task an_append_and_a_send_commit_together()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Outbox));
        await using var _ = sut;
        var result = await broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(Order, ExpectedVersion.NoStream, [TestEvents.Numbered(1)]))
                .Send(Outbox, Numbered(1)),
            default);
        Assert.Equal(0, result.Appends[0].Streams[0].LastVersion);
        Assert.Equal(1, result.MessagesEnqueued);
        Assert.Equal(0L, await sut.Store.GetStreamVersionAsync(Order));
        Assert.Equal([1], await DrainAsync(broker, Outbox));
    }

    [Fact]
    public async Task a_refused_append_sends_nothing_and_a_refused_send_appends_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Outbox));
        await using var _ = sut;
        await sut.Store.AppendToStreamAsync(Order, ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);

        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => broker.CommitAsync(
            new MessageTransaction()
                .Send(Outbox, Numbered(1))
                .Append(new AppendRequest(Order, ExpectedVersion.NoStream, [TestEvents.Numbered(1)])),
            default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(Order, ExpectedVersion.Any, [TestEvents.Numbered(2)]))
                .Send("missing", Numbered(2)),
            default));

        Assert.Equal(0L, await sut.Store.GetStreamVersionAsync(Order));
        Assert.Empty(await DrainAsync(broker, Outbox));
    }

    [Fact]
    public async Task handling_a_message_settles_it_with_its_effects_and_a_repeat_has_no_second_effect()
    {
        // MassTransit #3791: a consumer with an inbox published twice when a message was redelivered.
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Inbox) { Lease = TimeSpan.FromSeconds(5) }, new QueueDefinition(Outbox));
        await using var _ = sut;
        await broker.SendAsync(Inbox, Numbered(1));
        var first = Assert.Single(await ReceiveNowAsync(broker, Inbox));

        // The first handler commits its effects, but its process dies before the delivery is settled separately: here
        // the lease runs out and the message is delivered again.
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", first.Message.Id).Send(Outbox, Numbered(100)), default);
        Assert.True(await broker.WasProcessedAsync("billing", first.Message.Id, default));
        Clock.Advance(TimeSpan.FromSeconds(5));
        var second = Assert.Single(await ReceiveNowAsync(broker, Inbox));

        var repeat = await broker.CommitAsync(
            new MessageTransaction().Acknowledge(second.Lease).MarkProcessed("billing", second.Message.Id).Send(Outbox, Numbered(100)),
            default);
        Assert.True(repeat.AlreadyProcessed);
        Assert.Equal([100], await DrainAsync(broker, Outbox));
        Assert.Empty(await DrainAsync(broker, Inbox));
        Assert.False(await broker.WasProcessedAsync("shipping", first.Message.Id, default));
    }

    [Fact]
    public async Task inbox_records_older_than_a_time_are_forgotten_per_consumer()
    {
        var (sut, broker) = await CreateBrokerAsync();
        await using var _ = sut;
        var old = MessageId.New();
        var recent = MessageId.New();
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", old), default);
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("shipping", old), default);
        Clock.Advance(TimeSpan.FromHours(2));
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", recent), default);

        Assert.Equal(1, await broker.PruneInboxAsync("billing", Clock.GetUtcNow() - TimeSpan.FromHours(1), default));
        Assert.False(await broker.WasProcessedAsync("billing", old, default));
        Assert.True(await broker.WasProcessedAsync("billing", recent, default));
        Assert.True(await broker.WasProcessedAsync("shipping", old, default));
        Assert.Equal(0, await broker.PruneInboxAsync("billing", Clock.GetUtcNow() - TimeSpan.FromHours(1), default));
    }

    [Fact]
    public async Task a_commit_holding_a_lost_lease_writes_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Inbox) { Lease = TimeSpan.FromSeconds(5) }, new QueueDefinition(Outbox));
        await using var _ = sut;
        await broker.SendAsync(Inbox, Numbered(1));
        var first = Assert.Single(await ReceiveNowAsync(broker, Inbox));
        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Single(await ReceiveNowAsync(broker, Inbox));

        await Assert.ThrowsAsync<LeaseLostException>(() => broker.CommitAsync(
            new MessageTransaction()
                .Acknowledge(first.Lease)
                .MarkProcessed("billing", first.Message.Id)
                .Append(new AppendRequest(Order, ExpectedVersion.Any, [TestEvents.Numbered(1)]))
                .Send(Outbox, Numbered(1)),
            default));
        Assert.False(await broker.WasProcessedAsync("billing", first.Message.Id, default));
        Assert.Null(await sut.Store.GetStreamVersionAsync(Order));
        Assert.Empty(await DrainAsync(broker, Outbox));
    }

    [Fact]
    public async Task a_checkpoint_commits_with_the_messages_it_covers()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Outbox));
        await using var _ = sut;
        await broker.CommitAsync(new MessageTransaction().Send(Outbox, Numbered(1)).SetCheckpoint("router", new GlobalPosition(7)), default);
        Assert.Equal(new GlobalPosition(7), await sut.Checkpoints.GetAsync("router", default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.CommitAsync(new MessageTransaction().Send("missing", Numbered(2)).SetCheckpoint("router", new GlobalPosition(9)), default));
        Assert.Equal(new GlobalPosition(7), await sut.Checkpoints.GetAsync("router", default));
    }

    [Fact]
    public async Task outbox_order_holds_across_batches_and_transactions()
    {
        // MassTransit #3512: messages of one outbox batch were delivered out of order.
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Outbox) { Fifo = true });
        await using var _ = sut;
        var sends = new List<Task>();
        for (var batch = 0; batch < 10; batch++)
        {
            var transaction = new MessageTransaction();
            for (var i = 0; i < 20; i++)
            {
                transaction.Send(Outbox, Numbered((batch * 20) + i) with { GroupKey = "order-1" });
            }

            // Awaited in turn: the order of the commits is the order the application chose.
            await broker.CommitAsync(transaction, default);
        }

        var received = new List<int>();
        while (await ReceiveNowAsync(broker, Outbox, max: 1) is [var d])
        {
            received.Add(NumberOf(d.Message));
            await broker.AcknowledgeAsync(d.Lease);
        }

        Assert.Equal(Enumerable.Range(0, 200), received);
    }

    [Fact]
    public async Task sends_inside_a_message_context_carry_its_correlation_and_causation()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Outbox));
        await using var _ = sut;
        using (MessageContext.Begin("order-flow", "cmd-9"))
        {
            await broker.CommitAsync(
                new MessageTransaction()
                    .Append(new AppendRequest(Order, ExpectedVersion.Any, [TestEvents.Numbered(1)]))
                    .Send(Outbox, Numbered(1)),
                default);
        }

        var delivery = Assert.Single(await ReceiveNowAsync(broker, Outbox));
        Assert.Equal(("order-flow", "cmd-9"), (delivery.Message.CorrelationId, delivery.Message.CausationId));
        var recorded = await sut.Store.ReadStreamAsync(Order).SingleAsync();
        Assert.Equal(("order-flow", "cmd-9"), (recorded.CorrelationId, recorded.CausationId));
    }
}
