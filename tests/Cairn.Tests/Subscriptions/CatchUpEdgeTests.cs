using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests;

/// <summary>Catch-up subscriptions: status after recovery, idle checkpoints of skipped events, registration input, disposal.</summary>
public sealed class CatchUpEdgeTests
{
    private static async Task<List<GlobalPosition>> AppendSinglesAsync(IEventStore store, int count, int first = 0, string type = TestEvents.DefaultType)
    {
        var positions = new List<GlobalPosition>();
        for (var n = first; n < first + count; n++)
        {
            positions.Add((await store.AppendToStreamAsync(new StreamName($"order-{n % 3}"), ExpectedVersion.Any, [TestEvents.Numbered(n, type)])).LastPosition);
        }

        return positions;
    }

    // SubscriptionStatus.Failures is documented as "failures in a row since its last success", and a handled event ends a
    // run of failures. A subscription that failed once on event 1, resumed, and has since handled events 1 and 2 has no
    // failure in a row; yet its status keeps reporting the old failure until it goes live, so the health check calls a
    // recovered subscription "retrying" for as long as its catch-up lasts.
    [Fact]
    public async Task a_subscription_that_handled_the_event_it_failed_on_reports_no_failures_in_a_row()
    {
        var store = new InMemoryEventStore();
        var positions = await AppendSinglesAsync(store, 5);
        var failOnce = 1;
        var blocked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            var n = TestEvents.NumberOf(e);
            if (n == 1 && Interlocked.Exchange(ref failOnce, 0) == 1)
            {
                throw new InvalidOperationException("transient");
            }

            if (n == 3)
            {
                blocked.TrySetResult();
                await release.Task.WaitAsync(cancellationToken);
            }
        }

        var options = new SubscriptionOptions { Name = "recovers", RetryDelay = TimeSpan.FromMilliseconds(1), MaxRetryDelay = TimeSpan.FromMilliseconds(1) };
        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), options, Handle);
        await subscription.StartAsync(default);
        await blocked.Task.Bounded();
        await subscription.WaitForPositionAsync(positions[2], default).Bounded(); // events 1 and 2 handled after the retry

        var status = subscription.Status;
        release.SetResult();
        Assert.Equal(SubscriptionState.CatchingUp, status.State);
        Assert.Equal(0, status.Failures);
    }

    // The docs promise the checkpoint is stored "when idle", and a filtered subscription passes the events it skips so
    // its checkpoint moves past them. Once live, skipped events move the position (the reader advances it) but the
    // pump sleeps in an untimed wait for the next matching event, so the checkpoint is never stored while it runs.
    [Fact]
    public async Task a_live_filtered_subscription_stores_its_checkpoint_past_skipped_events_when_idle()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var wanted = await AppendSinglesAsync(store, 1, type: "wanted");
        var options = new SubscriptionOptions { Name = "picky-live", Filter = EventFilter.ForEventTypes("wanted"), CheckpointInterval = TimeSpan.FromMilliseconds(1) };
        await using var subscription = new CatchUpSubscription(store, checkpoints, options, (_, _) => ValueTask.CompletedTask);
        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(wanted[0], default).Bounded();
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");
        await Wait.UntilAsync(async () => await checkpoints.GetAsync(options.Name, default) == wanted[0], "the idle checkpoint reaches the wanted event");

        var skipped = await AppendSinglesAsync(store, 3, first: 1, type: "other");
        await subscription.WaitForPositionAsync(skipped[^1], default).Bounded(); // it has passed them

        await Wait.UntilAsync(async () => await checkpoints.GetAsync(options.Name, default) == skipped[^1], "the idle checkpoint moves past the skipped events");
    }

    // Every other builder method refuses a null handler at once (ArgumentNullException); AddSubscription wraps the null
    // delegate in a lambda, so registration, the container and the start succeed and each event then faults the
    // subscription with a NullReferenceException inside the "handler".
    [Fact]
    public void a_subscription_without_a_handler_is_refused_when_registered()
    {
        var services = new ServiceCollection();
        var cairn = services.AddCairn(o => o.UseInMemory());

        var error = Assert.Throws<ArgumentNullException>(() => cairn.AddSubscription("no-handler", handler: null!));
        Assert.Equal("handler", error.ParamName);
    }

    // A Configure whose change returns no options is bad input; it surfaced as a NullReferenceException from Build's
    // caller rather than a typed argument error.
    [Fact]
    public void a_subscription_configured_to_no_options_is_refused_with_an_argument_error()
    {
        var services = new ServiceCollection();
        var cairn = services.AddCairn(o => o.UseInMemory());

        Assert.ThrowsAny<ArgumentException>(() => cairn.AddSubscription("no-options", (_, _, _) => ValueTask.CompletedTask, s => s.Configure(_ => null!)));
    }

    // The host gives StopAsync a shutdown time-out; when it runs out (a handler that does not observe cancellation),
    // the container's disposal of the hosted subscription calls StopAsync again with no token and waits for the handler
    // without bound, so the process never finishes shutting down.
    [Fact]
    public async Task disposing_a_subscription_after_its_stop_timed_out_does_not_wait_for_the_handler_without_bound()
    {
        var store = new InMemoryEventStore();
        await AppendSinglesAsync(store, 1);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async ValueTask Stubborn(RecordedEvent e, CancellationToken cancellationToken)
        {
            entered.TrySetResult();
            await release.Task; // ignores the token
        }

        var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "stubborn" }, Stubborn);
        await subscription.StartAsync(default);
        await entered.Task.Bounded();
        using var timedOut = new CancellationTokenSource();
        await timedOut.CancelAsync();
        // The stop's time is up: it gives the handler a moment, then returns rather than failing the host's stop.
        await subscription.StopAsync(timedOut.Token).Bounded();

        var disposing = subscription.DisposeAsync().AsTask();
        var disposed = await Task.WhenAny(disposing, Task.Delay(Wait.Timeout)) == disposing;
        release.SetResult();
        await disposing.Bounded();
        Assert.True(disposed, "DisposeAsync still waits for a handler that ignores cancellation after the host's stop timed out");
    }

    // A handler made for the subscription (no THandler registered) was never disposed at stop: its connections and
    // files stayed open until the process ended. One the container registered is the container's to dispose.
    [Fact]
    public async Task a_handler_made_for_a_subscription_is_disposed_with_it_and_a_registered_one_is_left_to_the_container()
    {
        DisposableHandler.Disposed = 0;
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory()).AddSubscription<DisposableHandler>("made-here");
        await using (var provider = services.BuildServiceProvider())
        {
            foreach (var hosted in provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>())
            {
                await hosted.StartAsync(default);
            }

            foreach (var hosted in provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>().Reverse())
            {
                await hosted.StopAsync(default);
            }
        }

        Assert.Equal(1, DisposableHandler.Disposed);

        DisposableHandler.Disposed = 0;
        var registered = new ServiceCollection();
        registered.AddSingleton<DisposableHandler>();
        registered.AddCairn(o => o.UseInMemory()).AddSubscription<DisposableHandler>("from-container");
        await using (var provider = registered.BuildServiceProvider())
        {
            _ = provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>().ToList();
        }

        Assert.Equal(1, DisposableHandler.Disposed); // once, by the container
    }

    // A store restored from an older backup (or a checkpoint kept in another database than the events) leaves the
    // checkpoint past the head: the events appended again up to it are never delivered. That went unsaid.
    [Fact]
    public async Task a_checkpoint_past_the_stores_head_is_reported_at_start()
    {
        var store = new InMemoryEventStore();
        await AppendSinglesAsync(store, 2);
        var checkpoints = new InMemoryCheckpointStore();
        await checkpoints.SetAsync("restored", new GlobalPosition(50), default);
        var logger = new RecordingLogger<CatchUpSubscription>();
        await using var subscription = new CatchUpSubscription(store, checkpoints, new SubscriptionOptions { Name = "restored" }, (_, _) => ValueTask.CompletedTask, logger);

        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");

        var warning = Assert.Single(logger.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
        Assert.Contains("checkpoint 50 is past the store's head 2", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_checkpoint_at_the_head_is_not_reported()
    {
        var store = new InMemoryEventStore();
        var positions = await AppendSinglesAsync(store, 2);
        var checkpoints = new InMemoryCheckpointStore();
        await checkpoints.SetAsync("current", positions[^1], default);
        var logger = new RecordingLogger<CatchUpSubscription>();
        await using var subscription = new CatchUpSubscription(store, checkpoints, new SubscriptionOptions { Name = "current" }, (_, _) => ValueTask.CompletedTask, logger);

        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");

        Assert.DoesNotContain(logger.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
    }

    private sealed class DisposableHandler : ISubscriptionHandler, IDisposable
    {
        public static int Disposed;

        public ValueTask HandleAsync(RecordedEvent recorded, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public void Dispose() => Interlocked.Increment(ref Disposed);
    }

    // Reading from the position after long.MaxValue overflowed, and the subscription faulted and retried for ever, where
    // a checkpoint past the head is documented to wait (with a warning) for events past it.
    [Fact]
    public async Task a_subscription_whose_checkpoint_is_the_largest_position_goes_live_past_the_head()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [TestEvents.Numbered(1)]);
        await checkpoints.SetAsync("far-ahead", new GlobalPosition(long.MaxValue), default);
        var handled = 0;
        await using var subscription = new CatchUpSubscription(
            store,
            checkpoints,
            new SubscriptionOptions { Name = "far-ahead" },
            (_, _) =>
            {
                Interlocked.Increment(ref handled);
                return ValueTask.CompletedTask;
            },
            timeProvider: new ManualTimeProvider());

        await subscription.StartAsync(default);
        await Wait.UntilAsync(
            () => subscription.Status.State is SubscriptionState.Live or SubscriptionState.Faulted || subscription.Status.LastError is not null,
            "the subscription goes live or faults");

        Assert.Null(subscription.Status.LastError);
        Assert.Equal(SubscriptionState.Live, subscription.Status.State);
        Assert.Equal(0, handled);
    }

    // A second start threw from the call, where a route's, a consumer's and a projection's refuse through the task.
    [Fact]
    public async Task a_subscription_started_twice_refuses_through_the_task()
    {
        var store = new InMemoryEventStore();
        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "twice" }, (_, _) => ValueTask.CompletedTask);
        await subscription.StartAsync(default);

        await ThroughTask.RefusedAsync(() => subscription.StartAsync(default), typeof(InvalidOperationException));
    }
}
