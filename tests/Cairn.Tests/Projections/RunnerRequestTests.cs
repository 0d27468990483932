using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;

namespace Cairn.Tests.Projections;

/// <summary>
/// A runner's requests at awkward moments: a rebuild asked while the shadow of one asked before is being made, and
/// calls after its disposal.
/// </summary>
public sealed class RunnerRequestTests
{
    /// <summary>The in-memory store, holding the first shadow's making until released, and counting every one.</summary>
    private sealed class HoldingShadows(IProjectionStore inner) : DelegatingProjectionStore(inner)
    {
        public readonly TaskCompletionSource Entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Started;

        public override async Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref Started) == 1)
            {
                Entered.TrySetResult();
                await Release.Task.WaitAsync(cancellationToken);
            }

            return await Inner.StartShadowAsync(projection, cancellationToken);
        }
    }

    // The loop had taken the first request and had no shadow yet, so the second call set the request again, and once
    // the first rebuild switched another full one started that nobody awaited.
    [Fact]
    public async Task a_rebuild_asked_while_the_shadow_is_made_joins_it_and_starts_no_other()
    {
        var store = new InMemoryEventStore();
        var projections = new HoldingShadows(new InMemoryProjectionStore(store));
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 10m)]);
        await using var runner = new ProjectionRunner(new OrderSummaries("shadow-starts-" + Guid.NewGuid().ToString("N")), store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Wait.Timeout);

        var first = runner.RebuildAsync();
        await projections.Entered.Task.Bounded();
        var second = runner.RebuildAsync();
        projections.Release.SetResult();
        await first.Bounded();
        await second.Bounded();

        // Two appends, the second after the first is served: the loop has taken any pending request (and made its
        // shadow) before it serves the second.
        var late = await store.AppendToStreamAsync(Orders.Stream("o2"), ExpectedVersion.Any, [Orders.Placed("o2", "c-2", 20m)]);
        await runner.WaitForPositionAsync(late.LastPosition, Wait.Timeout);
        late = await store.AppendToStreamAsync(Orders.Stream("o3"), ExpectedVersion.Any, [Orders.Placed("o3", "c-3", 30m)]);
        await runner.WaitForPositionAsync(late.LastPosition, Wait.Timeout);

        Assert.Equal(1, Volatile.Read(ref projections.Started));
        Assert.Null(runner.Status.Rebuild);
    }

    /// <summary>The in-memory store, failing the first shadow's making as a dropped connection would.</summary>
    private sealed class FailingFirstShadow(IProjectionStore inner) : DelegatingProjectionStore(inner)
    {
        public int Started;

        public override Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken) =>
            Interlocked.Increment(ref Started) == 1
                ? Task.FromException<ProjectionBuild>(new IOException("the connection dropped"))
                : Inner.StartShadowAsync(projection, cancellationToken);
    }

    // The loop took the request and the shadow's making failed: the caller waited for a rebuild nobody ran. Kept for
    // a retry, the request then stopped the serving build for good when the shadow could never be made.
    [Fact]
    public async Task a_rebuild_whose_shadow_fails_to_start_fails_its_caller_and_the_serving_build_goes_on()
    {
        var store = new InMemoryEventStore();
        var projections = new FailingFirstShadow(new InMemoryProjectionStore(store));
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 10m)]);
        await using var runner = new ProjectionRunner(new OrderSummaries("shadow-fails-" + Guid.NewGuid().ToString("N")), store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Wait.Timeout);

        var failed = await Assert.ThrowsAsync<IOException>(() => runner.RebuildAsync().Bounded());
        Assert.Equal("the connection dropped", failed.Message);
        var late = await store.AppendToStreamAsync(Orders.Stream("o2"), ExpectedVersion.Any, [Orders.Placed("o2", "c-2", 20m)]);
        await runner.WaitForPositionAsync(late.LastPosition, Wait.Timeout);

        await runner.RebuildAsync().Bounded();
        Assert.Equal(2, Volatile.Read(ref projections.Started));
        Assert.Null(runner.Status.Rebuild);
        Assert.Equal(ProjectionState.Live, runner.Status.State);
    }

    // A second disposal, or a stop after one, cancelled a disposed token source and threw ObjectDisposedException.
    [Fact]
    public async Task a_runner_disposed_twice_or_stopped_after_its_disposal_says_nothing_and_will_not_start_again()
    {
        var store = new InMemoryEventStore();
        var runner = new ProjectionRunner(new OrderSummaries("disposed-" + Guid.NewGuid().ToString("N")), store, new InMemoryProjectionStore(store), Orders.Serializer());
        await runner.StartAsync(default);

        await runner.DisposeAsync();
        await runner.DisposeAsync();
        await runner.StopAsync(default);

        await ThroughTask.RefusedAsync(() => runner.StartAsync(default), typeof(ObjectDisposedException));
    }
}
