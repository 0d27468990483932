using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>
/// Edges of durable queues on every backend: FIFO order through lease expiry, delayed releases, redrives and
/// deduplication; delay boundaries; receive limits; redrive and purge corner cases; statistics.
/// </summary>
public abstract class QueueEdgeConformanceTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Ledger = "edge-ledger";
    private static readonly QueueName Other = "edge-other";
    private static readonly QueueName Work = "edge-work";

    private static OutgoingMessage InGroup(string group, int n) => Numbered(n) with { GroupKey = group };

    private static async Task<List<int>> DrainOneByOneAsync(IMessageBroker broker, QueueName queue)
    {
        var numbers = new List<int>();
        while (await ReceiveNowAsync(broker, queue, max: 1) is [var delivery])
        {
            numbers.Add(NumberOf(delivery.Message));
            await broker.AcknowledgeAsync(delivery.Lease);
        }

        return numbers;
    }

    [Fact]
    public async Task a_fifo_head_whose_lease_runs_out_is_delivered_again_before_the_rest_of_its_group()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true, Lease = TimeSpan.FromSeconds(10) });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2), InGroup("a", 3)]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        Assert.Equal(1, NumberOf(head.Message));

        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Empty(await ReceiveNowAsync(broker, Ledger));
        Clock.Advance(TimeSpan.FromSeconds(5));
        var again = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        Assert.Equal(1, NumberOf(again.Message));
        Assert.True(again.PreviousLeaseExpired);
        Assert.Equal(2, again.ReceiveCount);
        await broker.AcknowledgeAsync(again.Lease);
        Assert.Equal([2, 3], await DrainOneByOneAsync(broker, Ledger));
    }

    [Fact]
    public async Task a_fifo_head_released_with_a_delay_is_counted_delayed_and_holds_its_group()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2), InGroup("b", 10)]);
        var heads = await ReceiveNowAsync(broker, Ledger);
        await broker.ReleaseAsync(heads.Single(d => NumberOf(d.Message) == 1).Lease, TimeSpan.FromMinutes(1), null, default);
        await broker.AcknowledgeAsync(heads.Single(d => NumberOf(d.Message) == 10).Lease);

        var stats = await broker.GetStatsAsync(Ledger, default);
        Assert.Equal((1L, 1L, 0L), (stats.Delayed, stats.Visible, stats.Leased));
        Assert.Empty(await ReceiveNowAsync(broker, Ledger));

        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal([1, 2], await DrainOneByOneAsync(broker, Ledger));
    }

    [Fact]
    public async Task a_fifo_dead_letter_redriven_to_another_queue_lets_its_group_move_on()
    {
        var (sut, broker) = await CreateBrokerAsync(
            new QueueDefinition(Ledger) { Fifo = true, MaxReceiveCount = 1 },
            new QueueDefinition(Other));
        await using var _ = sut;
        await broker.SendBatchAsync(Ledger, [InGroup("a", 1), InGroup("a", 2), InGroup("a", 3)]);
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.DeadLetterAsync(head.Lease, "poison", null, default);
        Assert.Equal(2, (await broker.GetStatsAsync(Ledger, default)).Parked);

        Assert.Equal(1, await broker.RedriveAsync(Ledger, new RedriveRequest { Target = Other }, default));
        var stats = await broker.GetStatsAsync(Ledger, default);
        Assert.Equal((0L, 0L, 2L), (stats.Parked, stats.DeadLettered, stats.Visible));
        Assert.Equal([2, 3], await DrainOneByOneAsync(broker, Ledger));
        Assert.Equal([1], await DrainAsync(broker, Other));
    }

    [Fact]
    public async Task a_message_redriven_into_a_fifo_queue_waits_behind_its_groups_earlier_messages()
    {
        var (sut, broker) = await CreateBrokerAsync(
            new QueueDefinition(Work) { MaxReceiveCount = 1 },
            new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        await broker.SendAsync(Work, InGroup("a", 1));
        var poison = Assert.Single(await ReceiveNowAsync(broker, Work));
        await broker.ReleaseAsync(poison.Lease, TimeSpan.Zero, null, default);
        await broker.SendBatchAsync(Ledger, [InGroup("a", 2), InGroup("a", 3)]);
        var leased = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        Assert.Equal(2, NumberOf(leased.Message));

        Assert.Equal(1, await broker.RedriveAsync(Work, new RedriveRequest { Target = Ledger }, default));
        Assert.Empty(await ReceiveNowAsync(broker, Ledger));
        await broker.AcknowledgeAsync(leased.Lease);
        Assert.Equal([3, 1], await DrainOneByOneAsync(broker, Ledger));
    }

    [Fact]
    public async Task a_deduplicated_send_leaves_a_fifo_group_in_order()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true });
        await using var _ = sut;
        var first = await broker.SendBatchAsync(Ledger, [InGroup("a", 1) with { DeduplicationId = "d1" }, InGroup("a", 2) with { DeduplicationId = "d2" }]);
        Assert.Equal((2, 0), (first.MessagesEnqueued, first.MessagesDeduplicated));
        var second = await broker.SendBatchAsync(Ledger, [InGroup("a", 9) with { DeduplicationId = "d1" }, InGroup("a", 3), InGroup("a", 8) with { DeduplicationId = "d3" }, InGroup("a", 7) with { DeduplicationId = "d3" }]);
        Assert.Equal((2, 2), (second.MessagesEnqueued, second.MessagesDeduplicated));
        Assert.Equal(4, (await broker.GetStatsAsync(Ledger, default)).Visible);
        Assert.Equal([1, 2, 3, 8], await DrainOneByOneAsync(broker, Ledger));
    }

    [Fact]
    public async Task a_delay_of_exactly_365_days_falls_due_exactly_then()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Retention = TimeSpan.FromDays(3650) });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1) with { Delay = TimeSpan.FromDays(365) });
        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).Delayed);

        Clock.Advance(TimeSpan.FromDays(365) - TimeSpan.FromTicks(1));
        Assert.Empty(await ReceiveNowAsync(broker, Work));
        Clock.Advance(TimeSpan.FromTicks(1));
        Assert.Equal([1], await DrainAsync(broker, Work));
    }

    [Fact]
    public async Task a_delay_just_over_365_days_is_refused()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Retention = TimeSpan.FromDays(3650) });
        await using var _ = sut;
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { Delay = TimeSpan.FromDays(365) + TimeSpan.FromTicks(1) }));
        Assert.Equal(0, (await broker.GetStatsAsync(Work, default)).Delayed);
    }

    [Fact]
    public async Task a_deliver_at_in_the_past_is_visible_now_even_on_a_queue_with_a_default_delay()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { DefaultDelay = TimeSpan.FromMinutes(10) });
        await using var _ = sut;
        await broker.SendBatchAsync(Work, [
            Numbered(1) with { DeliverAt = Clock.GetUtcNow() - TimeSpan.FromDays(1) },
            Numbered(2) with { Delay = TimeSpan.Zero },
            Numbered(3),
            Numbered(4) with { DeliverAt = Clock.GetUtcNow() + TimeSpan.FromMinutes(1), Delay = TimeSpan.FromMinutes(30) },
        ]);
        var stats = await broker.GetStatsAsync(Work, default);
        Assert.Equal((2L, 2L), (stats.Visible, stats.Delayed));
        Assert.Equal([1, 2], (await DrainAsync(broker, Work)).Order());
        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal([4], await DrainAsync(broker, Work));
        Clock.Advance(TimeSpan.FromMinutes(9));
        Assert.Equal([3], await DrainAsync(broker, Work));
    }

    [Fact]
    public async Task with_one_allowed_receive_a_lease_that_runs_out_dead_letters_the_message_on_the_next_receive()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1, Lease = TimeSpan.FromSeconds(10) });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        Assert.Single(await ReceiveNowAsync(broker, Work));
        Clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Empty(await ReceiveNowAsync(broker, Work));

        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal(1, letter.Attempts);
        Assert.Contains("lease ran out", letter.Reason, StringComparison.Ordinal);
        var stats = await broker.GetStatsAsync(Work, default);
        Assert.Equal((0L, 0L, 1L), (stats.Visible, stats.Leased, stats.DeadLettered));
    }

    [Fact]
    public async Task with_one_allowed_receive_a_returned_delivery_is_not_dead_lettered()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
        await broker.ReturnAsync(delivery.Lease, default);
        var again = Assert.Single(await ReceiveNowAsync(broker, Work));
        Assert.Equal(1, again.ReceiveCount);
        await broker.AcknowledgeAsync(again.Lease);
        Assert.Equal(0, (await broker.GetStatsAsync(Work, default)).DeadLettered);
    }

    [Fact]
    public async Task a_redriven_message_gets_all_its_receives_again_and_counts_its_redrives()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 2 });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        for (var i = 0; i < 2; i++)
        {
            await broker.ReleaseAsync(Assert.Single(await ReceiveNowAsync(broker, Work)).Lease, TimeSpan.Zero, null, default);
        }

        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).DeadLettered);
        Assert.Equal(1, await broker.RedriveAsync(Work, new RedriveRequest(), default));
        var first = Assert.Single(await ReceiveNowAsync(broker, Work));
        Assert.Equal((1, 1), (first.ReceiveCount, first.Redrives));
        await broker.ReleaseAsync(first.Lease, TimeSpan.Zero, null, default);
        var second = Assert.Single(await ReceiveNowAsync(broker, Work));
        Assert.Equal(2, second.ReceiveCount);
        await broker.ReleaseAsync(second.Lease, TimeSpan.Zero, null, default);
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal((2, 1), (letter.Attempts, letter.Redrives));
    }

    [Fact]
    public async Task a_redrive_or_purge_naming_a_live_message_moves_and_deletes_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var live = Numbered(1);
        await broker.SendAsync(Work, live);
        Assert.Equal(0, await broker.RedriveAsync(Work, new RedriveRequest { MessageIds = [live.Id] }, default));
        Assert.Equal(0, await broker.PurgeDeadLettersAsync(Work, [live.Id], default));
        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).Visible);
        Assert.Equal([1], await DrainAsync(broker, Work));
    }

    [Fact]
    public async Task a_redrive_to_an_unknown_queue_is_refused_and_moves_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        await broker.ReleaseAsync(Assert.Single(await ReceiveNowAsync(broker, Work)).Lease, TimeSpan.Zero, null, default);
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.RedriveAsync(Work, new RedriveRequest { Target = "edge-missing" }, default));
        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).DeadLettered);
    }

    [Fact]
    public async Task a_dead_letter_redriven_back_to_its_queue_keeps_its_place_in_the_listing_and_its_old_token_stays_lost()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
        await broker.DeadLetterAsync(delivery.Lease, "bad", null, default);
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal(delivery.Lease.Sequence, letter.Sequence);
        Assert.Equal(1, await broker.RedriveAsync(Work, new RedriveRequest(), default));
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(delivery.Lease));
        var again = Assert.Single(await ReceiveNowAsync(broker, Work));
        Assert.Equal(delivery.Lease.Sequence, again.Lease.Sequence);
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(delivery.Lease));
        await broker.AcknowledgeAsync(again.Lease);
    }

    [Fact]
    public async Task an_expired_lease_not_yet_taken_can_be_extended_released_or_dead_lettered()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Lease = TimeSpan.FromSeconds(10) });
        await using var _ = sut;
        await broker.SendBatchAsync(Work, [Numbered(1), Numbered(2)]);
        var both = await ReceiveNowAsync(broker, Work);
        Clock.Advance(TimeSpan.FromSeconds(11));
        await broker.ExtendLeaseAsync(both[0].Lease, TimeSpan.FromSeconds(30), default);
        await broker.DeadLetterAsync(both[1].Lease, "late", null, default);
        var stats = await broker.GetStatsAsync(Work, default);
        Assert.Equal((0L, 1L, 1L), (stats.Visible, stats.Leased, stats.DeadLettered));
        await broker.AcknowledgeAsync(both[0].Lease);
    }

    [Fact]
    public async Task a_lowered_max_receive_count_dead_letters_a_message_at_its_next_receive()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 5 });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        for (var i = 0; i < 2; i++)
        {
            await broker.ReleaseAsync(Assert.Single(await ReceiveNowAsync(broker, Work)).Lease, TimeSpan.Zero, null, default);
        }

        await broker.DeclareQueueAsync(new QueueDefinition(Work) { MaxReceiveCount = 2 }, default);
        Assert.Empty(await ReceiveNowAsync(broker, Work));
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal(2, letter.Attempts);
    }

    [Fact]
    public async Task the_oldest_age_ignores_a_message_released_with_a_delay()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        Clock.Advance(TimeSpan.FromMinutes(1));
        await broker.ReleaseAsync(Assert.Single(await ReceiveNowAsync(broker, Work)).Lease, TimeSpan.FromMinutes(5), null, default);
        var stats = await broker.GetStatsAsync(Work, default);
        Assert.Equal((0L, 0L, 1L), (stats.Visible, stats.Leased, stats.Delayed));
        Assert.Null(stats.OldestAge);
    }

    [Fact]
    public async Task bad_settlement_and_listing_arguments_are_refused_with_typed_errors()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ReleaseAsync(delivery.Lease, TimeSpan.FromTicks(-1), null, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ReleaseAsync(delivery.Lease, TimeSpan.FromDays(365) + TimeSpan.FromTicks(1), null, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ExtendLeaseAsync(delivery.Lease, TimeSpan.Zero, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.DeadLetterAsync(delivery.Lease, " ", null, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ListDeadLettersAsync(Work, 0, 0, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.RedriveAsync(Work, new RedriveRequest { MessageIds = [] }, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.GetStatsAsync("edge-missing", default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.ListDeadLettersAsync("edge-missing", 0, 10, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.PurgeDeadLettersAsync("edge-missing", null, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.RedriveAsync("edge-missing", new RedriveRequest(), default));

        // Nothing above changed the delivery.
        await broker.ReleaseAsync(delivery.Lease, TimeSpan.FromDays(365), null, default);
        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).Delayed);
    }

    [Fact]
    public async Task a_refused_commit_does_not_burn_its_deduplication_ids()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Ledger) { Fifo = true, MaxMessageSize = 64 });
        await using var _ = sut;
        await broker.SendAsync(Ledger, InGroup("a", 1));
        var head = Assert.Single(await ReceiveNowAsync(broker, Ledger));
        await broker.AcknowledgeAsync(head.Lease);

        // A stale lease fails the whole commit, and an oversized message does too: neither may remember "d2".
        var stale = new MessageTransaction().Acknowledge(head.Lease).Send(Ledger, InGroup("a", 2) with { DeduplicationId = "d2" });
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.CommitAsync(stale, default));
        await Assert.ThrowsAsync<MessageTooLargeException>(() => broker.SendBatchAsync(Ledger, [
            InGroup("a", 2) with { DeduplicationId = "d2" },
            InGroup("a", 3) with { Metadata = new Dictionary<string, string> { ["pad"] = new string('x', 100) } },
        ]));

        var retry = await broker.SendAsync(Ledger, InGroup("a", 2) with { DeduplicationId = "d2" });
        Assert.Equal((1, 0), (retry.MessagesEnqueued, retry.MessagesDeduplicated));
        Assert.Equal([2], await DrainOneByOneAsync(broker, Ledger));
    }

    // The expiry was fixed when the message was sent: a queue declared again with a retention of an hour still held,
    // counted and delivered one sent two hours before.
    [Fact]
    public async Task a_queue_declared_again_with_a_shorter_retention_drops_what_was_sent_longer_ago_than_it()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        Clock.Advance(TimeSpan.FromHours(2));
        await broker.SendAsync(Work, Numbered(2));

        await broker.DeclareQueueAsync(new QueueDefinition(Work) { Retention = TimeSpan.FromHours(1) }, default);

        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).Visible);
        Assert.Equal([2], await DrainOneByOneAsync(broker, Work));
    }

    [Fact]
    public async Task a_queue_declared_again_with_a_longer_retention_keeps_what_the_old_one_would_have_dropped()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Retention = TimeSpan.FromHours(1) });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));

        await broker.DeclareQueueAsync(new QueueDefinition(Work) { Retention = TimeSpan.FromHours(3) }, default);
        Clock.Advance(TimeSpan.FromHours(2));

        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).Visible);
        Assert.Equal([1], await DrainOneByOneAsync(broker, Work));
        Clock.Advance(TimeSpan.FromHours(2));
        await broker.SendAsync(Work, Numbered(2));
        Clock.Advance(TimeSpan.FromHours(3));
        Assert.Empty(await ReceiveNowAsync(broker, Work));
    }

    // An id seen under a window of five minutes was still refused two minutes after the window became one minute.
    [Fact]
    public async Task a_queue_declared_again_with_a_shorter_deduplication_window_forgets_ids_seen_longer_ago_than_it()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1) with { DeduplicationId = "d1" });
        await broker.DeclareQueueAsync(new QueueDefinition(Work) { DeduplicationWindow = TimeSpan.FromMinutes(1) }, default);
        Clock.Advance(TimeSpan.FromMinutes(2));

        var again = await broker.SendAsync(Work, Numbered(2) with { DeduplicationId = "d1" });

        Assert.Equal((1, 0), (again.MessagesEnqueued, again.MessagesDeduplicated));
        Assert.Equal([1, 2], await DrainOneByOneAsync(broker, Work));
    }

    [Fact]
    public async Task a_queue_whose_deduplication_was_turned_off_and_on_again_does_not_remember_ids_from_before()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1) with { DeduplicationId = "d1" });
        await broker.DeclareQueueAsync(new QueueDefinition(Work) { DeduplicationWindow = TimeSpan.Zero }, default);
        await broker.DeclareQueueAsync(new QueueDefinition(Work), default);

        var again = await broker.SendAsync(Work, Numbered(2) with { DeduplicationId = "d1" });
        var third = await broker.SendAsync(Work, Numbered(3) with { DeduplicationId = "d1" });

        Assert.Equal((1, 0), (again.MessagesEnqueued, again.MessagesDeduplicated));
        Assert.Equal((0, 1), (third.MessagesEnqueued, third.MessagesDeduplicated));
    }
}
