using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Schemas;

namespace Cairn.Sqlite.Tests;

/// <summary>Schema version 5 keeps the schema registry: a file written by version 4 gains its tables when opened.</summary>
public sealed class SchemaRegistryMigrationTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    private List<string> RegistryTables() =>
        _database.Query("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'cairn_schema_%' ORDER BY name", r => r.GetString(0));

    /// <summary>Turns the file back into what Cairn's schema version 4 wrote: no registry tables.</summary>
    private void DowngradeToVersion4()
    {
        _database.Execute("""
            DROP TABLE cairn_schema_versions;
            DROP TABLE cairn_schema_types;
            UPDATE cairn_schema SET version = 4;
            """);
    }

    [Fact]
    public async Task a_version_4_file_is_migrated_keeping_its_events_and_takes_schemas()
    {
        using (var store = Open())
        {
            await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData("order.placed", "{}"u8.ToArray())]);
        }

        DowngradeToVersion4();
        Assert.Equal([4L], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
        Assert.Empty(RegistryTables());

        using (var store = Open())
        {
            Assert.Equal([(long)SqliteSchema.Version], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
            Assert.Equal(["cairn_schema_types", "cairn_schema_versions"], RegistryTables());
            Assert.Equal("order.placed", (await store.ReadStreamAsync(new StreamName("order-1")).SingleAsync()).Type);

            var schemas = new SqliteSchemaStore(store);
            Assert.Empty(await schemas.GetEventTypesAsync());
            await schemas.AddVersionAsync(new RegisteredSchema("order.placed", 1, new JsonObject { ["type"] = "object" }));
            await schemas.SetCompatibilityAsync("order.placed", CompatibilityMode.Full);
            Assert.Equal([1], (await schemas.GetVersionsAsync("order.placed")).Select(v => v.Version));
            Assert.Equal(CompatibilityMode.Full, await schemas.GetCompatibilityAsync("order.placed"));
        }
    }

    [Fact]
    public void a_fresh_file_and_a_reopened_one_are_at_the_current_version_with_the_registry_tables()
    {
        using (Open())
        {
        }

        using (Open())
        {
        }

        Assert.Equal([(long)SqliteSchema.Version], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
        Assert.Equal(["cairn_schema_types", "cairn_schema_versions"], RegistryTables());
        Assert.Equal(
            ["document", "event_type", "registered_ticks", "version"],
            _database.Query("SELECT name FROM pragma_table_info('cairn_schema_versions') ORDER BY name", r => r.GetString(0)));
    }
}
