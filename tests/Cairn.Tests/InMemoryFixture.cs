using Cairn.Conformance;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

public sealed class InMemoryFixture : IStoreFixture
{
    public Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null) =>
        Task.FromResult(new StoreUnderTest(new InMemoryEventStore(options), new InMemoryCheckpointStore()));

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
