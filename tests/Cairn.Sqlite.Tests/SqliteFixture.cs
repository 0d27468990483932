using Cairn.Conformance;
using Cairn.EventStore;

namespace Cairn.Sqlite.Tests;

public sealed class SqliteFixture : IStoreFixture
{
    public Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null)
    {
        var database = new TempDatabase();
        var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString }, options);
        return Task.FromResult(new StoreUnderTest(
            store,
            new SqliteCheckpointStore(store),
            () =>
            {
                store.Dispose();
                database.Dispose();
                return ValueTask.CompletedTask;
            },
            new SqliteMessageBroker(store),
            new SqliteProjectionStore(store),
            new SqliteCorrelationTraceReader(store),
            () => new SqliteProjectionStore(store)));
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
