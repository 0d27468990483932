using Cairn.EventStore;

namespace Cairn.Conformance;

/// <summary>
/// The base of every conformance test class: a backend's fixture, which makes a fresh, empty store for each test.
/// </summary>
public abstract class StoreTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : class, IStoreFixture, new()
{
    /// <summary>The backend's fixture.</summary>
    protected TFixture Fixture { get; } = fixture;

    /// <summary>A fresh, empty store.</summary>
    protected Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null) => Fixture.CreateAsync(options);

    /// <summary>What a failed write must leave untouched: the head and the given streams' state.</summary>
    protected static async Task<StoreSnapshot> SnapshotAsync(IEventStore store, params StreamName[] streams)
    {
        var infos = new List<StreamInfo>();
        foreach (var stream in streams)
        {
            infos.Add(await store.GetStreamInfoAsync(stream, default));
        }

        var all = await store.ReadAllAsync(GlobalPosition.Start, EventFilter.AllWithSystemEvents, long.MaxValue, default).CountAsync();
        return new StoreSnapshot(await store.GetHeadPositionAsync(default), all, infos);
    }

    /// <summary>Asserts nothing was written since the snapshot.</summary>
    protected static async Task AssertNothingWrittenAsync(IEventStore store, StoreSnapshot before, params StreamName[] streams)
    {
        var after = await SnapshotAsync(store, streams);
        Assert.Equal(before.Head, after.Head);
        Assert.Equal(before.EventCount, after.EventCount);
        Assert.Equal(before.Streams, after.Streams);
    }

    /// <summary>Asserts each position is greater than the one before (and than the start).</summary>
    protected static void AssertStrictlyIncreasing(IEnumerable<GlobalPosition> positions)
    {
        var previous = GlobalPosition.Start;
        var index = 0;
        foreach (var position in positions)
        {
            Assert.True(position > previous, $"Position {position} at index {index} does not follow {previous}.");
            previous = position;
            index++;
        }
    }

    /// <summary>The head, the number of events in the log and the state of some streams.</summary>
    protected sealed record StoreSnapshot(GlobalPosition Head, int EventCount, IReadOnlyList<StreamInfo> Streams);
}
