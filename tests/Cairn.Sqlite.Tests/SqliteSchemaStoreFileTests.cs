using System.Text.Json.Nodes;
using Cairn.Schemas;

namespace Cairn.Sqlite.Tests;

/// <summary>What only the SQLite schema store can show: versions kept in the file, and one winner across processes.</summary>
public sealed class SqliteSchemaStoreFileTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    private static JsonObject Document(string title) => new() { ["title"] = title, ["type"] = "object" };

    [Fact]
    public async Task versions_and_compatibility_survive_closing_and_reopening_the_file()
    {
        using (var store = Open())
        {
            var schemas = new SqliteSchemaStore(store);
            await schemas.AddVersionAsync(new RegisteredSchema("order.placed", 2, Document("v2")));
            await schemas.AddVersionAsync(new RegisteredSchema("order.placed", 3, Document("v3")));
            await schemas.AddVersionAsync(new RegisteredSchema("account.opened", 1, Document("account")));
            await schemas.SetCompatibilityAsync("order.placed", CompatibilityMode.BackwardTransitive);
        }

        using (var reopened = Open())
        {
            var schemas = new SqliteSchemaStore(reopened);
            Assert.Equal(["account.opened", "order.placed"], await schemas.GetEventTypesAsync());
            var versions = await schemas.GetVersionsAsync("order.placed");
            Assert.Equal([2, 3], versions.Select(v => v.Version));
            Assert.Equal(["v2", "v3"], versions.Select(v => (string?)v.Schema["title"]));
            Assert.Equal(CompatibilityMode.BackwardTransitive, await schemas.GetCompatibilityAsync("order.placed"));

            // The numbering carries on from what the file holds.
            var conflict = await Assert.ThrowsAsync<SchemaVersionConflictException>(() => schemas.AddVersionAsync(new RegisteredSchema("order.placed", 3, Document("again"))));
            Assert.Equal(3, conflict.Latest);
            await schemas.AddVersionAsync(new RegisteredSchema("order.placed", 4, Document("v4")));
        }

        Assert.Equal(
            [("account.opened", 1L), ("order.placed", 2L), ("order.placed", 3L), ("order.placed", 4L)],
            _database.Query("SELECT event_type, version FROM cairn_schema_versions ORDER BY event_type, version", r => (r.GetString(0), r.GetInt64(1))));
        Assert.Equal(
            ["""{"title":"v2","type":"object"}"""],
            _database.Query("SELECT document FROM cairn_schema_versions WHERE event_type = 'order.placed' AND version = 2", r => r.GetString(0)));
        Assert.Equal(["BackwardTransitive"], _database.Query("SELECT compatibility FROM cairn_schema_types", r => r.GetString(0)));
    }

    [Fact]
    public async Task of_two_stores_on_one_file_registering_the_same_version_exactly_one_wins()
    {
        // Two stores, each with its own writer, stand for two processes sharing the file.
        using var first = Open();
        using var second = Open();
        ISchemaStore[] stores = [new SqliteSchemaStore(first), new SqliteSchemaStore(second)];
        await stores[0].AddVersionAsync(new RegisteredSchema("order.placed", 1, Document("v1")));

        for (var round = 2; round <= 6; round++)
        {
            var version = round;
            var attempts = Enumerable.Range(0, 8)
                .Select(i => Task.Run(() => stores[i % 2].AddVersionAsync(new RegisteredSchema("order.placed", version, Document($"{version} by {i}")))))
                .ToArray();
            try
            {
                await Task.WhenAll(attempts);
            }
            catch (SchemaVersionConflictException)
            {
                // Every outcome is read below.
            }

            Assert.Equal(1, attempts.Count(t => t.IsCompletedSuccessfully));
            Assert.All(
                attempts.Where(t => !t.IsCompletedSuccessfully),
                t => Assert.Equal(version, Assert.IsType<SchemaVersionConflictException>(t.Exception!.InnerException).Latest));
        }

        Assert.Equal([1, 2, 3, 4, 5, 6], (await stores[1].GetVersionsAsync("order.placed")).Select(v => v.Version));
    }

    [Fact]
    public async Task a_stored_document_that_is_not_a_json_object_is_reported_naming_the_type_and_version()
    {
        using var store = Open();
        var schemas = new SqliteSchemaStore(store);
        await schemas.AddVersionAsync(new RegisteredSchema("order.placed", 1, Document("v1")));
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString + ";Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE cairn_schema_versions SET document = '[1, 2' WHERE version = 1";
            command.ExecuteNonQuery();
        }

        var ex = await Assert.ThrowsAsync<Cairn.EventStore.CairnException>(() => schemas.GetVersionsAsync("order.placed"));
        Assert.Contains("version 1 of 'order.placed'", ex.Message, StringComparison.Ordinal);
    }
}
