using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Sqlite.Tests;

/// <summary>The views of projections' SQL tables share the file's name space: a clash is refused, not overwritten.</summary>
public sealed class SqlTableNameTests
{
    [Fact]
    public async Task A_second_projection_declaring_a_table_name_another_one_serves_fails_naming_it_and_leaves_the_first_alone()
    {
        using var database = new TempDatabase();
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        var projections = new SqliteProjectionStore(store);
        await store.AppendToStreamAsync(Orders.Stream("1"), ExpectedVersion.Any, [Orders.Placed("1", "c-1", 1m)], default);
        await using var first = new ProjectionRunner(new Counting("first"), store, projections, Orders.Serializer());
        await first.StartAsync(default);
        await first.WaitForPositionAsync(new GlobalPosition(1), Wait.Timeout);

        await using var second = new ProjectionRunner(new Counting("second"), store, projections, Orders.Serializer());
        await second.StartAsync(default);
        await Wait.UntilAsync(() => second.Status.State == ProjectionState.Failed, "the second projection fails");
        Assert.Contains("'placed_orders'", second.Status.LastError);
        Assert.Contains("serving another projection", second.Status.LastError);

        await store.AppendToStreamAsync(Orders.Stream("2"), ExpectedVersion.Any, [Orders.Placed("2", "c-1", 1m)], default);
        await first.WaitForPositionAsync(new GlobalPosition(2), Wait.Timeout);
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection(database.ConnectionString);
        connection.Open();
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM placed_orders";
        Assert.Equal(2L, count.ExecuteScalar());
    }

    [Fact]
    public void Reserved_table_names_are_refused_when_declared()
    {
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => new Counting("x", "cairn_events")).Message);
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => new Counting("x", "sqlite_master")).Message);

        // A build's document table on PostgreSQL: a view of that name would take its place when that build is made.
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => new Counting("x", "doc_2_things")).Message);
        Assert.Equal("docs_per_day", new Counting("x", "docs_per_day").SqlTables[0].Name);
        Assert.Equal("doc_totals", new Counting("x", "doc_totals").SqlTables[0].Name);
    }

    private sealed class Counting : Projection
    {
        public Counting(string name, string table = "placed_orders")
            : base(name)
        {
            SqlTable(table, "CREATE TABLE {table} (id TEXT PRIMARY KEY)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table(table)} (id) VALUES ($id)", ("$id", e.OrderId)));
        }
    }
}
