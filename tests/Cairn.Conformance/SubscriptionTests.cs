using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Subscriptions;

namespace Cairn.Conformance;

/// <summary>Catch-up subscriptions: history then live, filters, checkpoints, failures and backpressure.</summary>
public abstract class SubscriptionTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static CatchUpSubscription Subscribe(StoreUnderTest sut, SubscriptionOptions options, Func<RecordedEvent, CancellationToken, ValueTask> handler, TimeProvider? clock = null, IEventStore? store = null) =>
        new(store ?? sut.Store, sut.Checkpoints, options, handler, timeProvider: clock);

    private static async Task<List<GlobalPosition>> AppendSinglesAsync(IEventStore store, int count, int first = 0, Func<int, StreamName>? streamOf = null, Func<int, string>? typeOf = null)
    {
        var positions = new List<GlobalPosition>();
        for (var n = first; n < first + count; n++)
        {
            var stream = streamOf?.Invoke(n) ?? new StreamName($"order-{n % 7}");
            var type = typeOf?.Invoke(n) ?? TestEvents.DefaultType;
            positions.Add((await store.AppendToStreamAsync(stream, ExpectedVersion.Any, [TestEvents.Numbered(n, type)])).FirstPosition);
        }

        return positions;
    }

    [Fact]
    public async Task a_subscription_delivers_history_then_live_events_with_no_gap_duplicate_or_reordering()
    {
        await using var sut = await CreateAsync();
        var history = await AppendSinglesAsync(sut.Store, 300);
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "switch-over", BufferSize = 16 }, recorder.HandleAsync);

        await subscription.StartAsync(default);

        // Live appends race the catch-up, so the switch-over happens while events keep arriving.
        var live = await Task.Run(() => AppendSinglesAsync(sut.Store, 300, first: 300));
        await subscription.WaitForPositionAsync(live[^1], default).Bounded();

        Assert.Equal([.. history, .. live], recorder.Positions);
        Assert.Equal(Enumerable.Range(0, 600), recorder.Events.Select(TestEvents.NumberOf));
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");
        Assert.Equal(live[^1], subscription.Status.Position);
    }

    [Fact]
    public async Task a_live_subscription_receives_events_appended_after_it_caught_up()
    {
        await using var sut = await CreateAsync();
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "live" }, recorder.HandleAsync);
        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live on an empty store");

        var first = await AppendSinglesAsync(sut.Store, 1);
        await subscription.WaitForPositionAsync(first[^1], default).Bounded();
        var more = await AppendSinglesAsync(sut.Store, 5, first: 1);
        await subscription.WaitForPositionAsync(more[^1], default).Bounded();

        Assert.Equal([.. first, .. more], recorder.Positions);
    }

    public static TheoryData<string> Filters => new() { "category", "stream", "types", "category-and-types" };

    private static EventFilter FilterFor(string name) => name switch
    {
        "category" => EventFilter.ForCategory("order"),
        "stream" => EventFilter.ForStream("order-2"),
        "types" => EventFilter.ForEventTypes("order.shipped", "invoice.paid"),
        "category-and-types" => EventFilter.ForCategory("order").WithEventTypes("order.shipped"),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Filters))]
    public async Task a_filtered_subscription_delivers_exactly_the_matching_events_in_order(string filterName)
    {
        await using var sut = await CreateAsync();
        var filter = FilterFor(filterName);
        StreamName StreamOf(int n) => n % 3 == 0 ? $"invoice-{n % 4}" : n % 5 == 0 ? $"orders-{n}" : $"order-{n % 4}";
        string TypeOf(int n) => (StreamOf(n).Category, n % 2) switch
        {
            ("invoice", 0) => "invoice.paid",
            ("invoice", _) => "invoice.issued",
            (_, 0) => "order.shipped",
            _ => "order.placed",
        };

        var history = await AppendSinglesAsync(sut.Store, 200, streamOf: StreamOf, typeOf: TypeOf);
        await sut.Store.DeleteStreamAsync("order-3", ExpectedVersion.Any, default);
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "filtered-" + filterName, Filter = filter, BufferSize = 8 }, recorder.HandleAsync);
        await subscription.StartAsync(default);
        var live = await AppendSinglesAsync(sut.Store, 200, first: 200, streamOf: StreamOf, typeOf: TypeOf);

        // A last matching event: once it is handled, anything wrongly delivered before it would be in the record.
        var sentinel = await sut.Store.AppendToStreamAsync("order-2", ExpectedVersion.Any, [TestEvents.Numbered(9999, "order.shipped")]);
        await subscription.WaitForPositionAsync(sentinel.FirstPosition, default).Bounded();

        var all = history.Concat(live).Select((p, n) => (Position: p, n)).ToList();
        var expected = all.Where(x => Matches(filter, StreamOf(x.n), TypeOf(x.n))).Select(x => x.Position).Append(sentinel.FirstPosition);
        Assert.Equal(expected, recorder.Positions);
        Assert.All(recorder.Events, e => Assert.True(filter.Matches(e)));
        Assert.DoesNotContain(recorder.Events, e => e.Stream.IsSystem);
    }

    private static bool Matches(EventFilter filter, StreamName stream, string type) =>
        (filter.Stream is null || filter.Stream == stream.Value)
        && (filter.Category is null || filter.Category == stream.Category)
        && (filter.EventTypes is null || filter.EventTypes.Contains(type));

    [Fact]
    public async Task a_stopped_subscription_stores_its_checkpoint_and_a_new_one_with_the_same_name_continues_after_it()
    {
        await using var sut = await CreateAsync();
        var first = await AppendSinglesAsync(sut.Store, 10);
        var firstRun = new Recorder();
        var options = new SubscriptionOptions { Name = "resumable", CheckpointEvery = 1000, CheckpointInterval = TimeSpan.FromHours(1) };
        await using (var subscription = Subscribe(sut, options, firstRun.HandleAsync))
        {
            await subscription.StartAsync(default);
            await subscription.WaitForPositionAsync(first[^1], default).Bounded();
            await subscription.StopAsync(default).Bounded();
            Assert.Equal(SubscriptionState.Stopped, subscription.Status.State);
        }

        Assert.Equal(first, firstRun.Positions);
        Assert.Equal(first[^1], await sut.Checkpoints.GetAsync("resumable", default));

        var second = await AppendSinglesAsync(sut.Store, 5, first: 10);
        var secondRun = new Recorder();
        await using (var subscription = Subscribe(sut, options, secondRun.HandleAsync))
        {
            await subscription.StartAsync(default);
            await subscription.WaitForPositionAsync(second[^1], default).Bounded();
        }

        Assert.Equal(second, secondRun.Positions);
        Assert.Equal(second[^1], await sut.Checkpoints.GetAsync("resumable", default));

        // Another name has its own checkpoint and starts from the beginning.
        var other = new Recorder();
        await using (var subscription = Subscribe(sut, options with { Name = "other" }, other.HandleAsync))
        {
            await subscription.StartAsync(default);
            await subscription.WaitForPositionAsync(second[^1], default).Bounded();
        }

        Assert.Equal([.. first, .. second], other.Positions);
    }

    [Fact]
    public async Task a_running_subscription_stores_its_checkpoint_without_being_stopped()
    {
        await using var sut = await CreateAsync();
        var positions = await AppendSinglesAsync(sut.Store, 25);
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "checkpointing", CheckpointEvery = 10 }, recorder.HandleAsync);
        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(positions[^1], default).Bounded();

        await Wait.UntilAsync(async () => await sut.Checkpoints.GetAsync("checkpointing", default) == positions[^1], "the checkpoint reaches the last event");
    }

    [Fact]
    public async Task a_subscription_resumes_after_a_checkpoint_stored_by_hand()
    {
        await using var sut = await CreateAsync();
        var positions = await AppendSinglesAsync(sut.Store, 10);
        await sut.Checkpoints.SetAsync("seeded", positions[3], default);
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "seeded", Start = SubscriptionStart.End }, recorder.HandleAsync);

        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(positions[^1], default).Bounded();

        // The stored checkpoint wins over the start setting.
        Assert.Equal(positions[4..], recorder.Positions);
    }

    [Fact]
    public async Task a_subscription_starting_at_the_end_skips_the_history()
    {
        await using var sut = await CreateAsync();
        await AppendSinglesAsync(sut.Store, 20);
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "from-end", Start = SubscriptionStart.End }, recorder.HandleAsync);

        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");
        var live = await AppendSinglesAsync(sut.Store, 3, first: 20);
        await subscription.WaitForPositionAsync(live[^1], default).Bounded();

        Assert.Equal(live, recorder.Positions);
    }

    [Fact]
    public async Task a_subscription_starting_at_the_end_redelivers_the_first_event_its_handler_failed_on()
    {
        await using var sut = await CreateAsync();
        await AppendSinglesAsync(sut.Store, 3);
        var clock = new ManualTimeProvider();
        var handled = new List<int>();
        var failOnce = 1;
        ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref failOnce, 0) == 1)
            {
                throw new InvalidOperationException("boom");
            }

            lock (handled)
            {
                handled.Add(TestEvents.NumberOf(e));
            }

            return ValueTask.CompletedTask;
        }

        var options = new SubscriptionOptions { Name = "from-end-faulty", Start = SubscriptionStart.End, RetryDelay = TimeSpan.FromSeconds(1), MaxRetryDelay = TimeSpan.FromSeconds(1) };
        await using var subscription = Subscribe(sut, options, Handle, clock);
        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");

        // The first live event fails its handler before any checkpoint was stored; more come during the retry delay.
        var live = await AppendSinglesAsync(sut.Store, 1, first: 3);
        await FaultedAndWaitingAsync(subscription, clock);
        live = [.. live, .. await AppendSinglesAsync(sut.Store, 2, first: 4)];
        clock.Advance(options.RetryDelay);
        await subscription.WaitForPositionAsync(live[^1], default).Bounded();

        // The retry goes on from where the subscription began, not from the head it would find now.
        Assert.Equal([3, 4, 5], handled);
    }

    [Fact]
    public async Task a_subscription_starting_at_the_end_and_stopped_before_any_event_goes_on_from_where_it_began()
    {
        await using var sut = await CreateAsync();
        await AppendSinglesAsync(sut.Store, 3);
        var options = new SubscriptionOptions { Name = "from-end-restarted", Start = SubscriptionStart.End };
        await using (var first = Subscribe(sut, options, new Recorder().HandleAsync))
        {
            await first.StartAsync(default);
            await Wait.UntilAsync(() => first.Status.State == SubscriptionState.Live, "the subscription is live");
            await first.StopAsync(default);
        }

        // Appended while no process ran the subscription: still after where it began.
        var meanwhile = await AppendSinglesAsync(sut.Store, 2, first: 3);
        var recorder = new Recorder();
        await using var second = Subscribe(sut, options, recorder.HandleAsync);
        await second.StartAsync(default);
        await second.WaitForPositionAsync(meanwhile[^1], default).Bounded();

        Assert.Equal(meanwhile, recorder.Positions);
    }

    [Fact]
    public async Task a_handler_that_throws_faults_the_subscription_which_resumes_from_its_checkpoint_and_redelivers_the_event()
    {
        await using var sut = await CreateAsync();
        var positions = await AppendSinglesAsync(sut.Store, 5);
        var clock = new ManualTimeProvider();
        var attempts = new List<int>();
        var failOnce = 1;
        var boom = new InvalidOperationException("boom");
        ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            var n = TestEvents.NumberOf(e);
            lock (attempts)
            {
                attempts.Add(n);
            }

            if (n == 2 && Interlocked.Exchange(ref failOnce, 0) == 1)
            {
                throw boom;
            }

            return ValueTask.CompletedTask;
        }

        var options = new SubscriptionOptions { Name = "faulty", RetryDelay = TimeSpan.FromSeconds(1), MaxRetryDelay = TimeSpan.FromSeconds(1) };
        await using var subscription = Subscribe(sut, options, Handle, clock);
        await subscription.StartAsync(default);

        // The retry delay runs on the manual clock, so the subscription stays faulted until the clock moves.
        await FaultedAndWaitingAsync(subscription, clock);
        var faulted = subscription.Status;
        Assert.Equal(SubscriptionState.Faulted, faulted.State);
        Assert.Equal(1, faulted.Failures);
        Assert.Equal(clock.GetUtcNow(), faulted.LastErrorAt);
        var error = Assert.IsType<SubscriptionHandlerException>(faulted.LastError);
        Assert.Same(boom, error.InnerException);
        Assert.Equal(positions[2], error.Event.Position);
        Assert.Equal("faulty", error.Subscription);
        Assert.Equal(positions[1], faulted.Position);
        Assert.Equal(positions[1], await sut.Checkpoints.GetAsync("faulty", default));

        clock.Advance(options.RetryDelay);
        await subscription.WaitForPositionAsync(positions[^1], default).Bounded();

        Assert.Equal([0, 1, 2, 2, 3, 4], attempts);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live again");
        Assert.Equal(0, subscription.Status.Failures);
        Assert.Same(error, subscription.Status.LastError);
    }

    /// <summary>
    /// Waits until the subscription has failed and waits out its retry delay on the clock. Not the first timer armed on
    /// the clock: while it handled events, the subscription's idle checkpoint timer runs on it too.
    /// </summary>
    private static Task FaultedAndWaitingAsync(CatchUpSubscription subscription, ManualTimeProvider clock) =>
        Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Faulted && clock.ArmedTimers > 0, "the subscription failed and waits out its retry delay");

    [Fact]
    public async Task a_subscription_that_keeps_failing_stops_after_max_retries()
    {
        await using var sut = await CreateAsync();
        var positions = await AppendSinglesAsync(sut.Store, 3);
        var attempts = 0;
        ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            if (e.Position == positions[1])
            {
                Interlocked.Increment(ref attempts);
                throw new InvalidOperationException("always");
            }

            return ValueTask.CompletedTask;
        }

        var options = new SubscriptionOptions { Name = "doomed", MaxRetries = 2, RetryDelay = TimeSpan.FromMilliseconds(1), MaxRetryDelay = TimeSpan.FromMilliseconds(4) };
        await using var subscription = Subscribe(sut, options, Handle);
        await subscription.StartAsync(default);

        await Wait.UntilAsync(() => subscription.Status is { State: SubscriptionState.Stopped, Failures: 3 }, "the subscription gives up");

        var status = subscription.Status;
        Assert.Equal(3, Volatile.Read(ref attempts));
        Assert.IsType<SubscriptionHandlerException>(status.LastError);
        Assert.Equal(positions[0], status.Position);
        Assert.Equal(positions[0], await sut.Checkpoints.GetAsync("doomed", default));
    }

    [Fact]
    public async Task a_slow_handler_holds_the_reader_back_to_the_buffer_size()
    {
        const int bufferSize = 8;
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("bulk-1", ExpectedVersion.NoStream, TestEvents.Many(200));
        var positions = await sut.Store.ReadAllAsync().Select(e => e.Position).ToListAsync();

        long handled = 0;
        long maxAhead = 0;
        CountingEventStore? counting = null;
        counting = new CountingEventStore(sut.Store, _ =>
        {
            // Read but not yet handled, counted as the reader hands each event out.
            var ahead = counting!.EventsRead - Interlocked.Read(ref handled);
            long seen;
            while (ahead > (seen = Interlocked.Read(ref maxAhead)) && Interlocked.CompareExchange(ref maxAhead, ahead, seen) != seen)
            {
            }
        });

        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            await release.Task.WaitAsync(cancellationToken);
            Interlocked.Increment(ref handled);
        }

        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "slow", BufferSize = bufferSize }, Handle, store: counting);
        await subscription.StartAsync(default);

        // The handler is stuck on the first event: the reader fills the buffer, then must wait.
        await Wait.UntilAsync(() => counting.EventsRead > bufferSize, "the reader fills the buffer");

        // Not a synchronisation: a correct reader never passes the bound, this only gives a wrong one room to show it.
        await Task.Delay(100);
        Assert.InRange(counting.EventsRead, bufferSize + 1, bufferSize + 2);

        release.SetResult();
        await subscription.WaitForPositionAsync(positions[^1], default).Bounded();

        // One event in the handler, the buffer full, one more in the reader's hand waiting for room.
        Assert.InRange(Interlocked.Read(ref maxAhead), bufferSize + 1, bufferSize + 2);
        Assert.Equal(200, Interlocked.Read(ref handled));
    }

    [Fact]
    public async Task waiting_for_a_position_already_handled_completes_at_once()
    {
        await using var sut = await CreateAsync();
        var positions = await AppendSinglesAsync(sut.Store, 3);
        var recorder = new Recorder();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "waiter" }, recorder.HandleAsync);
        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(positions[^1], default).Bounded();

        Assert.True(subscription.WaitForPositionAsync(positions[0], default).IsCompleted);
        Assert.True(subscription.WaitForPositionAsync(positions[^1], default).IsCompleted);
    }

    [Fact]
    public async Task a_filtered_subscription_passes_the_events_it_skips_so_waits_and_checkpoints_move_past_them()
    {
        await using var sut = await CreateAsync();
        var positions = await AppendSinglesAsync(sut.Store, 6, typeOf: n => n == 1 ? "wanted" : "other");
        var recorder = new Recorder();
        await using var subscription = Subscribe(
            sut,
            new SubscriptionOptions { Name = "picky", Filter = EventFilter.ForEventTypes("wanted"), CheckpointInterval = TimeSpan.FromMilliseconds(1) },
            recorder.HandleAsync);
        await subscription.StartAsync(default);

        // The last event is not one it receives, yet once caught up it has passed it.
        await subscription.WaitForPositionAsync(positions[^1], default).Bounded();
        Assert.Equal([positions[1]], recorder.Positions);
        await subscription.StopAsync(default);
        Assert.Equal(positions[^1], await sut.Checkpoints.GetAsync("picky", default));
    }

    [Fact]
    public async Task a_subscription_cannot_be_started_twice()
    {
        await using var sut = await CreateAsync();
        await using var subscription = Subscribe(sut, new SubscriptionOptions { Name = "once" }, new Recorder().HandleAsync);
        await subscription.StartAsync(default);
        await Assert.ThrowsAsync<InvalidOperationException>(() => subscription.StartAsync(default));
    }

    [Fact]
    public async Task the_store_subscription_streams_history_then_live_events_after_a_position_until_cancelled()
    {
        await using var sut = await CreateAsync();
        var history = await AppendSinglesAsync(sut.Store, 10);
        using var cancel = new CancellationTokenSource();
        var seen = new List<GlobalPosition>();
        var target = long.MaxValue;
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = Task.Run(async () =>
        {
            await foreach (var e in sut.Store.SubscribeAsync(history[2], EventFilter.All, cancel.Token, pageSize: 4))
            {
                lock (seen)
                {
                    seen.Add(e.Position);
                }

                if (e.Position.Value >= Volatile.Read(ref target))
                {
                    reached.TrySetResult();
                }
            }
        });

        var live = await AppendSinglesAsync(sut.Store, 10, first: 10);
        Volatile.Write(ref target, live[^1].Value);
        lock (seen)
        {
            if (seen.Contains(live[^1]))
            {
                reached.TrySetResult();
            }
        }

        await reached.Task.Bounded();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => consumer).Bounded();

        lock (seen)
        {
            Assert.Equal([.. history[3..], .. live], seen);
        }
    }
}
