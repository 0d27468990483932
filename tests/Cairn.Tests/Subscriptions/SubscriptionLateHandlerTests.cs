using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests;

/// <summary>A subscription disposed while its handler ignores the cancellation and runs on past the dispose's grace.</summary>
public sealed class SubscriptionLateHandlerTests
{
    // AddSubscription<THandler>: "an instance made for the subscription, which is disposed with it". DisposeAsync gives
    // up on a handler that ignores its cancellation after DisposeGrace and returns while the handler still runs; the
    // hosted service then disposes the handler instance under the running HandleAsync (its connections, files, …).
    [Fact]
    public async Task a_handler_made_for_a_subscription_is_not_disposed_while_its_handle_call_still_runs()
    {
        StubbornHandler.Reset();
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory()).AddSubscription<StubbornHandler>("stubborn");
        var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<IEventStore>().AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [TestEvents.Numbered(1)]);
        var hosted = provider.GetServices<Microsoft.Extensions.Hosting.IHostedService>().ToList();
        foreach (var service in hosted)
        {
            await service.StartAsync(default);
        }

        await StubbornHandler.Entered.Task.Bounded();
        try
        {
            await provider.DisposeAsync(); // the host's container, disposed after a stop that timed out, say
            Assert.False(StubbornHandler.DisposedWhileHandling, "the handler was disposed while its HandleAsync still ran");
        }
        finally
        {
            StubbornHandler.Release.TrySetResult();
        }

        // Disposed all the same, once it has returned.
        await Wait.UntilAsync(() => StubbornHandler.Disposed, "the handler is disposed once it returns");
        Assert.False(StubbornHandler.DisposedWhileHandling);
    }

    // After DisposeAsync returned, the subscription's run goes on; once the stubborn handler returns, it stores its own
    // (old) checkpoint. A subscription of the same name started after the dispose (the host restarted in the process)
    // has meanwhile stored a later one: the disposed one moves the checkpoint back over it.
    [Fact]
    public async Task a_disposed_subscription_does_not_store_a_checkpoint_after_its_dispose_returned()
    {
        var store = new InMemoryEventStore();
        var checkpoints = new InMemoryCheckpointStore();
        var positions = new List<GlobalPosition>();
        for (var n = 0; n < 3; n++)
        {
            positions.Add((await store.AppendToStreamAsync(new StreamName($"order-{n}"), ExpectedVersion.Any, [TestEvents.Numbered(n)])).LastPosition);
        }

        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = new CatchUpSubscription(store, checkpoints, new SubscriptionOptions { Name = "restarted" }, async (e, _) =>
        {
            entered.TrySetResult();
            await release.Task; // ignores its cancellation
        });
        await first.StartAsync(default);
        await entered.Task.Bounded();
        await first.DisposeAsync(); // gives up after its grace

        var second = new CatchUpSubscription(store, checkpoints, new SubscriptionOptions { Name = "restarted" }, (_, _) => ValueTask.CompletedTask);
        await second.StartAsync(default);
        await second.WaitForPositionAsync(positions[2], default).Bounded();
        await second.StopAsync(default);
        Assert.Equal(positions[2], await checkpoints.GetAsync("restarted", default));

        release.SetResult();
        await first.Completion.Bounded(); // the first run ends once its handler returns
        Assert.Equal(positions[2], await checkpoints.GetAsync("restarted", default));
    }

    private sealed class StubbornHandler : ISubscriptionHandler, IDisposable
    {
        public static TaskCompletionSource Entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public static TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public static volatile bool DisposedWhileHandling;
        public static volatile bool Disposed;
        private volatile bool _handling;

        public static void Reset()
        {
            Entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
            Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
            DisposedWhileHandling = false;
            Disposed = false;
        }

        public async ValueTask HandleAsync(RecordedEvent recorded, CancellationToken cancellationToken)
        {
            _handling = true;
            Entered.TrySetResult();
            await Release.Task; // ignores its cancellation
            _handling = false;
        }

        public void Dispose()
        {
            if (_handling)
            {
                DisposedWhileHandling = true;
            }

            Disposed = true;
        }
    }
}
