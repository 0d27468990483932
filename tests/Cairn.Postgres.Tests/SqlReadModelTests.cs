using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Read models a projection writes with its own SQL on PostgreSQL: tables declared with <c>SqlTable</c>, written
/// through <c>ctx.Sql</c> in the transaction of the batch, and read by anyone through a view in the store's schema named
/// after the table, which always shows the serving build.
/// </summary>
public sealed partial class SqlReadModelTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private readonly string _schema = PostgresServer.NewSchema();
    private readonly PostgresEventStore _store;
    private readonly PostgresProjectionStore _projections;

    public SqlReadModelTests()
    {
        _store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        _projections = new PostgresProjectionStore(_store);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _projections.DisposeAsync();
        await _store.DisposeAsync();
        await PostgresServer.DropSchemaAsync(_schema);
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

        Assert.Equal([("c-1", 2L), ("c-2", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal("v", await ScalarAsync($"SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{_schema}' AND c.relname = 'orders_per_customer'"));
        Assert.Equal("v", await ScalarAsync($"SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{_schema}' AND c.relname = 'order_log'"));

        // Live events land there too, and readers can join the views like any table.
        await runner.WaitForPositionAsync(await PlaceAsync("o4", "c-3"), Patience);
        Assert.Equal([("c-1", 2L), ("c-2", 1L), ("c-3", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal(4L, await ScalarAsync($"SELECT count(*) FROM \"{_schema}\".order_log l JOIN \"{_schema}\".orders_per_customer c ON c.customer = l.customer"));
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
        Assert.StartsWith($"\"{_schema}\".orders_per_customer__b", old);
        Assert.Contains(Unqualified(old), await ViewSqlAsync("orders_per_customer"));

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
            Assert.Equal(9L, await ScalarAsync($"SELECT sum(orders)::bigint FROM {shadow}"));
            Assert.Contains(Unqualified(old), await ViewSqlAsync("orders_per_customer"));
            Assert.Equal([("c-0", 10L), ("c-1", 10L), ("c-2", 10L)], await CountsAsync("orders_per_customer"));
            Assert.Equal(30L, await ScalarAsync($"SELECT count(*) FROM \"{_schema}\".order_log"));
        }
        finally
        {
            resume.Set();
        }

        await rebuild.Bounded();
        Assert.Contains(Unqualified(shadow), await ViewSqlAsync("orders_per_customer"));
        Assert.Equal([("c-0", 10L), ("c-1", 10L), ("c-2", 10L)], await CountsAsync("orders_per_customer"));
        Assert.Equal(30L, await ScalarAsync($"SELECT count(*) FROM \"{_schema}\".order_log"));
        Assert.Equal(0L, await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{_schema}' AND tablename = '{Unqualified(old)}'"));
        Assert.Equal(1L, await ScalarAsync($"SELECT count(*) FROM pg_tables WHERE schemaname = '{_schema}' AND tablename = '{Unqualified(shadow)}'"));

        // And the rebuilt table goes on with live events.
        await runner.WaitForPositionAsync(await PlaceAsync("o30", "c-0"), Patience);
        Assert.Equal(11L, await ScalarAsync($"SELECT orders FROM \"{_schema}\".orders_per_customer WHERE customer = 'c-0'"));
    }

    [Fact]
    public async Task An_inline_sql_projection_that_fails_fails_the_append_and_writes_nothing()
    {
        var projection = new OrdersPerCustomer { Lifecycle = ProjectionLifecycle.Inline };
        await using var runner = await StartAsync(projection);
        await CaughtUpAsync(runner);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        await PlaceAsync("o1", "c-1");
        Assert.Equal([("c-1", 1L)], await CountsAsync("orders_per_customer"));

        var head = await _store.GetHeadPositionAsync(default);
        var error = await Assert.ThrowsAsync<ProjectionEventException>(() => _store.AppendToStreamAsync(new StreamName("order-again"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default));
        Assert.Equal("orders-per-customer", error.Projection);
        Assert.Equal(new StreamName("order-again"), error.Event.Stream);
        var sqlError = Assert.IsType<PostgresException>(error.InnerException);
        Assert.Equal(PostgresErrorCodes.UniqueViolation, sqlError.SqlState);
        Assert.Equal(head, await _store.GetHeadPositionAsync(default));
        Assert.Equal([("c-1", 1L)], await CountsAsync("orders_per_customer"));
        Assert.Equal([("o1", "c-1")], await LogAsync());

        await PlaceAsync("o2", "c-1");
        Assert.Equal([("c-1", 2L)], await CountsAsync("orders_per_customer"));
    }

    [Fact]
    public void Named_parameters_are_written_as_on_sqlite_and_dollar_quotes_strings_and_comments_are_left_alone()
    {
        Assert.Equal(
            "INSERT INTO t (a, b) VALUES (@day, @total) -- $not\n/* $nor /* $nested */ */ SELECT '$text''$x', \"$col\", $$ $body $$, $q$ $y $q$, $1, a$b",
            ProjectionSqlParameters.Translate("INSERT INTO t (a, b) VALUES ($day, $total) -- $not\n/* $nor /* $nested */ */ SELECT '$text''$x', \"$col\", $$ $body $$, $q$ $y $q$, $1, a$b"));
        Assert.Equal("SELECT E'\\'$x', @y", ProjectionSqlParameters.Translate("SELECT E'\\'$x', $y"));
        Assert.Equal("day", ProjectionSqlParameters.Name("$day"));
        Assert.Equal("day", ProjectionSqlParameters.Name("@day"));
        Assert.Equal("day", ProjectionSqlParameters.Name("day"));
    }

    [Fact]
    public async Task A_table_named_like_one_of_cairns_own_is_refused_when_the_projection_starts()
    {
        var projection = new TableNamed("events");
        await using var runner = await StartAsync(projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection is refused");

        Assert.Contains(nameof(InvalidProjectionException), runner.Status.LastError);
        Assert.Contains("'events'", runner.Status.LastError);
        Assert.Equal(0L, await ScalarAsync($"SELECT count(*) FROM \"{_schema}\".projection_builds"));
    }

    private static string Unqualified(string table) => table[(table.LastIndexOf('.') + 1)..];

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

    /// <summary>The rows of a table or view of orders per customer, as any reader of the schema sees them.</summary>
    private Task<List<(string Customer, long Orders)>> CountsAsync(string table) =>
        ReadAsync($"SELECT customer, orders FROM \"{_schema}\".\"{table}\" ORDER BY customer", r => (r.GetString(0), r.GetInt64(1)));

    private Task<List<(string Order, string Customer)>> LogAsync() =>
        ReadAsync($"SELECT order_id, customer FROM \"{_schema}\".order_log ORDER BY order_id", r => (r.GetString(0), r.GetString(1)));

    private async Task<string> ViewSqlAsync(string view) => (string)(await ScalarAsync($"SELECT pg_get_viewdef('\"{_schema}\".\"{view}\"'::regclass)"))!;

    private async Task<object?> ScalarAsync(string sql) => (await ReadAsync(sql, r => r.IsDBNull(0) ? null : r.GetValue(0))).SingleOrDefault();

    private static async Task<List<T>> ReadAsync<T>(string sql, Func<NpgsqlDataReader, T> row)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<T>();
        while (await reader.ReadAsync())
        {
            rows.Add(row(reader));
        }

        return rows;
    }

    /// <summary>
    /// Orders per customer and a log of orders, in tables of its own. Its handler runs two statements; an order placed
    /// twice breaks the log's primary key in the second, after the first has run.
    /// </summary>
    private sealed class OrdersPerCustomer : Projection
    {
        public OrdersPerCustomer()
            : base("orders-per-customer")
        {
            SqlTable("orders_per_customer", "CREATE TABLE {table} (customer text PRIMARY KEY, orders bigint NOT NULL); CREATE INDEX {table}_by_orders ON {table} (orders)");
            SqlTable("order_log", "CREATE TABLE {table} (order_id text PRIMARY KEY, customer text NOT NULL)");
            On<OrderPlaced>((ctx, e) =>
            {
                BeforeApply?.Invoke(ctx);
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table("orders_per_customer")} AS t (customer, orders) VALUES ($customer, 1) ON CONFLICT (customer) DO UPDATE SET orders = t.orders + 1",
                    ("$customer", e.Customer));
                ctx.Sql.Execute(
                    $"INSERT INTO {ctx.Sql.Table("order_log")} (order_id, customer) VALUES ($order, $customer)",
                    ("$order", e.OrderId),
                    ("$customer", e.Customer));
            });
        }

        /// <summary>Runs first in every application of an event.</summary>
        public Action<IProjectionContext>? BeforeApply { get; set; }
    }

    /// <summary>A projection declaring one table of the given name.</summary>
    private sealed class TableNamed : Projection
    {
        public TableNamed(string table)
            : base("table-named")
        {
            SqlTable(table, "CREATE TABLE {table} (id text PRIMARY KEY)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table(table)} (id) VALUES ($id)", ("$id", e.OrderId)));
        }
    }
}
