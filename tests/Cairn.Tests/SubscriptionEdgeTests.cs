using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>Catch-up subscriptions stopping, ending and recovering, and decider specifications of events with collections.</summary>
public sealed class SubscriptionEdgeTests
{
    /// <summary>Signals when a subscription's reader has handed out a whole page and waits for the next append.</summary>
    private sealed class PageEndSignalStore(IEventStore inner) : DelegatingEventStore(inner)
    {
        private readonly TaskCompletionSource _waiting = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Waiting => _waiting.Task;

        public override Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken)
        {
            _waiting.TrySetResult();
            return base.WaitForAppendAsync(position, cancellationToken);
        }
    }

    // A stop requested while the handler is busy with the first of ten buffered events ends the subscription after
    // that event, as documented ("stops after the event in hand"), not after handing the whole buffer to the handler.
    [Fact]
    public async Task Stopping_a_subscription_during_a_handler_ends_it_after_the_event_in_hand()
    {
        var inner = new InMemoryEventStore();
        await inner.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, TestEvents.Many(10));
        var store = new PageEndSignalStore(inner);
        var entered = new TaskCompletionSource<CancellationToken>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handled = 0;
        async ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref handled) == 1)
            {
                entered.SetResult(cancellationToken);
                await release.Task;
            }
        }

        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "stop-in-hand" }, Handle);
        await subscription.StartAsync(default);
        var token = await entered.Task.Bounded();
        await store.Waiting.Bounded(); // all ten events are in the subscription's buffer

        // The stop is asked before the call returns; with no time limit, the handler's token is left alone.
        var stopping = subscription.StopAsync(default);
        release.SetResult();
        await stopping.Bounded();

        Assert.Equal(1, Volatile.Read(ref handled));
        Assert.False(token.IsCancellationRequested, "a stop with time left cancelled the handler in hand");
    }

    // Once a subscription has ended (stopped for good after MaxRetries, or disposed), a wait for a position it never
    // reached fails, as a route's does, rather than hanging a caller that waits without a time-out.
    [Fact]
    public async Task Waiting_for_a_position_on_a_subscription_that_stopped_for_good_fails()
    {
        var store = new InMemoryEventStore();
        var positions = new List<GlobalPosition>();
        for (var n = 0; n < 3; n++)
        {
            positions.Add((await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [TestEvents.Numbered(n)])).LastPosition);
        }

        static ValueTask Poison(RecordedEvent e, CancellationToken cancellationToken) =>
            TestEvents.NumberOf(e) == 1 ? throw new InvalidOperationException("poison") : ValueTask.CompletedTask;

        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "gives-up", MaxRetries = 0 }, Poison);
        await subscription.StartAsync(default);
        var wait = subscription.WaitForPositionAsync(positions[^1], CancellationToken.None);
        await Wait.UntilAsync(() => subscription.Status is { State: SubscriptionState.Stopped, Failures: 1 }, "the subscription gave up");

        // Without a stop or a disposal: giving up ends the run (only its lag gauge still follows the log).
        await Wait.UntilAsync(() => wait.IsCompleted, "the wait for a position the subscription that gave up never reached fails");
        Assert.True(wait.IsFaulted);
        Assert.True(subscription.Completion.IsCompleted, "the run of a subscription that gave up has not ended");
        await Assert.ThrowsAsync<InvalidOperationException>(() => subscription.WaitForPositionAsync(positions[^1], CancellationToken.None));
    }

    // The same for a subscription its owner disposed (an application shutting down while a request waits).
    [Fact]
    public async Task Waiting_for_a_position_on_a_disposed_subscription_fails()
    {
        var store = new InMemoryEventStore();
        var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "disposed" }, (_, _) => ValueTask.CompletedTask);
        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");
        var wait = subscription.WaitForPositionAsync(new GlobalPosition(1), CancellationToken.None);

        await subscription.DisposeAsync();

        Assert.True(wait.IsCompleted, "the wait on a disposed subscription is still pending");
    }

    /// <summary>A store whose head read fails while <see cref="Fail"/> is set, as a store that lost its connection.</summary>
    private sealed class FlakyHeadStore(IEventStore inner) : DelegatingEventStore(inner)
    {
        public volatile bool Fail;

        public override ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken) =>
            Fail ? throw new IOException("the store is unreachable") : base.GetHeadPositionAsync(cancellationToken);
    }

    // MaxRetries counts failures in a row: a subscription that recovered and went live (with no event to handle in
    // between: a quiet log, a filter skipping everything) counts its next failure as the first, not the second.
    [Fact]
    public async Task A_subscription_that_recovered_and_went_live_counts_its_next_failure_as_the_first()
    {
        var store = new FlakyHeadStore(new InMemoryEventStore()) { Fail = true };
        var clock = new ManualTimeProvider();
        var options = new SubscriptionOptions { Name = "flaky", MaxRetries = 1, RetryDelay = TimeSpan.FromSeconds(1), MaxRetryDelay = TimeSpan.FromSeconds(1) };
        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), options, (_, _) => ValueTask.CompletedTask, timeProvider: clock);
        await subscription.StartAsync(default);
        // The pump's idle wait is timed too; once the subscription has failed, the one armed timer is its retry delay.
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Faulted && clock.ArmedTimers > 0, "the subscription failed and waits out its retry delay");

        store.Fail = false;
        clock.Advance(options.RetryDelay);
        await Wait.UntilAsync(() => subscription.Status is { State: SubscriptionState.Live, Failures: 0 }, "the subscription recovered and is live");

        // One more failure, long after the first: the store fails when the next append wakes the reader.
        store.Fail = true;
        await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [TestEvents.Numbered(0)]);
        await Wait.UntilAsync(() => subscription.Status.State is SubscriptionState.Faulted or SubscriptionState.Stopped, "the subscription failed again");

        var status = subscription.Status;
        Assert.Equal(1, status.Failures);
        Assert.Equal(SubscriptionState.Faulted, status.State);
    }

    private sealed record ItemsAdded(string[] Items);

    // Then compares the decided events by value, as documented: an event with a collection equals one with the same
    // values, rather than differing by the collection's reference.
    [Fact]
    public void A_specification_of_an_event_with_a_collection_compares_its_values()
    {
        var decider = new Decider<string[], int, ItemsAdded>((items, _) => [new ItemsAdded(items)], (count, e) => count + e.Items.Length, 0);

        var state = DeciderSpecification.For(decider).When(["a", "b"]).Then(new ItemsAdded(["a", "b"]));

        Assert.Equal(2, state);
    }

    // The subscription measures its checkpoint interval on its TimeProvider; the idle wait for the interval to pass
    // must run on it too. It ran on a system timer, so under another clock the idle checkpoint came on wall-clock time
    // (under a manual clock, never).
    [Fact]
    public async Task The_idle_checkpoint_interval_is_waited_out_on_the_subscriptions_clock()
    {
        var store = new InMemoryEventStore();
        var position = (await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [TestEvents.Numbered(0)])).LastPosition;
        var clock = new ManualTimeProvider();
        var checkpoints = new InMemoryCheckpointStore();
        var options = new SubscriptionOptions { Name = "idle-clock", CheckpointEvery = 1000, CheckpointInterval = TimeSpan.FromMinutes(1) };
        await using var subscription = new CatchUpSubscription(store, checkpoints, options, (_, _) => ValueTask.CompletedTask, timeProvider: clock);
        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(position, default).Bounded();

        // Advanced at each look: the pump arms its timer on the clock once it finds the buffer empty.
        await Wait.UntilAsync(
            async () =>
            {
                clock.Advance(options.CheckpointInterval);
                return await checkpoints.GetAsync(options.Name, default) == position;
            },
            "the idle checkpoint is stored once the subscription's clock passes the interval");
    }

    [Fact]
    public void A_subscription_without_a_store_checkpoints_or_handler_is_refused_when_created()
    {
        var options = new SubscriptionOptions { Name = "missing" };
        Assert.Equal("handler", Assert.Throws<ArgumentNullException>(() => new CatchUpSubscription(new InMemoryEventStore(), new InMemoryCheckpointStore(), options, null!)).ParamName);
        Assert.Equal("store", Assert.Throws<ArgumentNullException>(() => new CatchUpSubscription(null!, new InMemoryCheckpointStore(), options, (_, _) => ValueTask.CompletedTask)).ParamName);
        Assert.Equal("checkpoints", Assert.Throws<ArgumentNullException>(() => new CatchUpSubscription(new InMemoryEventStore(), null!, options, (_, _) => ValueTask.CompletedTask)).ParamName);
    }

    // An undefined Start passed validation and the subscription started from the beginning of the log.
    [Fact]
    public void An_undefined_start_is_refused_by_validation()
    {
        var options = new SubscriptionOptions { Name = "bad-start", Start = (SubscriptionStart)42 };

        Assert.Equal("Start", Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
    }

    // Resuming forever with no pause spun a core on a handler that kept failing, and flooded the log.
    [Fact]
    public void Unlimited_resumptions_without_a_pause_are_refused_and_a_bounded_or_paused_one_is_not()
    {
        var spinning = new SubscriptionOptions { Name = "spinning", RetryDelay = TimeSpan.Zero, MaxRetryDelay = TimeSpan.Zero };
        var refused = Assert.Throws<ArgumentOutOfRangeException>(spinning.Validate);
        Assert.Equal("MaxRetryDelay", refused.ParamName);
        Assert.Contains("'spinning'", refused.Message, StringComparison.Ordinal);

        new SubscriptionOptions { Name = "bounded", RetryDelay = TimeSpan.Zero, MaxRetryDelay = TimeSpan.Zero, MaxRetries = 3 }.Validate();
        new SubscriptionOptions { Name = "paused", RetryDelay = TimeSpan.Zero, MaxRetryDelay = TimeSpan.FromMilliseconds(1) }.Validate();
    }
}
