using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>Durable queues: send, receive under a lease, settle.</summary>
public abstract class QueueTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Orders = "orders";

    [Fact]
    public async Task a_sent_message_is_received_with_its_envelope_and_acknowledged_once()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        var sent = Numbered(1) with { Subject = "order-1", DataSchema = "urn:schema:1", Metadata = new Dictionary<string, string> { ["tenant"] = "t1" } };
        using (MessageContext.Begin("corr-1", "cause-1"))
        {
            Assert.Equal(1, (await broker.SendAsync(Orders, sent)).MessagesEnqueued);
        }

        var deliveries = await ReceiveNowAsync(broker, Orders);
        var delivery = Assert.Single(deliveries);
        Assert.Equal(sent.Id, delivery.Message.Id);
        Assert.Equal("test.message", delivery.Message.Type);
        Assert.Equal("urn:test", delivery.Message.Source);
        Assert.Equal("order-1", delivery.Message.Subject);
        Assert.Equal("urn:schema:1", delivery.Message.DataSchema);
        Assert.Equal("corr-1", delivery.Message.CorrelationId);
        Assert.Equal("cause-1", delivery.Message.CausationId);
        Assert.Equal("t1", delivery.Message.Metadata["tenant"]);
        Assert.Equal(Clock.GetUtcNow(), delivery.Message.Time);
        Assert.Equal(1, NumberOf(delivery.Message));
        Assert.Equal(1, delivery.ReceiveCount);
        Assert.Equal(Clock.GetUtcNow() + TimeSpan.FromSeconds(30), delivery.LeaseExpiresAt);

        // Leased: invisible to a second receiver.
        Assert.Empty(await ReceiveNowAsync(broker, Orders));
        await broker.AcknowledgeAsync(delivery.Lease);
        Clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Empty(await ReceiveNowAsync(broker, Orders));
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(delivery.Lease));
    }

    [Fact]
    public async Task a_message_without_a_context_correlates_to_itself()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        var sent = Numbered(1);
        await broker.SendAsync(Orders, sent);
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Orders));
        Assert.Equal(sent.Id.ToString(), delivery.Message.CorrelationId);
        Assert.Null(delivery.Message.CausationId);
    }

    [Fact]
    public async Task a_batch_is_sent_in_one_commit_and_received_in_batches_in_order()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendBatchAsync(Orders, Enumerable.Range(0, 25).Select(n => Numbered(n)));

        var first = await ReceiveNowAsync(broker, Orders, max: 10);
        Assert.Equal(Enumerable.Range(0, 10), first.Select(d => NumberOf(d.Message)));
        var rest = await DrainAsync(broker, Orders);
        Assert.Equal(Enumerable.Range(10, 15), rest);
    }

    [Fact]
    public async Task a_lease_that_runs_out_makes_the_message_visible_again_and_the_late_acknowledgement_is_refused()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(7));
        var first = Assert.Single(await ReceiveNowAsync(broker, Orders, lease: TimeSpan.FromSeconds(10)));

        Clock.Advance(TimeSpan.FromSeconds(10));
        var second = Assert.Single(await ReceiveNowAsync(broker, Orders));
        Assert.Equal(first.Message.Id, second.Message.Id);
        Assert.Equal(2, second.ReceiveCount);
        Assert.True(second.PreviousLeaseExpired);

        // The hung consumer wakes up late: its acknowledgement must not delete what the second consumer holds.
        var late = await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(first.Lease));
        Assert.Equal(first.Lease, late.Lease);
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.ReleaseAsync(first.Lease, TimeSpan.Zero, null, default));
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.ExtendLeaseAsync(first.Lease, TimeSpan.FromMinutes(1), default));
        Assert.Equal(1, (await broker.GetStatsAsync(Orders, default)).Leased);

        await broker.AcknowledgeAsync(second.Lease);
        Assert.Equal(0, (await broker.GetStatsAsync(Orders, default)).Leased);
    }

    [Fact]
    public async Task a_stale_lease_token_never_settles_a_later_message()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        var first = Assert.Single(await ReceiveNowAsync(broker, Orders));
        await broker.AcknowledgeAsync(first.Lease);

        // The next message must not take the place (and so the token) of the acknowledged one.
        await broker.SendAsync(Orders, Numbered(2));
        var second = Assert.Single(await ReceiveNowAsync(broker, Orders));
        Assert.NotEqual(first.Lease, second.Lease);
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(first.Lease));
        Assert.Equal(1, (await broker.GetStatsAsync(Orders, default)).Leased);
    }

    [Fact]
    public async Task an_expired_lease_not_yet_taken_by_anyone_can_still_be_settled()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Orders, lease: TimeSpan.FromSeconds(1)));
        Clock.Advance(TimeSpan.FromSeconds(5));
        await broker.AcknowledgeAsync(delivery.Lease);
        Assert.Empty(await ReceiveNowAsync(broker, Orders));
    }

    [Fact]
    public async Task an_acknowledgement_batch_with_one_lost_lease_deletes_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendBatchAsync(Orders, [Numbered(1), Numbered(2)]);
        var deliveries = await ReceiveNowAsync(broker, Orders, lease: TimeSpan.FromSeconds(1));
        Clock.Advance(TimeSpan.FromSeconds(1));
        var again = await ReceiveNowAsync(broker, Orders, max: 1);
        Assert.Single(again);

        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync([.. deliveries.Select(d => d.Lease)], default));
        var stats = await broker.GetStatsAsync(Orders, default);
        Assert.Equal(1, stats.Leased);
        Assert.Equal(1, stats.Visible);
    }

    [Fact]
    public async Task an_acknowledgement_batch_with_a_message_s_stale_and_current_leases_is_refused_whole()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        var first = Assert.Single(await ReceiveNowAsync(broker, Orders, lease: TimeSpan.FromSeconds(1)));
        Clock.Advance(TimeSpan.FromSeconds(1));
        var second = Assert.Single(await ReceiveNowAsync(broker, Orders));
        Assert.Equal(first.Message.Id, second.Message.Id);

        // A consumer that prefetched holds both tokens of the message: the stale one must fail the batch, whichever
        // comes first, and the current holder keeps its lease.
        var refused = await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync([second.Lease, first.Lease], default));
        Assert.Equal(first.Lease, refused.Lease);
        Assert.Equal(1, (await broker.GetStatsAsync(Orders, default)).Leased);
        await broker.AcknowledgeAsync(second.Lease);
        Assert.Equal(0, (await broker.GetStatsAsync(Orders, default)).Leased);
    }

    [Fact]
    public async Task a_released_message_comes_back_after_its_delay_with_the_failure_recorded()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Orders));
        var failure = FailureInfo.From(new InvalidOperationException("payment gateway down"));
        await broker.ReleaseAsync(delivery.Lease, TimeSpan.FromSeconds(30), failure, default);

        Assert.Empty(await ReceiveNowAsync(broker, Orders));
        Assert.Equal(1, (await broker.GetStatsAsync(Orders, default)).Delayed);
        Clock.Advance(TimeSpan.FromSeconds(30));
        var again = Assert.Single(await ReceiveNowAsync(broker, Orders));
        Assert.Equal(2, again.ReceiveCount);
        Assert.False(again.PreviousLeaseExpired);
        Assert.Equal(failure, again.LastFailure);
    }

    [Fact]
    public async Task a_returned_delivery_is_visible_at_once_and_its_receive_is_not_counted()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders) { MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        var first = Assert.Single(await ReceiveNowAsync(broker, Orders));
        await broker.ReturnAsync(first.Lease, default);
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.ReturnAsync(first.Lease, default));

        // On its only allowed receive, yet not dead-lettered: returning is not failing.
        var again = Assert.Single(await ReceiveNowAsync(broker, Orders));
        Assert.Equal(1, again.ReceiveCount);
        await broker.AcknowledgeAsync(again.Lease);
        Assert.Equal(new QueueStats { Queue = Orders }, await broker.GetStatsAsync(Orders, default));
    }

    [Fact]
    public async Task an_extended_lease_keeps_the_message_hidden()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Orders, lease: TimeSpan.FromSeconds(10)));
        Clock.Advance(TimeSpan.FromSeconds(8));
        await broker.ExtendLeaseAsync(delivery.Lease, TimeSpan.FromSeconds(60), default);
        Clock.Advance(TimeSpan.FromSeconds(30));
        Assert.Empty(await ReceiveNowAsync(broker, Orders));
        await broker.AcknowledgeAsync(delivery.Lease);
    }

    [Fact]
    public async Task delayed_and_scheduled_messages_stay_hidden_until_due()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        var start = Clock.GetUtcNow();
        await broker.SendBatchAsync(Orders, [
            Numbered(1) with { Delay = TimeSpan.FromSeconds(10) },
            Numbered(2) with { DeliverAt = start + TimeSpan.FromSeconds(5) },
            Numbered(3),
        ]);

        Assert.Equal([3], await DrainAsync(broker, Orders));
        Assert.Equal(2, (await broker.GetStatsAsync(Orders, default)).Delayed);
        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal([2], await DrainAsync(broker, Orders));
        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal([1], await DrainAsync(broker, Orders));
    }

    [Fact]
    public async Task a_queue_default_delay_applies_to_messages_without_their_own()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders) { DefaultDelay = TimeSpan.FromSeconds(20) });
        await using var _ = sut;
        await broker.SendBatchAsync(Orders, [Numbered(1), Numbered(2) with { Delay = TimeSpan.Zero }]);
        Assert.Equal([2], await DrainAsync(broker, Orders));
        Clock.Advance(TimeSpan.FromSeconds(20));
        Assert.Equal([1], await DrainAsync(broker, Orders));
    }

    [Fact]
    public async Task messages_past_the_retention_period_are_dropped_not_delivered()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders) { Retention = TimeSpan.FromHours(1) });
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        Clock.Advance(TimeSpan.FromMinutes(30));
        await broker.SendAsync(Orders, Numbered(2));
        Clock.Advance(TimeSpan.FromMinutes(31));

        // Past its retention, the first no longer counts, even before a receive drops it.
        var stats = await broker.GetStatsAsync(Orders, default);
        Assert.Equal((1L, TimeSpan.FromMinutes(31)), (stats.Visible, stats.OldestAge));
        Assert.Equal([2], await DrainAsync(broker, Orders));
    }

    [Fact]
    public async Task a_message_whose_lease_runs_out_past_its_retention_is_no_longer_counted()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders) { Retention = TimeSpan.FromHours(1) });
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(1));
        Clock.Advance(TimeSpan.FromMinutes(30));
        await broker.SendAsync(Orders, Numbered(2));
        Clock.Advance(TimeSpan.FromMinutes(25));
        Assert.Equal(1, NumberOf(Assert.Single(await ReceiveNowAsync(broker, Orders, max: 1, lease: TimeSpan.FromMinutes(10))).Message));

        // Past its retention but still under its lease: its receiver may yet settle it, so it is counted as leased.
        Clock.Advance(TimeSpan.FromMinutes(6));
        var held = await broker.GetStatsAsync(Orders, default);
        Assert.Equal((1L, 1L, TimeSpan.FromMinutes(61)), (held.Visible, held.Leased, held.OldestAge));

        // Once the lease runs out the next receive drops it, so it is neither visible nor the oldest.
        Clock.Advance(TimeSpan.FromMinutes(5));
        var stats = await broker.GetStatsAsync(Orders, default);
        Assert.Equal((1L, 0L, TimeSpan.FromMinutes(36)), (stats.Visible, stats.Leased, stats.OldestAge));
        Assert.Equal([2], await DrainAsync(broker, Orders));
        Assert.Equal(new QueueStats { Queue = Orders }, await broker.GetStatsAsync(Orders, default));
    }

    [Fact]
    public async Task a_long_poll_is_woken_by_a_send_without_the_clock_moving()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        var receive = broker.ReceiveAsync(Orders, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default);
        await Clock.WhenTimerArmedAsync().Bounded();
        Assert.False(receive.IsCompleted);

        await broker.SendAsync(Orders, Numbered(9));
        var delivery = Assert.Single(await receive.Bounded());
        Assert.Equal(9, NumberOf(delivery.Message));
    }

    [Fact]
    public async Task a_long_poll_returns_empty_when_its_wait_runs_out()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        var receive = broker.ReceiveAsync(Orders, new ReceiveOptions { Wait = TimeSpan.FromSeconds(1) }, default);
        await Clock.WhenTimerArmedAsync().Bounded();
        Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Empty(await receive.Bounded());
    }

    [Fact]
    public async Task a_long_poll_wakes_when_a_delayed_message_falls_due()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.SendAsync(Orders, Numbered(4) with { Delay = TimeSpan.FromSeconds(3) });
        var receive = broker.ReceiveAsync(Orders, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, default);
        await Clock.WhenTimerArmedAsync().Bounded();
        Clock.Advance(TimeSpan.FromSeconds(3));

        // A timer the receive arms while the clock moves falls due only on a later step: step on until it returns.
        await Wait.UntilAsync(
            () =>
            {
                if (!receive.IsCompleted)
                {
                    Clock.Advance(TimeSpan.FromMilliseconds(100));
                }

                return receive.IsCompleted;
            },
            "the long poll returns");
        Assert.Equal(4, NumberOf(Assert.Single(await receive.Bounded()).Message));
    }

    [Fact]
    public async Task a_long_poll_can_be_cancelled()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        using var cts = new CancellationTokenSource();
        var receive = broker.ReceiveAsync(Orders, new ReceiveOptions { Wait = TimeSpan.FromSeconds(20) }, cts.Token);
        await Clock.WhenTimerArmedAsync().Bounded();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receive.Bounded());
    }

    [Fact]
    public async Task queue_statistics_count_each_state_and_the_oldest_age()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders) { MaxReceiveCount = 1 });
        await using var _ = sut;
        Assert.Equal(new QueueStats { Queue = Orders }, await broker.GetStatsAsync(Orders, default));

        // Sent first but delayed: it waits by design, so it counts as delayed and not in the oldest age.
        await broker.SendAsync(Orders, Numbered(0) with { Delay = TimeSpan.FromHours(1) });
        Clock.Advance(TimeSpan.FromSeconds(5));
        await broker.SendBatchAsync(Orders, [Numbered(1), Numbered(2), Numbered(3), Numbered(4) with { Delay = TimeSpan.FromMinutes(1) }]);
        Clock.Advance(TimeSpan.FromSeconds(10));
        var received = await ReceiveNowAsync(broker, Orders, max: 2);
        await broker.DeadLetterAsync(received[1].Lease, "bad", null, default);

        var stats = await broker.GetStatsAsync(Orders, default);
        Assert.Equal(1, stats.Visible);
        Assert.Equal(1, stats.Leased);
        Assert.Equal(2, stats.Delayed);
        Assert.Equal(1, stats.DeadLettered);
        Assert.Equal(0, stats.Parked);
        Assert.Equal(TimeSpan.FromSeconds(10), stats.OldestAge);
        Assert.True(stats.Exact);
    }

    [Fact]
    public async Task redeclaring_a_queue_updates_its_settings_but_not_its_kind()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Orders));
        await using var _ = sut;
        await broker.DeclareQueueAsync(new QueueDefinition(Orders) { MaxReceiveCount = 9 }, default);
        Assert.Equal(9, (await broker.GetQueueAsync(Orders, default))!.MaxReceiveCount);
        var conflict = await Assert.ThrowsAsync<QueueDefinitionConflictException>(() => broker.DeclareQueueAsync(new QueueDefinition(Orders) { Fifo = true }, default));
        Assert.Equal(Orders, conflict.Queue);
        Assert.False((await broker.GetQueueAsync(Orders, default))!.Fifo);
        Assert.Null(await broker.GetQueueAsync("missing", default));
        Assert.Equal([Orders], (await broker.ListQueuesAsync(default)).Select(q => q.Name));
    }
}
