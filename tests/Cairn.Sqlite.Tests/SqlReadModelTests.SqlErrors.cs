using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite.Tests;

/// <summary>A SQL error in a handler: the failed batch writes nothing, and the event meets the failure policy.</summary>
public sealed partial class SqlReadModelTests
{
    [Fact]
    public async Task A_sql_error_in_a_handler_is_dead_lettered_and_nothing_of_the_failed_attempts_is_written()
    {
        await PlaceDuplicateAsync();
        var projection = new OrdersPerCustomer { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 2, RetryDelay = TimeSpan.Zero, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);

        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(new GlobalPosition(3), deadLetter.Position);
        Assert.Equal(typeof(SqliteException).FullName, deadLetter.Failure.Type);
        Assert.Contains("UNIQUE constraint failed", deadLetter.Failure.Message);
        Assert.Equal(3, deadLetter.Attempts);

        // The three failed attempts at the batch wrote nothing, not even the statements that ran before the error.
        Assert.Equal([("c-1", 2L), ("c-2", 1L)], Counts("orders_per_customer"));
        Assert.Equal([("o1", "c-1"), ("o2", "c-2"), ("o3", "c-1")], Log());
    }

    [Fact]
    public async Task A_sql_error_in_a_handler_stops_the_projection_at_the_event_with_nothing_of_the_failed_batch_written()
    {
        await PlaceDuplicateAsync();
        var projection = new OrdersPerCustomer { MaxRetries = 1, RetryDelay = TimeSpan.Zero, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        Assert.Equal(new GlobalPosition(3), runner.Status.FailedEvent);
        Assert.Equal(new GlobalPosition(2), runner.Status.Position);
        Assert.Contains("UNIQUE constraint failed", runner.Status.LastError);
        Assert.Equal([("c-1", 1L), ("c-2", 1L)], Counts("orders_per_customer"));
        Assert.Equal([("o1", "c-1"), ("o2", "c-2")], Log());
    }

    /// <summary>Orders o1 (c-1), o2 (c-2), o1 again (c-1, which breaks the order log's key) and o3 (c-1), at positions 1 to 4.</summary>
    private async Task PlaceDuplicateAsync()
    {
        await PlaceAsync("o1", "c-1");
        await PlaceAsync("o2", "c-2");
        await _store.AppendToStreamAsync(new StreamName("order-again"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default);
        await PlaceAsync("o3", "c-1");
    }
}
