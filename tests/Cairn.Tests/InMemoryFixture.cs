using Cairn.Conformance;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

public sealed class InMemoryFixture : IStoreFixture
{
    public Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null)
    {
        var store = new InMemoryEventStore(options);
        var checkpoints = new InMemoryCheckpointStore();
        var broker = new InMemoryMessageBroker(store, checkpoints);
        return Task.FromResult(new StoreUnderTest(store, checkpoints, broker: broker, projections: new Cairn.Projections.InMemory.InMemoryProjectionStore(store), traces: broker, otherProjections: () => new Cairn.Projections.InMemory.InMemoryProjectionStore(store)));
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
