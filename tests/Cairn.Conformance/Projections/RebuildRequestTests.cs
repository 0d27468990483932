using System.Collections.Concurrent;
using Cairn.Conformance.Support;

namespace Cairn.Conformance.Projections;

/// <summary>
/// Rebuild requests: a rebuild asked with a token already cancelled, and a rebuild asked again while the running one
/// switches. Each test counts how often the handler met an order's event, to tell whether a rebuild replayed the log.
/// </summary>
public abstract class RebuildRequestTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task A_rebuild_asked_with_a_cancelled_token_is_refused_and_replays_nothing()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 5; i++)
        {
            await PlaceAsync(sut, $"o{i}");
        }

        var projection = new OrderSummaries { BatchSize = 10 };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        var seen = new ConcurrentDictionary<string, int>();
        projection.FailWhen = e =>
        {
            seen.AddOrUpdate(e.OrderId, 1, (_, n) => n + 1);
            return false;
        };

        // The caller gave up before asking: the task is cancelled, so nothing should have been asked of the runner.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => runner.RebuildAsync(new CancellationToken(canceled: true)));

        // Two appends, the second after the first is served: the loop has taken any pending rebuild request (and
        // applied its first batch) before it serves the second.
        await runner.WaitForPositionAsync(await PlaceAsync(sut, "late-1"), Patience);
        await runner.WaitForPositionAsync(await PlaceAsync(sut, "late-2"), Patience);

        Assert.False(seen.ContainsKey("o0"), $"a rebuild reported as cancelled replayed the log anyway (order o0 was applied {seen.GetValueOrDefault("o0")} more time(s))");
        Assert.Null(runner.Status.Rebuild);
    }

    [Fact]
    public async Task A_rebuild_asked_again_during_the_switch_completes_with_it_and_starts_no_other()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 25; i++)
        {
            await PlaceAsync(sut, $"o{i}");
        }

        // Batches of 10 that never grow: the rebuild's first batch (o0..o9) leaves it within a few batches of the head,
        // so its switch applies o10..o24 in the switch's own commit.
        var projection = new OrderSummaries { BatchSize = 10, CatchUpBatchSize = 10 };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        var seen = new ConcurrentDictionary<string, int>();
        Task? second = null;
        projection.FailWhen = e =>
        {
            var count = seen.AddOrUpdate(e.OrderId, 1, (_, n) => n + 1);
            if (e.OrderId == "o20" && count == 1)
            {
                // Another caller asks for a rebuild while the first one is switching: per the docs it waits for the
                // same one.
                second = runner.RebuildAsync();
            }

            return false;
        };

        var first = runner.RebuildAsync();
        await first.Bounded();
        Assert.NotNull(second);
        await second!.Bounded();
        Assert.Equal(1, seen["o0"]);

        // Two appends, the second after the first is served: the loop has taken any pending rebuild request (and
        // applied its first batch) before it serves the second.
        await runner.WaitForPositionAsync(await PlaceAsync(sut, "late-1"), Patience);
        await runner.WaitForPositionAsync(await PlaceAsync(sut, "late-2"), Patience);

        Assert.True(seen["o0"] == 1, $"a rebuild nobody awaits started after the switch: order o0 was applied {seen["o0"]} times by rebuilds, not 1");
        Assert.Null(runner.Status.Rebuild);
        Assert.Equal(27, await ReadModels(sut, projection).Query<OrderSummary>().CountAsync());
    }
}
