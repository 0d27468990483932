using System.Data.Common;
using System.Globalization;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>
/// Read models a projection writes with its own SQL: tables declared with <c>SqlTable</c>, written through
/// <c>ctx.Sql</c> in the transaction of the batch, and read by anyone through a view named after the table, which always
/// shows the serving build. A backend enrols with its store and what these tests need of its SQL: a reader's
/// connection, the names readers write, and its catalog.
/// </summary>
public abstract class SqlReadModelTests
{
    protected static readonly TimeSpan Patience = Wait.Timeout;

    /// <summary>The backend's event store, fresh and empty for each test.</summary>
    protected abstract IEventStore Store { get; }

    /// <summary>The backend's projection store over <see cref="Store"/>.</summary>
    protected abstract IProjectionStore Projections { get; }

    /// <summary>
    /// The statements creating the orders-per-customer table (<c>customer</c> text primary key, <c>orders</c> an integer)
    /// in the backend's dialect, with <c>{table}</c> for its name.
    /// </summary>
    protected abstract string CountsTableSql { get; }

    /// <summary>The type of the backend's SQL errors.</summary>
    protected abstract Type SqlErrorType { get; }

    /// <summary>What the backend's error for a broken unique key says.</summary>
    protected abstract string UniqueViolationText { get; }

    /// <summary>Runs a query as any reader of the store's database would, on a connection of its own.</summary>
    protected abstract Task<List<T>> QueryAsync<T>(string sql, Func<DbDataReader, T> row);

    /// <summary>A view's or table's name as a reader writes it in a query (qualified and quoted as the backend needs).</summary>
    protected abstract string Name(string name);

    /// <summary>Whether the name is a view in the catalog.</summary>
    protected abstract Task<bool> IsViewAsync(string name);

    /// <summary>Whether a build's table (a name as <c>ctx.Sql.Table</c> gives it) exists.</summary>
    protected abstract Task<bool> TableExistsAsync(string table);

    /// <summary>Whether a view reads from a build's table (a name as <c>ctx.Sql.Table</c> gives it).</summary>
    protected abstract Task<bool> ViewReadsAsync(string view, string table);

    [Fact]
    public async Task Rows_written_with_the_projections_own_sql_are_queried_through_the_view_named_after_the_table()
    {
        await PlaceAsync("o1", "c-1");
        await PlaceAsync("o2", "c-2");
        await PlaceAsync("o3", "c-1");
        var projection = new OrdersPerCustomer(CountsTableSql);
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);

        Assert.Equal([("c-1", 2L), ("c-2", 1L)], await CountsAsync("orders_per_customer"));
        Assert.True(await IsViewAsync("orders_per_customer"));
        Assert.True(await IsViewAsync("order_log"));

        // Live events land there too, and readers can join the views like any table.
        await runner.WaitForPositionAsync(await PlaceAsync("o4", "c-3"), Patience);
        Assert.Equal([("c-1", 2L), ("c-2", 1L), ("c-3", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal(4L, await ScalarAsync($"SELECT count(*) FROM {Name("order_log")} l JOIN {Name("orders_per_customer")} c ON c.customer = l.customer"));
    }

    [Fact]
    public async Task A_rebuild_fills_a_new_table_while_the_view_serves_the_old_one_then_switches_to_it_and_drops_the_old()
    {
        for (var i = 0; i < 30; i++)
        {
            await PlaceAsync($"o{i}", $"c-{i % 3}");
        }

        var tables = new List<string>();
        var projection = new OrdersPerCustomer(CountsTableSql) { BatchSize = 1, CatchUpBatchSize = 1 };
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
        Assert.Contains("orders_per_customer__b", old);
        Assert.True(await ViewReadsAsync("orders_per_customer", old));

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
            Assert.Equal(9L, await ScalarAsync($"SELECT CAST(sum(orders) AS bigint) FROM {shadow}"));
            Assert.True(await ViewReadsAsync("orders_per_customer", old));
            Assert.Equal([("c-0", 10L), ("c-1", 10L), ("c-2", 10L)], await CountsAsync("orders_per_customer"));
            Assert.Equal(30L, await ScalarAsync($"SELECT count(*) FROM {Name("order_log")}"));
        }
        finally
        {
            resume.Set();
        }

        await rebuild.Bounded();
        Assert.True(await ViewReadsAsync("orders_per_customer", shadow));
        Assert.Equal([("c-0", 10L), ("c-1", 10L), ("c-2", 10L)], await CountsAsync("orders_per_customer"));
        Assert.Equal(30L, await ScalarAsync($"SELECT count(*) FROM {Name("order_log")}"));
        Assert.False(await TableExistsAsync(old));
        Assert.True(await TableExistsAsync(shadow));

        // And the rebuilt table goes on with live events.
        await runner.WaitForPositionAsync(await PlaceAsync("o30", "c-0"), Patience);
        Assert.Equal(11L, await ScalarAsync($"SELECT orders FROM {Name("orders_per_customer")} WHERE customer = 'c-0'"));
    }

    [Fact]
    public async Task An_inline_sql_projection_that_fails_fails_the_append_and_writes_nothing()
    {
        var projection = new OrdersPerCustomer(CountsTableSql) { Lifecycle = ProjectionLifecycle.Inline };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        await PlaceAsync("o1", "c-1");
        Assert.Equal([("c-1", 1L)], await CountsAsync("orders_per_customer"));

        var head = await Store.GetHeadPositionAsync(default);
        var error = await Assert.ThrowsAsync<ProjectionEventException>(() => Store.AppendToStreamAsync(new StreamName("order-again"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default));
        Assert.Equal("orders-per-customer", error.Projection);
        Assert.Equal(new StreamName("order-again"), error.Event.Stream);
        Assert.IsType(SqlErrorType, error.InnerException);
        Assert.Contains(UniqueViolationText, error.InnerException!.Message);
        Assert.Equal(head, await Store.GetHeadPositionAsync(default));
        Assert.Equal([("c-1", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal([("o1", "c-1")], await LogAsync());

        await PlaceAsync("o2", "c-1");
        Assert.Equal([("c-1", 2L)], await CountsAsync("orders_per_customer"));
    }

    [Fact]
    public async Task A_sql_error_in_a_handler_is_dead_lettered_and_nothing_of_the_failed_attempts_is_written()
    {
        await PlaceDuplicateAsync();
        var projection = new OrdersPerCustomer(CountsTableSql) { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 2, RetryDelay = TimeSpan.Zero, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);

        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(new GlobalPosition(3), deadLetter.Position);
        Assert.Equal(SqlErrorType.FullName, deadLetter.Failure.Type);
        Assert.Contains(UniqueViolationText, deadLetter.Failure.Message);
        Assert.Equal(3, deadLetter.Attempts);

        // The three failed attempts at the batch wrote nothing, not even the statements that ran before the error.
        Assert.Equal([("c-1", 2L), ("c-2", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal([("o1", "c-1"), ("o2", "c-2"), ("o3", "c-1")], await LogAsync());
    }

    [Fact]
    public async Task A_sql_error_in_a_handler_stops_the_projection_at_the_event_with_nothing_of_the_failed_batch_written()
    {
        await PlaceDuplicateAsync();
        var projection = new OrdersPerCustomer(CountsTableSql) { MaxRetries = 1, RetryDelay = TimeSpan.Zero, BatchSize = 10 };
        await using var runner = await StartAsync(projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops");

        Assert.Equal(new GlobalPosition(3), runner.Status.FailedEvent);
        Assert.Equal(new GlobalPosition(2), runner.Status.Position);
        Assert.Contains(UniqueViolationText, runner.Status.LastError);
        Assert.Equal([("c-1", 1L), ("c-2", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal([("o1", "c-1"), ("o2", "c-2")], await LogAsync());
    }

    // PostgreSQL names a build's document tables 'doc_<build>_<collection>'. A SQL table of that name would have its
    // view take a document table's place when that build is made (or be dropped with an old build's documents), so it
    // is refused when declared, on every backend alike; other names starting with 'doc' are the application's.
    [Fact]
    public async Task A_sql_table_named_like_a_document_table_is_refused_when_declared()
    {
        await PlaceAsync("o1", "c-1");
        var refused = Assert.Throws<ArgumentException>(() => new OrdersPerCustomer(CountsTableSql, "counts", "doc_1_counts"));
        Assert.Contains("reserved", refused.Message, StringComparison.Ordinal);

        var counts = new OrdersPerCustomer(CountsTableSql, "counts", "doc_counts");
        await using var countsRunner = await StartAsync(counts);
        await CaughtUpAsync(countsRunner);
        Assert.Equal([("c-1", 1L)], await CountsAsync("doc_counts"));
    }

    [Fact]
    public async Task A_null_parameter_binds_as_sql_null_where_its_column_types_it_and_where_a_cast_does()
    {
        await Store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Serializer().ToEventData(new OrderPlaced("o1", "c-1", 10m, null))], default);
        await Store.AppendToStreamAsync(Orders.Stream("o2"), ExpectedVersion.Any, [Orders.Serializer().ToEventData(new OrderPlaced("o2", "c-2", 10m, DateTimeOffset.UnixEpoch))], default);
        await using var runner = await StartAsync(new PlacedAtLog());
        await CaughtUpAsync(runner);

        Assert.Equal(
            [("o1", null, 1L), ("o2", "1970-01-01", 0L)],
            await QueryAsync($"SELECT order_id, placed_on, undated FROM {Name("placed_at_log")} ORDER BY order_id", r => (r.GetString(0), r.IsDBNull(1) ? null : r.GetString(1), Convert.ToInt64(r.GetValue(2), CultureInfo.InvariantCulture))));
    }

    private ReadModels ReadModels(Projection projection) => new(Projections, Orders.Serializer(), [projection]);

    /// <summary>Places an order and returns the append's position.</summary>
    protected async Task<GlobalPosition> PlaceAsync(string orderId, string customer) =>
        (await Store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, customer, 10m)], default)).LastPosition;

    /// <summary>Starts a runner of the projection on the store.</summary>
    protected async Task<ProjectionRunner> StartAsync(Projection projection)
    {
        var runner = new ProjectionRunner(projection, Store, Projections, Orders.Serializer());
        await runner.StartAsync(default);
        return runner;
    }

    /// <summary>Waits for the runner to reach the head of the log.</summary>
    protected async Task CaughtUpAsync(ProjectionRunner runner) =>
        await runner.WaitForPositionAsync(await Store.GetHeadPositionAsync(default), Patience);

    /// <summary>The first column of a query's single row, or null.</summary>
    protected async Task<object?> ScalarAsync(string sql) => (await QueryAsync(sql, r => r.IsDBNull(0) ? null : r.GetValue(0))).SingleOrDefault();

    /// <summary>The rows of a table or view of orders per customer, as any reader sees them.</summary>
    private Task<List<(string Customer, long Orders)>> CountsAsync(string table) =>
        QueryAsync($"SELECT customer, orders FROM {Name(table)} ORDER BY customer", r => (r.GetString(0), r.GetInt64(1)));

    private Task<List<(string Order, string Customer)>> LogAsync() =>
        QueryAsync($"SELECT order_id, customer FROM {Name("order_log")} ORDER BY order_id", r => (r.GetString(0), r.GetString(1)));

    /// <summary>Orders o1 (c-1), o2 (c-2), o1 again (c-1, which breaks the order log's key) and o3 (c-1), at positions 1 to 4.</summary>
    private async Task PlaceDuplicateAsync()
    {
        await PlaceAsync("o1", "c-1");
        await PlaceAsync("o2", "c-2");
        await Store.AppendToStreamAsync(new StreamName("order-again"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default);
        await PlaceAsync("o3", "c-1");
    }

    /// <summary>
    /// A log of orders' placing days, a null where an order has none: the column types one null, a cast (as both
    /// backends write it) the other, which PostgreSQL cannot type by itself.
    /// </summary>
    private sealed class PlacedAtLog : Projection
    {
        public PlacedAtLog()
            : base("placed-at-log")
        {
            SqlTable("placed_at_log", "CREATE TABLE {table} (order_id text PRIMARY KEY, placed_on text NULL, undated integer NOT NULL)");
            On<OrderPlaced>((ctx, e) =>
            {
                var day = e.PlacedAt?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table("placed_at_log")} (order_id, placed_on, undated) VALUES ($order, $day, CASE WHEN CAST($again AS TEXT) IS NULL THEN 1 ELSE 0 END)",
                    ("$order", e.OrderId),
                    ("$day", day),
                    ("$again", day));
            });
        }
    }

    /// <summary>
    /// Orders per customer and a log of orders, in tables of its own. Its handler runs two statements; an order placed
    /// twice breaks the log's primary key in the second, after the first has run.
    /// </summary>
    private sealed class OrdersPerCustomer : Projection
    {
        public OrdersPerCustomer(string countsTableSql, string name = "orders-per-customer", string countsTable = "orders_per_customer")
            : base(name)
        {
            var log = name == "orders-per-customer" ? "order_log" : countsTable + "_log";
            SqlTable(countsTable, countsTableSql);
            SqlTable(log, "CREATE TABLE {table} (order_id text PRIMARY KEY, customer text NOT NULL)");
            On<OrderPlaced>((ctx, e) =>
            {
                BeforeApply?.Invoke(ctx);
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table(countsTable)} AS t (customer, orders) VALUES ($customer, 1) ON CONFLICT (customer) DO UPDATE SET orders = t.orders + 1",
                    ("$customer", e.Customer));
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table(log)} (order_id, customer) VALUES ($order, $customer)",
                    ("$order", e.OrderId),
                    ("$customer", e.Customer));
            });
        }

        /// <summary>Runs first in every application of an event.</summary>
        public Action<IProjectionContext>? BeforeApply { get; set; }
    }
}
