using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Sqlite.Tests;

/// <summary>An inline projection over a file that another store (another process) also appends to.</summary>
public sealed class InlineAcrossStoresTests
{
    [Fact]
    public async Task Events_appended_by_a_store_that_does_not_run_the_inline_projection_are_applied_by_the_next_append_that_does()
    {
        using var database = new TempDatabase();
        using var hosting = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        using var other = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        var projections = new SqliteProjectionStore(hosting);
        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using var runner = new ProjectionRunner(projection, hosting, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");

        await other.AppendToStreamAsync(Orders.Stream("elsewhere"), ExpectedVersion.Any, [Orders.Placed("elsewhere", "c-9", 9m)], default);
        await hosting.AppendToStreamAsync(Orders.Stream("here"), ExpectedVersion.Any, [Orders.Placed("here", "c-1", 1m)], default);

        var models = new ReadModels(projections, Orders.Serializer(), [projection]);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("here"));
        Assert.Equal("c-9", (await models.LoadAsync<OrderSummary>("elsewhere"))?.Customer);
        Assert.Equal(2, await models.Query<OrderSummary>().CountAsync());
    }
}
