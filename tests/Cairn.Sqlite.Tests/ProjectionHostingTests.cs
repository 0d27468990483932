using System.Globalization;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Projections hosted on the SQLite backend: the read model, its position and its dead letters in the file across
/// restarts, inline projections, tables written with the projection's own SQL behind a view, version changes, and the
/// storage layout docs/projections.md describes.
/// </summary>
public sealed class ProjectionHostingTests : IDisposable
{
    private static readonly TimeSpan Patience = Wait.Timeout;
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private IHost Host(Action<CairnBuilder> projections)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        projections(builder.Services.AddCairn(o =>
        {
            o.UseSqlite(_database.ConnectionString);
            o.EventTypes.Register<OrderPlaced>().Register<OrderLineAdded>().Register<OrderShipped>().Register<OrderCancelled>().Register<OrderNoted>();
        }));
        return builder.Build();
    }

    private static Task<AppendResult> PlaceAsync(IHost host, string orderId, string customer = "c-1", decimal total = 10m) =>
        host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, customer, total)]);

    private List<T> Select<T>(string sql, Func<SqliteDataReader, T> read) => _database.Query(sql, read);

    [Fact]
    public async Task use_sqlite_hosts_projections_whose_documents_and_positions_survive_a_restart()
    {
        using (var host = Host(b => b.AddProjection<OrderSummaries>().AddProjection(new EventTally())))
        {
            Assert.IsType<SqliteProjectionStore>(host.Services.GetRequiredService<IProjectionStore>());
            await host.StartAsync();
            await PlaceAsync(host, "1", total: 5m);
            await PlaceAsync(host, "2", "c-2");
            var last = await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("1"), ExpectedVersion.Any, [Orders.Line("1", 7m)]);
            var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
            await monitor.WaitForAllAsync(last.LastPosition, Patience);
            Assert.Equal(new OrderSummary("1", "c-1", 12m, "placed", 1), await host.Services.GetRequiredService<ReadModels>().LoadAsync<OrderSummary>("1"));
            await host.StopAsync();
        }

        // Reopened: each projection resumes from its stored position (the tally throws on an event applied twice).
        using (var host = Host(b => b.AddProjection<OrderSummaries>().AddProjection(new EventTally())))
        {
            var models = host.Services.GetRequiredService<ReadModels>();
            Assert.Equal(2, await models.Query<OrderSummary>().CountAsync());
            await host.StartAsync();
            var placed = await PlaceAsync(host, "3", "c-3");
            var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
            await monitor.WaitForAllAsync(placed.LastPosition, Patience);
            Assert.Equal(4, (await models.LoadAsync<Tally>("all"))!.Events);
            Assert.Equal(["c-1", "c-2", "c-3"], (await models.Query<OrderSummary>().OrderBy("customer").ToListAsync()).Select(o => o.Customer));
            Assert.All(monitor.Statuses, s => Assert.Equal(0L, s.Failures));
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task a_hosted_inline_projection_commits_with_each_append()
    {
        using var host = Host(b => b.AddProjection(new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline }));
        await PlaceAsync(host, "before");
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await Wait.UntilAsync(() => monitor.Statuses.Single().State == ProjectionState.Live, "the inline projection is live");
        var models = host.Services.GetRequiredService<ReadModels>();
        for (var i = 0; i < 5; i++)
        {
            await PlaceAsync(host, $"o{i}", total: i);
            Assert.Equal(i, (await models.LoadAsync<OrderSummary>($"o{i}"))!.Total);
        }

        await host.StopAsync();
    }

    [Fact]
    public async Task two_projections_with_the_same_name_are_refused_on_sqlite_too()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            using var host = Host(b => b.AddProjection<OrderSummaries>().AddProjection(new OrderSummaries()));
            await host.StartAsync();
        });
        Assert.Contains("Two projections are named 'order-summaries'", error.Message);
    }

    [Fact]
    public async Task the_read_model_lives_in_builds_and_document_tables_of_the_same_file()
    {
        using var host = Host(b => b.AddProjection<OrderSummaries>());
        await host.StartAsync();
        var placed = await PlaceAsync(host, "1");
        await host.Services.GetRequiredService<ProjectionMonitor>().WaitForAsync("order-summaries", placed.LastPosition, Patience);

        var build = Assert.Single(Select(
            "SELECT id, version, position, serving FROM cairn_projection_builds WHERE projection = 'order-summaries'",
            r => (Id: r.GetInt64(0), Version: r.GetInt32(1), Position: r.GetInt64(2), Serving: r.GetInt64(3))));
        Assert.Equal((1, placed.LastPosition.Value, 1L), (build.Version, build.Position, build.Serving));
        var table = $"cairn_doc_{build.Id}_order_summary";
        var row = Assert.Single(Select(
            $"SELECT id, json_extract(data, '$.customer'), ix_customer, ix_total, ix_status, ix_priority FROM {table}",
            r => (r.GetString(0), r.GetString(1), r.GetString(2), r.GetDouble(3), r.GetString(4), r.IsDBNull(5))));
        Assert.Equal(("1", "c-1", "c-1", 10.0, "placed", true), row);
        Assert.Contains($"{table}:customer", Select($"SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = '{table}'", r => r.GetString(0)));

        // A rebuild writes a new build; the switch drops the old one with its tables.
        await host.Services.GetRequiredService<ProjectionMonitor>().RebuildAsync("order-summaries").WaitAsync(Patience);
        var rebuilt = Assert.Single(Select("SELECT id, serving FROM cairn_projection_builds WHERE projection = 'order-summaries'", r => (Id: r.GetInt64(0), Serving: r.GetInt64(1))));
        Assert.NotEqual(build.Id, rebuilt.Id);
        Assert.Equal(1, rebuilt.Serving);
        Assert.Equal([$"cairn_doc_{rebuilt.Id}_order_summary"], Select("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'cairn_doc_%'", r => r.GetString(0)));
        await host.StopAsync();
    }

    [Fact]
    public async Task a_projection_writes_its_own_table_with_sql_and_the_view_follows_the_serving_build()
    {
        using var host = Host(b => b.AddProjection<DailySales>());
        await host.StartAsync();
        await PlaceAsync(host, "1", total: 10m);
        await PlaceAsync(host, "2", total: 15m);
        var last = await PlaceAsync(host, "3", total: 0.5m);
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await monitor.WaitForAsync("daily-sales", last.LastPosition, Patience);

        // One row per day of commit (the three orders may straddle midnight).
        var sales = Select("SELECT day, orders, total FROM daily_sales ORDER BY day", r => (r.GetString(0), r.GetInt64(1), r.GetDouble(2)));
        Assert.Equal((3L, 25.5), Totals());
        var before = Assert.Single(Select("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'daily_sales__b%'", r => r.GetString(0)));
        Assert.Equal(["daily_sales"], Select("SELECT name FROM sqlite_schema WHERE type = 'view'", r => r.GetString(0)));

        // Rebuilt into a table of its own, then the view is pointed at it and the old table dropped, in one commit.
        await monitor.RebuildAsync("daily-sales").WaitAsync(Patience);
        var after = Assert.Single(Select("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'daily_sales__b%'", r => r.GetString(0)));
        Assert.NotEqual(before, after);
        Assert.Equal(sales, Select("SELECT day, orders, total FROM daily_sales ORDER BY day", r => (r.GetString(0), r.GetInt64(1), r.GetDouble(2))));
        Assert.Contains($"{after}_by_total", Select("SELECT name FROM sqlite_schema WHERE type = 'index'", r => r.GetString(0)));

        var more = await PlaceAsync(host, "4", total: 1m);
        await monitor.WaitForAsync("daily-sales", more.LastPosition, Patience);
        Assert.Equal((4L, 26.5), Totals());
        await host.StopAsync();

        (long Orders, double Total) Totals() => Select("SELECT sum(orders), sum(total) FROM daily_sales", r => (r.GetInt64(0), r.GetDouble(1))).Single();
    }

    [Fact]
    public async Task a_new_version_that_rebuilds_on_version_change_replaces_the_stored_read_model_on_start()
    {
        using (var host = Host(b => b.AddProjection(new OrderSummaries())))
        {
            await host.StartAsync();
            var placed = await PlaceAsync(host, "1", total: 1m);
            await host.Services.GetRequiredService<ProjectionMonitor>().WaitForAsync("order-summaries", placed.LastPosition, Patience);
            await host.StopAsync();
        }

        using (var host = Host(b => b.AddProjection(new OrderSummaries(indexPriority: false) { Version = 2, RebuildOnVersionChange = true, Bonus = 100m })))
        {
            await host.StartAsync();
            var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
            await Wait.UntilAsync(() => monitor.Statuses.Single().ServingVersion == 2, "version 2 serves");
            Assert.Equal(101m, (await host.Services.GetRequiredService<ReadModels>().LoadAsync<OrderSummary>("1"))!.Total);
            Assert.Equal([2], Select("SELECT version FROM cairn_projection_builds WHERE projection = 'order-summaries'", r => r.GetInt32(0)));
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task a_changed_shape_without_a_new_version_fails_on_start_and_keeps_serving_the_stored_read_model()
    {
        using (var host = Host(b => b.AddProjection(new OrderSummaries())))
        {
            await host.StartAsync();
            var placed = await PlaceAsync(host, "1");
            await host.Services.GetRequiredService<ProjectionMonitor>().WaitForAsync("order-summaries", placed.LastPosition, Patience);
            await host.StopAsync();
        }

        using (var host = Host(b => b.AddProjection(new OrderSummaries(indexPriority: false))))
        {
            await host.StartAsync();
            var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
            await Wait.UntilAsync(() => monitor.Statuses.Single().State == ProjectionState.Failed, "the projection refuses to start");
            Assert.Contains("Raise its Version", monitor.Statuses.Single().LastError);
            Assert.NotNull(await host.Services.GetRequiredService<ReadModels>().LoadAsync<OrderSummary>("1"));
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task dead_letters_are_kept_in_the_file()
    {
        var projection = new OrderSummaries { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 0, RetryDelay = TimeSpan.Zero, FailWhen = e => e.OrderId == "poison" };
        using (var host = Host(b => b.AddProjection(projection)))
        {
            await host.StartAsync();
            await PlaceAsync(host, "poison");
            var last = await PlaceAsync(host, "2");
            await host.Services.GetRequiredService<ProjectionMonitor>().WaitForAsync("order-summaries", last.LastPosition, Patience);
            await host.StopAsync();
        }

        var row = Assert.Single(Select(
            "SELECT projection, position, stream, event_type, attempts, json_extract(failure, '$.Type') FROM cairn_projection_dead_letters",
            r => (r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetString(3), r.GetInt32(4), r.GetString(5))));
        Assert.Equal(("order-summaries", 1L, "order-poison", "order.placed", 1, typeof(InvalidOperationException).FullName!), row);

        using (var host = Host(b => b.AddProjection(new OrderSummaries())))
        {
            await host.StartAsync();
            var deadLetter = Assert.Single(await host.Services.GetRequiredService<ProjectionMonitor>().Find("order-summaries")!.ListDeadLettersAsync());
            Assert.Equal(new GlobalPosition(1), deadLetter.Position);
            await host.StopAsync();
        }
    }

    // --- docs/projections.md: a table of its own ---
    public sealed class DailySales : Projection
    {
        public DailySales()
            : base("daily-sales")
        {
            SqlTable("daily_sales", """
                CREATE TABLE {table} (day TEXT PRIMARY KEY, orders INTEGER NOT NULL, total REAL NOT NULL);
                CREATE INDEX {table}_by_total ON {table} (total)
                """);
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute(
                $"""
                INSERT INTO {ctx.Sql.Table("daily_sales")} (day, orders, total) VALUES ($day, 1, $total)
                ON CONFLICT (day) DO UPDATE SET orders = orders + 1, total = total + excluded.total
                """,
                ("$day", ctx.Event.Time.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)),
                ("$total", (double)e.Total)));
        }
    }
    // --- end of the example ---
}
