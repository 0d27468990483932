using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;

namespace Cairn.Tests.Projections;

/// <summary>
/// A rebuild whose switch the backend refuses (<see cref="ProjectionSwitchRefusedException"/>, as PostgreSQL does when
/// an application's objects need the old columns): the old build goes on serving, and the switch is tried again after
/// its delay even when nothing is appended meanwhile.
/// </summary>
public sealed class RefusedSwitchTests
{
    /// <summary>The in-memory store, refusing switches while <see cref="Refuse"/> is set.</summary>
    private sealed class RefusingSwitches(IProjectionStore inner) : DelegatingProjectionStore(inner)
    {
        public volatile bool Refuse;

        public override Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken) =>
            batch.GoLive && Refuse
                ? Task.FromException<ProjectionBatchResult>(new ProjectionSwitchRefusedException(batch.Projection, batch.Build, "an application's view needs the old columns"))
                : Inner.ApplyAsync(batch, cancellationToken);
    }

    [Fact]
    public async Task a_refused_switch_is_tried_again_after_its_delay_without_appends()
    {
        var store = new InMemoryEventStore();
        var projections = new RefusingSwitches(new InMemoryProjectionStore(store));
        var clock = new ManualTimeProvider();
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 10m)]);
        await using var runner = new ProjectionRunner(new OrderSummaries("refused-" + Guid.NewGuid().ToString("N")), store, projections, Orders.Serializer(), timeProvider: clock);
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Wait.Timeout);

        projections.Refuse = true;
        var rebuild = runner.RebuildAsync();
        await Wait.UntilAsync(() => runner.Status.LastError?.Contains(nameof(ProjectionSwitchRefusedException), StringComparison.Ordinal) == true, "the switch is refused");

        Assert.Equal(ProjectionState.Live, runner.Status.State);
        Assert.False(rebuild.IsCompleted);

        // Whatever blocked it is gone; the delay passes on the runner's clock with nothing appended, and the switch
        // goes through at once: nothing else needs to wake the runner. The clock moves at each look, since the runner
        // arms its delay after the refusal the test saw.
        projections.Refuse = false;
        await Wait.UntilAsync(
            () =>
            {
                clock.Advance(TimeSpan.FromSeconds(31));
                return rebuild.IsCompleted;
            },
            "the switch is tried again after its delay");
        await rebuild;
        Assert.Null(runner.Status.Rebuild);
    }
}
