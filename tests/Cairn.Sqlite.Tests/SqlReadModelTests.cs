using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Read models a projection writes with its own SQL: tables declared with <c>SqlTable</c>, written through
/// <c>ctx.Sql</c> in the transaction of the batch, and read by anyone with a SQLite connection through a view named after
/// the table, which always shows the serving build.
/// </summary>
public sealed partial class SqlReadModelTests : IDisposable
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private readonly TempDatabase _database = new();
    private readonly SqliteEventStore _store;
    private readonly SqliteProjectionStore _projections;

    public SqlReadModelTests()
    {
        _store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        _projections = new SqliteProjectionStore(_store);
    }

    public void Dispose()
    {
        _store.Dispose();
        _database.Dispose();
    }

    [Fact]
    public async Task Rows_written_with_the_projections_own_sql_are_queried_through_the_view_named_after_the_table()
    {
        await PlaceAsync("o1", "c-1");
        await PlaceAsync("o2", "c-2");
        await PlaceAsync("o3", "c-1");
        var projection = new OrdersPerCustomer();
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);

        Assert.Equal([("c-1", 2L), ("c-2", 1L)], Counts("orders_per_customer"));
        Assert.Equal("view", Scalar("SELECT type FROM sqlite_schema WHERE name = 'orders_per_customer'"));
        Assert.Equal("view", Scalar("SELECT type FROM sqlite_schema WHERE name = 'order_log'"));

        // Live events land there too, and readers can join the views like any table.
        await runner.WaitForPositionAsync(await PlaceAsync("o4", "c-3"), Patience);
        Assert.Equal([("c-1", 2L), ("c-2", 1L), ("c-3", 1L)], Counts("orders_per_customer"));
        Assert.Equal(4L, Scalar("SELECT count(*) FROM order_log l JOIN orders_per_customer c ON c.customer = l.customer"));
    }

    [Fact]
    public async Task A_rebuild_fills_a_new_table_while_the_view_serves_the_old_one_then_switches_to_it_and_drops_the_old()
    {
        for (var i = 0; i < 30; i++)
        {
            await PlaceAsync($"o{i}", $"c-{i % 3}");
        }

        var tables = new List<string>();
        var projection = new OrdersPerCustomer { BatchSize = 1, CatchUpBatchSize = 1 };
        projection.BeforeApply = ctx =>
        {
            lock (tables)
            {
                tables.Add(ctx.Sql.Table("orders_per_customer"));
            }
        };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);
        var old = Assert.Single(tables.Distinct());
        Assert.NotEqual("orders_per_customer", old);
        Assert.Contains($"\"{old}\"", ViewSql("orders_per_customer"));

        // Hold the rebuild inside its tenth event, one batch at a time, so its first nine batches are committed.
        using var resume = new ManualResetEventSlim();
        var paused = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        projection.BeforeApply = ctx =>
        {
            var table = ctx.Sql.Table("orders_per_customer");
            if (table != old && ctx.Event.Position == new GlobalPosition(10))
            {
                paused.TrySetResult(table);
                resume.Wait(Patience);
            }
        };
        var rebuild = runner.RebuildAsync();
        string shadow;
        try
        {
            shadow = await paused.Task.Bounded();
            Assert.NotEqual(old, shadow);
            Assert.Equal(9L, Scalar($"SELECT sum(orders) FROM \"{shadow}\""));
            Assert.Contains($"\"{old}\"", ViewSql("orders_per_customer"));
            Assert.Equal([("c-0", 10L), ("c-1", 10L), ("c-2", 10L)], Counts("orders_per_customer"));
            Assert.Equal(30L, Scalar("SELECT count(*) FROM order_log"));
        }
        finally
        {
            resume.Set();
        }

        await rebuild.Bounded();
        Assert.Contains($"\"{shadow}\"", ViewSql("orders_per_customer"));
        Assert.Equal([("c-0", 10L), ("c-1", 10L), ("c-2", 10L)], Counts("orders_per_customer"));
        Assert.Equal(30L, Scalar("SELECT count(*) FROM order_log"));
        Assert.Equal(0L, Scalar($"SELECT count(*) FROM sqlite_schema WHERE name = '{old}'"));
        Assert.Equal(1L, Scalar($"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '{shadow}'"));

        // And the rebuilt table goes on with live events.
        await runner.WaitForPositionAsync(await PlaceAsync("o30", "c-0"), Patience);
        Assert.Equal(11L, Scalar("SELECT orders FROM orders_per_customer WHERE customer = 'c-0'"));
    }

    [Fact]
    public async Task An_inline_sql_projection_that_fails_fails_the_append_and_writes_nothing()
    {
        var projection = new OrdersPerCustomer { Lifecycle = ProjectionLifecycle.Inline };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        await PlaceAsync("o1", "c-1");
        Assert.Equal([("c-1", 1L)], Counts("orders_per_customer"));

        var head = await _store.GetHeadPositionAsync(default);
        var error = await Assert.ThrowsAsync<ProjectionEventException>(() => _store.AppendToStreamAsync(new StreamName("order-again"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default));
        Assert.IsType<SqliteException>(error.InnerException);
        Assert.Equal(head, await _store.GetHeadPositionAsync(default));
        Assert.Equal([("c-1", 1L)], Counts("orders_per_customer"));
        Assert.Equal([("o1", "c-1")], Log());

        await PlaceAsync("o2", "c-1");
        Assert.Equal([("c-1", 2L)], Counts("orders_per_customer"));
    }

    private async Task<GlobalPosition> PlaceAsync(string orderId, string customer) =>
        (await _store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, customer, 10m)], default)).LastPosition;

    private async Task<ProjectionRunner> StartAsync(Projection projection)
    {
        var runner = new ProjectionRunner(projection, _store, _projections, Orders.Serializer());
        await runner.StartAsync(default);
        return runner;
    }

    private async Task CaughtUpAsync(ProjectionRunner runner) =>
        await runner.WaitForPositionAsync(await _store.GetHeadPositionAsync(default), Patience);

    /// <summary>The rows of a table or view of orders per customer, as any reader of the file sees them.</summary>
    private List<(string Customer, long Orders)> Counts(string table) =>
        Read($"SELECT customer, orders FROM \"{table}\" ORDER BY customer", r => (r.GetString(0), r.GetInt64(1)));

    private List<(string Order, string Customer)> Log() =>
        Read("SELECT order_id, customer FROM order_log ORDER BY order_id", r => (r.GetString(0), r.GetString(1)));

    private string ViewSql(string view) => (string)Scalar($"SELECT sql FROM sqlite_schema WHERE type = 'view' AND name = '{view}'")!;

    private object? Scalar(string sql) => Read(sql, r => r.IsDBNull(0) ? null : r.GetValue(0)).SingleOrDefault();

    private List<T> Read<T>(string sql, Func<SqliteDataReader, T> row) => _database.Query(sql, row);

    /// <summary>
    /// Orders per customer and a log of orders, in tables of its own. Its handler runs two statements; an order placed
    /// twice breaks the log's primary key in the second, after the first has run.
    /// </summary>
    private sealed class OrdersPerCustomer : Projection
    {
        public OrdersPerCustomer()
            : base("orders-per-customer")
        {
            SqlTable("orders_per_customer", "CREATE TABLE {table} (customer TEXT PRIMARY KEY, orders INTEGER NOT NULL)");
            SqlTable("order_log", "CREATE TABLE {table} (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL)");
            On<OrderPlaced>((ctx, e) =>
            {
                BeforeApply?.Invoke(ctx);
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table("orders_per_customer")} (customer, orders) VALUES ($customer, 1) ON CONFLICT (customer) DO UPDATE SET orders = orders + 1",
                    ("$customer", e.Customer));
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table("order_log")} (order_id, customer) VALUES ($order, $customer)",
                    ("$order", e.OrderId),
                    ("$customer", e.Customer));
            });
        }

        /// <summary>Runs first in every application of an event, on the writer's thread.</summary>
        public Action<IProjectionContext>? BeforeApply { get; set; }
    }
}
