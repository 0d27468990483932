using Cairn.Conformance.Support;
using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>Dead-letter queues: how messages get there, what they record, and how they come back.</summary>
public abstract class DeadLetterTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Work = "work";
    private static readonly QueueName Other = "other";

    [Fact]
    public async Task a_poison_message_is_dead_lettered_after_the_maximum_receives_with_its_history()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 3 });
        await using var _ = sut;
        var sent = Numbered(1);
        await broker.SendAsync(Work, sent);
        var firstReceived = Clock.GetUtcNow();
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
            Assert.Equal(attempt, delivery.ReceiveCount);
            await broker.ReleaseAsync(delivery.Lease, TimeSpan.FromSeconds(1), FailureInfo.From(new FormatException($"bad amount, attempt {attempt}")), default);
            Clock.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.Empty(await ReceiveNowAsync(broker, Work));
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 100, default));
        Assert.Equal(sent.Id, letter.Message.Id);
        Assert.Equal(1, NumberOf(letter.Message));
        Assert.Equal(3, letter.Attempts);
        Assert.Contains("3 allowed receives", letter.Reason, StringComparison.Ordinal);
        Assert.Equal(typeof(FormatException).FullName, letter.Failure!.Type);
        Assert.Equal("bad amount, attempt 3", letter.Failure.Message);
        Assert.Contains(nameof(FormatException), letter.Failure.StackTrace, StringComparison.Ordinal);
        Assert.Equal(firstReceived, letter.FirstReceivedAt);
        Assert.Equal(firstReceived + TimeSpan.FromSeconds(2), letter.LastReceivedAt);
        Assert.Equal(firstReceived + TimeSpan.FromSeconds(2), letter.DeadLetteredAt);
        Assert.Equal(firstReceived, letter.EnqueuedAt);
        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).DeadLettered);

        var inspected = await broker.GetDeadLetterAsync(Work, sent.Id, default);
        Assert.Equal(letter.Sequence, inspected!.Sequence);
    }

    // Nothing committed is reported failed, or a caller retrying a dead-lettering acts twice: a metrics listener that
    // threw while the dead letter was counted, after the commit, had the dead-lettering reported failed.
    [Fact]
    public async Task a_dead_lettering_is_reported_done_when_a_metrics_listener_throws()
    {
        // A queue of its own: the listener sees every test's measurements, and throws only for this one's.
        var queue = new QueueName("dl-" + Guid.NewGuid().ToString("N"));
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(queue));
        await using var _ = sut;
        await broker.SendAsync(queue, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, queue));

        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "cairn.messaging.dead_lettered")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "queue" && Equals(tag.Value, queue.Value))
                {
                    throw new InvalidOperationException("a metrics exporter failed");
                }
            }
        });
        listener.Start();

        var reported = await Record.ExceptionAsync(() => broker.DeadLetterAsync(delivery.Lease, "poison", null, default));
        listener.Dispose();

        Assert.Null(reported);
        Assert.Single(await broker.ListDeadLettersAsync(queue, 0, 10, default));
    }

    [Fact]
    public async Task a_message_whose_leases_keep_running_out_is_dead_lettered_too()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 2, Lease = TimeSpan.FromSeconds(5) });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        Assert.Single(await ReceiveNowAsync(broker, Work));
        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Single(await ReceiveNowAsync(broker, Work));
        Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Empty(await ReceiveNowAsync(broker, Work));
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Contains("lease ran out", letter.Reason, StringComparison.Ordinal);
        Assert.Equal(2, letter.Attempts);
    }

    [Fact]
    public async Task a_message_dead_lettered_by_hand_records_the_reason()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
        await broker.DeadLetterAsync(delivery.Lease, "validation failed: amount is negative", FailureInfo.From(new ArgumentException("amount")), default);
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal("validation failed: amount is negative", letter.Reason);
        Assert.Equal(1, letter.Attempts);
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(delivery.Lease));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.DeadLetterAsync(delivery.Lease, " ", null, default));
    }

    [Fact]
    public async Task a_reason_is_kept_as_free_text_with_what_no_text_column_holds_replaced()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));

        // A reason built from an exception's message may hold anything: NUL and unpaired surrogates become U+FFFD.
        await broker.DeadLetterAsync(delivery.Lease, "line one\nline two\t\0 \uD83D\uDE00 \uDC00 \uD800", FailureInfo.From(new FormatException("bad \0 byte")), default);
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal("line one\nline two\t\uFFFD \uD83D\uDE00 \uFFFD \uFFFD", letter.Reason);
        Assert.Equal("bad \0 byte", letter.Failure!.Message);
    }

    [Fact]
    public async Task dead_letters_redriven_into_a_fifo_queue_join_their_group_and_one_without_a_group_waits_for_none()
    {
        QueueName ledger = "ledger";
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(ledger) { Fifo = true }, new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(ledger, Numbered(1) with { GroupKey = "a" });
        await broker.SendBatchAsync(Work, [Numbered(2) with { GroupKey = "a" }, Numbered(3)]);
        foreach (var delivery in await ReceiveNowAsync(broker, Work, max: 10))
        {
            await broker.DeadLetterAsync(delivery.Lease, "failed", null, default);
        }

        Assert.Equal(2, await broker.RedriveAsync(Work, new RedriveRequest { Target = ledger }, default));

        // Group a's redriven message waits behind its head; the one without a group has no order to keep.
        var first = await ReceiveNowAsync(broker, ledger, max: 10);
        Assert.Equal([1, 3], first.Select(d => NumberOf(d.Message)).Order());
        await broker.AcknowledgeAsync([.. first.Select(d => d.Lease)], default);
        var next = Assert.Single(await ReceiveNowAsync(broker, ledger, max: 10));
        Assert.Equal(2, NumberOf(next.Message));
    }

    [Fact]
    public async Task a_redrive_back_to_the_source_keeps_the_id_and_history_and_resets_the_count()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 });
        await using var _ = sut;
        var sent = Numbered(1);
        await broker.SendAsync(Work, sent);
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
        await broker.ReleaseAsync(delivery.Lease, TimeSpan.Zero, FailureInfo.From(new TimeoutException("slow")), default);
        Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));

        Assert.Equal(1, await broker.RedriveAsync(Work, new RedriveRequest(), default));
        Assert.Empty(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        var again = Assert.Single(await ReceiveNowAsync(broker, Work));
        Assert.Equal(sent.Id, again.Message.Id);
        Assert.Equal(1, again.ReceiveCount);
        Assert.Equal(0, delivery.Redrives);
        Assert.Equal(1, again.Redrives);
        Assert.Equal(delivery.FirstReceivedAt, again.FirstReceivedAt);
        Assert.Equal(typeof(TimeoutException).FullName, again.LastFailure!.Type);

        // Failing again, it returns to the dead letters with its redrive counted.
        await broker.ReleaseAsync(again.Lease, TimeSpan.Zero, null, default);
        Assert.Equal(1, Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default)).Redrives);
    }

    [Fact]
    public async Task chosen_dead_letters_can_be_redriven_to_another_queue()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 }, new QueueDefinition(Other));
        await using var _ = sut;
        await broker.SendBatchAsync(Work, [Numbered(1), Numbered(2), Numbered(3)]);
        foreach (var d in await ReceiveNowAsync(broker, Work))
        {
            await broker.DeadLetterAsync(d.Lease, "broken", null, default);
        }

        var letters = await broker.ListDeadLettersAsync(Work, 0, 10, default);
        Assert.Equal([1, 2, 3], letters.Select(l => NumberOf(l.Message)));
        var moved = await broker.RedriveAsync(Work, new RedriveRequest { MessageIds = [letters[0].Message.Id, letters[2].Message.Id], Target = Other }, default);
        Assert.Equal(2, moved);
        Assert.Equal([1, 3], await DrainAsync(broker, Other));
        Assert.Equal([2], (await broker.ListDeadLettersAsync(Work, 0, 10, default)).Select(l => NumberOf(l.Message)));
        Assert.Empty(await DrainAsync(broker, Work));
    }

    [Fact]
    public async Task a_redrive_paces_itself_at_the_requested_rate()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendBatchAsync(Work, Enumerable.Range(0, 6).Select(n => Numbered(n)));
        foreach (var d in await ReceiveNowAsync(broker, Work))
        {
            await broker.DeadLetterAsync(d.Lease, "broken", null, default);
        }

        // Two per second: one step of one message, then a wait on the clock before the next.
        var redrive = broker.RedriveAsync(Work, new RedriveRequest { MessagesPerSecond = 2 }, default);
        for (var expected = 1; expected <= 6; expected++)
        {
            await Clock.WhenTimerArmedAsync().Bounded();
            Assert.Equal(6 - expected, (await broker.GetStatsAsync(Work, default)).DeadLettered);
            Clock.Advance(TimeSpan.FromMilliseconds(500));
        }

        Assert.Equal(6, await redrive.Bounded());
        Assert.Equal(Enumerable.Range(0, 6), await DrainAsync(broker, Work));
    }

    [Fact]
    public async Task a_redrive_of_an_empty_dead_letter_queue_moves_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        Assert.Equal(0, await broker.RedriveAsync(Work, new RedriveRequest(), default));
        Assert.Equal(0, await broker.RedriveAsync(Work, new RedriveRequest { MessageIds = [Cairn.Envelopes.MessageId.New()] }, default));
        Assert.Equal([1], await DrainAsync(broker, Work));
    }

    [Fact]
    public async Task a_redrive_does_not_skip_or_reorder_messages_that_were_never_dead_lettered()
    {
        // KurrentDB #500: replaying parked messages moved the subscription's checkpoint past unprocessed ones.
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 });
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(0));
        var poison = Assert.Single(await ReceiveNowAsync(broker, Work));
        await broker.DeadLetterAsync(poison.Lease, "poison", null, default);
        await broker.SendBatchAsync(Work, Enumerable.Range(1, 5).Select(n => Numbered(n)));
        var inFlight = await ReceiveNowAsync(broker, Work, max: 2);

        Assert.Equal(1, await broker.RedriveAsync(Work, new RedriveRequest(), default));
        var rest = await DrainAsync(broker, Work);
        Assert.Equal([0, 3, 4, 5], rest.Order());
        await broker.AcknowledgeAsync([.. inFlight.Select(d => d.Lease)], default);
        Assert.Equal(new QueueStats { Queue = Work }, await broker.GetStatsAsync(Work, default));
    }

    [Fact]
    public async Task purging_removes_chosen_or_all_dead_letters()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendBatchAsync(Work, Enumerable.Range(0, 4).Select(n => Numbered(n)));
        foreach (var d in await ReceiveNowAsync(broker, Work))
        {
            await broker.DeadLetterAsync(d.Lease, "broken", null, default);
        }

        var letters = await broker.ListDeadLettersAsync(Work, 0, 10, default);
        Assert.Equal(1, await broker.PurgeDeadLettersAsync(Work, [letters[1].Message.Id], default));
        Assert.Equal([0, 2, 3], (await broker.ListDeadLettersAsync(Work, 0, 10, default)).Select(l => NumberOf(l.Message)));
        Assert.Equal(3, await broker.PurgeDeadLettersAsync(Work, null, default));
        Assert.Empty(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal(0, await broker.PurgeDeadLettersAsync(Work, null, default));
    }

    [Fact]
    public async Task dead_letters_are_listed_in_pages()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await broker.SendBatchAsync(Work, Enumerable.Range(0, 5).Select(n => Numbered(n)));
        foreach (var d in await ReceiveNowAsync(broker, Work))
        {
            await broker.DeadLetterAsync(d.Lease, "broken", null, default);
        }

        var page1 = await broker.ListDeadLettersAsync(Work, 0, 2, default);
        var page2 = await broker.ListDeadLettersAsync(Work, page1[^1].Sequence, 2, default);
        var page3 = await broker.ListDeadLettersAsync(Work, page2[^1].Sequence, 2, default);
        Assert.Equal([0, 1, 2, 3, 4], page1.Concat(page2).Concat(page3).Select(l => NumberOf(l.Message)));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ListDeadLettersAsync(Work, 0, 0, default));
    }
}
