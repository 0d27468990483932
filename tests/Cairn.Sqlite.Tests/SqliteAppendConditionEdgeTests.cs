using Cairn.Conformance.Support;
using Cairn.EventStore;

namespace Cairn.Sqlite.Tests;

/// <summary>Append conditions on SQLite: what a condition is, is fixed when the append is called.</summary>
public sealed class SqliteAppendConditionEdgeTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    // The condition is read by the writer thread, after AppendAsync has returned: "what you pass is copied when the
    // append is called", so a list its query was made from, cleared before the writer runs, changes nothing.
    [Fact]
    public async Task A_condition_is_fixed_when_the_append_is_called()
    {
        using var store = Open();
        await store.AppendToStreamAsync("misc-1", ExpectedVersion.Any, [TestEvents.Json()]);
        var items = new List<EventQueryItem> { EventQueryItem.WithTags("user:alice") };
        var condition = new AppendCondition(new EventQuery(items), null);

        // Another connection holds the write lock, so the writer cannot judge the append until the list has changed.
        Task<AppendResult> append;
        using (var other = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={_database.Path};Pooling=False"))
        {
            other.Open();
            using (var begin = other.CreateCommand())
            {
                begin.CommandText = "BEGIN IMMEDIATE";
                begin.ExecuteNonQuery();
            }

            append = store.AppendWithConditionAsync("user-alice", [TestEvents.Tagged("user.registered", "user:alice")], condition);
            items.Clear();
            using var rollback = other.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
        }

        Assert.False((await append).WasDuplicate);
    }
}
