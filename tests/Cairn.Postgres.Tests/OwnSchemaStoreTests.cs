namespace Cairn.Postgres.Tests;

/// <summary>A test class whose tests each get a store of their own, in a schema created for the test and dropped after it.</summary>
public abstract class OwnSchemaStoreTests : IAsyncLifetime
{
    /// <summary>The schema of this test's store.</summary>
    protected string Schema { get; } = PostgresServer.NewSchema();

    /// <summary>The store, opened before the test.</summary>
    protected PostgresEventStore Store { get; private set; } = null!;

    public Task InitializeAsync()
    {
        Store = new PostgresEventStore(Configure(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = Schema }));
        return Task.CompletedTask;
    }

    /// <summary>The store's options: the test server and schema, changed by a class that needs other settings.</summary>
    protected virtual PostgresEventStoreOptions Configure(PostgresEventStoreOptions options) => options;

    public async Task DisposeAsync()
    {
        try
        {
            await Store.DisposeAsync();
        }
        finally
        {
            // Dropped even if closing the store failed, so no test leaves its schema behind.
            await PostgresServer.DropSchemaAsync(Schema);
        }
    }
}
