using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>FIFO queues: order within a group, groups in parallel, deduplication, and order-preserving dead letters.</summary>
public abstract class FifoQueueTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Ledger = "ledger";

    private static OutgoingMessage InGroup(string group, int n) => Numbered(n) with { GroupKey = group };

    [Fact]
    public async Task a_parked_message_past_its_retention_is_dropped_and_no_longer_counted()
    {
        var ledger = new QueueDefinition(Ledger) { Fifo = true, MaxReceiveCount = 1, Retention = TimeSpan.FromHours(1) };
        var (sut, broker) = await CreateBrokerAsync(ledger);
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2)]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.ReleaseAsync(head.Lease, TimeSpan.Zero, null, default);
        Assert.Equal((0L, 1L, 1L), await CountsAsync());

        Clock.Advance(TimeSpan.FromHours(2));
        Assert.Equal((0L, 0L, 1L), await CountsAsync());

        async Task<(long Visible, long Parked, long DeadLettered)> CountsAsync() =>
            await broker.GetStatsAsync(Ledger, default) is var stats ? (stats.Visible, stats.Parked, stats.DeadLettered) : default;
    }

    // A delayed message behind a dead-lettered head was counted as delayed and as parked, so the gauge's states
    // added up to more than the queue held.
    [Fact]
    public async Task a_parked_message_is_counted_as_parked_alone_whatever_its_own_state()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true, MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2), InGroup("a", 3) with { Delay = TimeSpan.FromHours(1) }, InGroup("b", 10) with { Delay = TimeSpan.FromHours(1) }]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.ReleaseAsync(head.Lease, TimeSpan.Zero, null, default);

        var stats = await broker.GetStatsAsync(Ledger, default);
        Assert.Equal((0L, 0L, 1L, 1L, 2L), (stats.Visible, stats.Leased, stats.Delayed, stats.DeadLettered, stats.Parked));
    }

    // No receive can take a parked message: the age it set grew for ever on a queue whose consumers kept up, and
    // degraded the messaging check as if they had stalled. The dead letter before it is counted for itself.
    [Fact]
    public async Task a_parked_message_does_not_age_the_queue()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true, MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2)]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.ReleaseAsync(head.Lease, TimeSpan.Zero, null, default);
        Clock.Advance(TimeSpan.FromMinutes(10));

        var stats = await broker.GetStatsAsync(Ledger, default);
        Assert.Equal((0L, 1L, 1L), (stats.Visible, stats.DeadLettered, stats.Parked));
        Assert.Null(stats.OldestAge);

        await broker.SendAsync(Ledger, InGroup("b", 10));
        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(TimeSpan.FromMinutes(1), (await broker.GetStatsAsync(Ledger, default)).OldestAge);
    }

    [Fact]
    public async Task a_group_is_delivered_one_at_a_time_in_order_while_groups_run_in_parallel()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("b", 10), InGroup("a", 2), InGroup("b", 11), InGroup("a", 3)]);

        var first = await ReceiveNowAsync(broker, Ledger, max: 10);
        Assert.Equal([1, 10], first.Select(d => NumberOf(d.Message)));

        // Each group waits while its head is leased.
        Assert.Empty(await ReceiveNowAsync(broker, Ledger, max: 10));
        await broker.AcknowledgeAsync(first[0].Lease);
        Assert.Equal([2], (await ReceiveNowAsync(broker, Ledger, max: 10)).Select(d => NumberOf(d.Message)));
    }

    [Fact]
    public async Task a_released_head_is_delivered_again_before_the_rest_of_its_group()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2)]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.ReleaseAsync(head.Lease, TimeSpan.FromSeconds(5), null, default);
        Assert.Empty(await ReceiveNowAsync(broker, Ledger));
        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal([1, 2], await DrainOneByOneAsync(broker));
    }

    [Fact]
    public async Task a_dead_lettered_head_parks_its_group_until_redriven_keeping_the_order()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true, MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2), InGroup("a", 3), InGroup("b", 10)]);
        var heads = await ReceiveNowAsync(broker, Ledger);
        await broker.ReleaseAsync(heads.Single(d => NumberOf(d.Message) == 1).Lease, TimeSpan.Zero, FailureInfo.From(new InvalidOperationException("x")), default);
        await broker.AcknowledgeAsync(heads.Single(d => NumberOf(d.Message) == 10).Lease);

        // Group a is parked behind its dead head; group b carries on.
        Assert.Empty(await ReceiveNowAsync(broker, Ledger));
        var stats = await broker.GetStatsAsync(Ledger, default);
        Assert.Equal(1, stats.DeadLettered);
        Assert.Equal(2, stats.Parked);
        Assert.Equal(0, stats.Visible);
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Ledger, 0, 10, default));
        Assert.True(letter.ParksGroup);

        await broker.RedriveAsync(Ledger, new RedriveRequest(), default);
        Assert.Equal([1, 2, 3], await DrainOneByOneAsync(broker));
    }

    [Fact]
    public async Task purging_a_parked_head_skips_it_and_lets_its_group_move_on()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2)]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.DeadLetterAsync(head.Lease, "cannot apply", null, default);
        Assert.Empty(await ReceiveNowAsync(broker, Ledger));
        Assert.Equal(1, await broker.PurgeDeadLettersAsync(Ledger, [head.Message.Id], default));
        Assert.Equal([2], await DrainOneByOneAsync(broker));
    }

    [Fact]
    public async Task a_deduplication_id_is_honoured_within_the_window_only()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true, DeduplicationWindow = TimeSpan.FromMinutes(5) });
        await using var _ = sut;
        var first = await broker.SendAsync(Ledger, InGroup("a", 1) with { DeduplicationId = "pay-1" });
        var again = await broker.SendAsync(Ledger, InGroup("a", 2) with { DeduplicationId = "pay-1" });
        Assert.Equal((1, 0), (first.MessagesEnqueued, first.MessagesDeduplicated));
        Assert.Equal((0, 1), (again.MessagesEnqueued, again.MessagesDeduplicated));
        Clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(1, (await broker.SendAsync(Ledger, InGroup("a", 3) with { DeduplicationId = "pay-1" })).MessagesEnqueued);
        Assert.Equal([1, 3], await DrainOneByOneAsync(broker));
    }

    [Fact]
    public async Task a_fifo_send_without_a_group_key_is_refused_and_writes_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        var error = await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendBatchAsync(Ledger, [InGroup("a", 1), Numbered(2)]));
        Assert.Contains("group key", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, (await broker.GetStatsAsync(Ledger, default)).Visible);
    }

    private async Task<List<int>> DrainOneByOneAsync(IMessageBroker broker)
    {
        var numbers = new List<int>();
        while (await ReceiveNowAsync(broker, Ledger, max: 1) is [var delivery])
        {
            numbers.Add(NumberOf(delivery.Message));
            await broker.AcknowledgeAsync(delivery.Lease);
        }

        return numbers;
    }
}
