using Cairn.Conformance;
using Cairn.EventStore;

namespace Cairn.Postgres.Tests;

/// <summary>Each store lives in a schema of its own, created for the test and dropped after it.</summary>
public sealed class PostgresFixture : IStoreFixture
{
    public Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null)
    {
        var schema = PostgresServer.NewSchema();
        var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema }, options);
        var broker = new PostgresMessageBroker(store);
        var projections = new PostgresProjectionStore(store);
        return Task.FromResult(new StoreUnderTest(
            store,
            new PostgresCheckpointStore(store),
            async () =>
            {
                await projections.DisposeAsync();
                await broker.DisposeAsync();
                await store.DisposeAsync();
                await PostgresServer.DropSchemaAsync(schema);
            },
            broker,
            projections,
            new PostgresCorrelationTraceReader(store),
            () => new PostgresProjectionStore(store)));
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
