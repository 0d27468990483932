using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Postgres.Tests;

/// <summary>A poll interval longer than a timer can wait (<see cref="TimeSpan.MaxValue"/>) means live readers never poll.</summary>
public sealed class PollIntervalTests : OwnSchemaStoreTests
{
    protected override PostgresEventStoreOptions Configure(PostgresEventStoreOptions options) =>
        options with { ExternalCommitPollInterval = TimeSpan.MaxValue };

    [Fact]
    public async Task a_live_wait_with_no_poll_interval_waits_for_the_append()
    {
        var head = await Store.GetHeadPositionAsync(default);
        var waiting = Store.WaitForAppendAsync(head, default);
        Assert.False(waiting.IsCompleted);

        await Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [new EventData("order.placed", "{}"u8.ToArray())]);
        await waiting.Bounded();
    }
}
