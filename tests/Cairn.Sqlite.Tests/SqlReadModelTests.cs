using System.Data.Common;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// The SQL read-model contract on SQLite: a projection's tables sit in the store's file behind views named after them,
/// read by anyone with a SQLite connection.
/// </summary>
public sealed class SqlReadModelTests : Cairn.Conformance.Projections.SqlReadModelTests, IDisposable
{
    private readonly TempDatabase _database = new();
    private readonly SqliteEventStore _store;

    public SqlReadModelTests()
    {
        _store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        Projections = new SqliteProjectionStore(_store);
    }

    protected override IEventStore Store => _store;

    protected override IProjectionStore Projections { get; }

    protected override string CountsTableSql => "CREATE TABLE {table} (customer TEXT PRIMARY KEY, orders INTEGER NOT NULL)";

    protected override Type SqlErrorType => typeof(SqliteException);

    protected override string UniqueViolationText => "UNIQUE constraint failed";

    public void Dispose()
    {
        _store.Dispose();
        _database.Dispose();
    }

    protected override Task<List<T>> QueryAsync<T>(string sql, Func<DbDataReader, T> row) => Task.FromResult(_database.Query(sql, r => row(r)));

    protected override string Name(string name) => $"\"{name}\"";

    protected override async Task<bool> IsViewAsync(string name) =>
        "view".Equals(await ScalarAsync($"SELECT type FROM sqlite_schema WHERE name = '{name}'"));

    protected override async Task<bool> TableExistsAsync(string table) =>
        1L.Equals(await ScalarAsync($"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '{table}'"));

    protected override async Task<bool> ViewReadsAsync(string view, string table) =>
        ((string?)await ScalarAsync($"SELECT sql FROM sqlite_schema WHERE type = 'view' AND name = '{view}'"))?.Contains($"\"{table}\"", StringComparison.Ordinal) == true;
}
