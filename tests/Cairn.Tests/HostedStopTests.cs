using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests;

/// <summary>
/// Cairn inside a Generic Host: how hosted subscriptions and projections stop while work is in flight (with time left,
/// and once the host's shutdown time is up), and which service provider a subscription's handler is given.
/// </summary>
public sealed class HostedStopTests
{
    private static HostApplicationBuilder Builder() => Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

    // docs/event-store.md: "StopAsync stops after the event in hand" (and DisposeAsync is the one that "cancels the
    // handler"). The stop's token is the host's shutdown time-out, and a consumer lets its in-flight handlers finish
    // until that token fires. A hosted subscription instead cancels its handler's token the moment a stop is asked:
    // a handler that honours its token abandons the event in hand, however much shutdown time is left.
    [Fact]
    public async Task a_stop_with_time_left_lets_the_subscription_handler_finish_the_event_in_hand()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var tokenCancelledAtGate = false;
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddSubscription("audit", async (_, _, ct) =>
            {
                entered.TrySetResult();
                await gate.Task;

                // A handler working in steps looks at its token between them, as handlers are told to.
                tokenCancelledAtGate = ct.IsCancellationRequested;
                ct.ThrowIfCancellationRequested();
            });
        using var host = builder.Build();
        var store = host.Services.GetRequiredService<IEventStore>();
        await host.StartAsync();
        var appended = await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await entered.Task.Bounded();

        // The stop is asked with plenty of time left (the host's own default is 30 s); the handler then finishes.
        var subscription = host.Services.GetRequiredService<SubscriptionMonitor>().Find("audit")!;
        using var shutdown = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var stopping = subscription.StopAsync(shutdown.Token);
        gate.SetResult();
        await stopping.Bounded();
        await host.StopAsync();

        Assert.False(tokenCancelledAtGate, "the handler's token was cancelled as soon as the stop was asked, not when the stop's time ran out");
        Assert.Equal(appended.LastPosition, await host.Services.GetRequiredService<ICheckpointStore>().GetAsync("audit", default));
    }

    // A host's StopAsync whose time is up (the shutdown time-out) does not throw for a consumer whose handler ignores
    // its cancellation (QueueConsumer.StopAsync returns, logging a warning), nor for a BackgroundService. A hosted
    // subscription's StopAsync rethrows the token's cancellation, so the whole host's StopAsync fails with it.
    [Fact]
    public async Task a_host_stop_whose_time_is_up_does_not_fail_for_a_subscription_handler_that_ignores_its_token()
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddSubscription("audit", async (_, _, _) =>
            {
                entered.TrySetResult();
                await gate.Task;
            });
        using var host = builder.Build();
        var store = host.Services.GetRequiredService<IEventStore>();
        await host.StartAsync();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        await entered.Task.Bounded();

        using var timeIsUp = new CancellationTokenSource();
        await timeIsUp.CancelAsync();
        try
        {
            var failure = await Record.ExceptionAsync(() => host.StopAsync(timeIsUp.Token));
            Assert.Null(failure);
        }
        finally
        {
            gate.SetResult();
        }
    }

    /// <summary>A projection whose handler holds the event in hand until the test lets it go (it cannot be cancelled).</summary>
    private sealed class HeldProjection : Projection
    {
        public HeldProjection(TaskCompletionSource entered, ManualResetEventSlim gate)
            : base("held")
        {
            On<OrderPlaced>((_, _) =>
            {
                entered.TrySetResult();
                gate.Wait(TimeSpan.FromMinutes(1));
            });
        }
    }

    /// <summary>A started host whose projection <c>held</c> is applying an event, held until <paramref name="gate"/> is set.</summary>
    private static async Task<IHost> HoldingAProjectionBatchAsync(ManualResetEventSlim gate)
    {
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = Builder();
        builder.Services.AddCairn(o =>
            {
                o.UseInMemory();
                o.EventTypes.Register<OrderPlaced>();
            })
            .AddProjection(new HeldProjection(entered, gate));
        var host = builder.Build();
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        await entered.Task.Bounded();
        return host;
    }

    // The same for a hosted projection: ProjectionRunner.StopAsync rethrows the stop token's cancellation while its run
    // is still applying a batch. (Even an idle projection's stop with an expired token threw in 18 of 20 runs: the run
    // has not yet seen its own cancellation when the wait is asked; a slow consumer using up the shared shutdown time
    // makes every service stopped after it get such a token.)
    [Fact]
    public async Task a_host_stop_whose_time_is_up_does_not_fail_for_a_projection_in_the_middle_of_a_batch()
    {
        using var gate = new ManualResetEventSlim();
        using var host = await HoldingAProjectionBatchAsync(gate);

        using var timeIsUp = new CancellationTokenSource();
        await timeIsUp.CancelAsync();
        try
        {
            var failure = await Record.ExceptionAsync(() => host.StopAsync(timeIsUp.Token));
            Assert.Null(failure);
        }
        finally
        {
            gate.Set();
        }
    }

    // A projection's disposal waited without bound for a handler blocking in Apply, where a subscription's gives up
    // after its grace: a host's disposal hung with it.
    [Fact]
    public async Task disposing_a_projection_whose_handler_blocks_returns_after_its_grace()
    {
        using var gate = new ManualResetEventSlim();
        var host = await HoldingAProjectionBatchAsync(gate);
        try
        {
            var runner = host.Services.GetRequiredService<ProjectionMonitor>().Find("held")!;
            var disposing = runner.DisposeAsync().AsTask();
            var returned = await Task.WhenAny(disposing, Task.Delay(Wait.Timeout)) == disposing;
            gate.Set();
            Assert.True(returned, "the projection's disposal still waited for a handler blocking in Apply");
        }
        finally
        {
            gate.Set();
            host.Dispose();
        }
    }

    private sealed class PerEventDependency : IDisposable
    {
        public bool Disposed { get; private set; }

        public void Dispose() => Disposed = true;
    }

    // The delegate form of AddSubscription hands its handler an IServiceProvider with every event, as a consumer's
    // handler gets MessageHandlerContext.Services (a scope per message, disposed after it, also when it throws). The
    // subscription passes the root provider: a scoped service resolved there is one instance for the host's life,
    // shared by every event and never disposed until the host is (a captive dependency; with scope validation on, as
    // in Development, resolving it throws instead).
    [Fact]
    public async Task a_subscription_handler_gets_a_service_scope_per_event_disposed_after_it_even_when_it_throws()
    {
        var seen = new List<PerEventDependency>();
        var secondHandled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var failedOnce = false;
        var builder = Builder();
        builder.Services.AddScoped<PerEventDependency>();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddSubscription(
                "audit",
                (sp, e, _) =>
                {
                    var dependency = sp.GetRequiredService<PerEventDependency>();
                    lock (seen)
                    {
                        seen.Add(dependency);
                    }

                    if (!failedOnce)
                    {
                        // The first handling of the first event fails; the subscription resumes from its checkpoint.
                        failedOnce = true;
                        throw new InvalidOperationException("a failing handling");
                    }

                    if (TestEvents.NumberOf(e) == 1)
                    {
                        secondHandled.TrySetResult();
                    }

                    return ValueTask.CompletedTask;
                },
                s => s.Configure(o => o with { RetryDelay = TimeSpan.FromMilliseconds(1), MaxRetryDelay = TimeSpan.FromMilliseconds(1) }));
        using var host = builder.Build();
        var store = host.Services.GetRequiredService<IEventStore>();
        await host.StartAsync();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));
        await secondHandled.Task.Bounded();
        await host.StopAsync();

        // Three handlings (the failed one, its retry, the second event): three scopes, each disposed once done.
        PerEventDependency[] handlings;
        lock (seen)
        {
            handlings = [.. seen];
        }

        Assert.Equal(3, handlings.Length);
        Assert.Equal(3, handlings.Distinct().Count());
        Assert.All(handlings, d => Assert.True(d.Disposed));
    }
}
