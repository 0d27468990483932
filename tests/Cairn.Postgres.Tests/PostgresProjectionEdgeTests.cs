using Cairn.Cli;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// PostgreSQL projections beside one another: a switch leaves other projections' tables alone whatever their names, an
/// inline projection of a new version over the old read model goes on being applied, and the CLI's registry check of a
/// newer schema says so.
/// </summary>
public sealed class PostgresProjectionEdgeTests : OwnSchemaStoreTests
{
    private sealed record Item(string Id);

    /// <summary>A projection with one document collection of the given name.</summary>
    private sealed class WithCollection : Projection
    {
        public WithCollection(string name, string collection, int version = 1)
            : base(name)
        {
            Version = version;
            Document<Item>(i => i.Id, collection);
        }
    }

    /// <summary>
    /// A build's SQL tables are named <c>&lt;table&gt;__b&lt;build&gt;</c>; another projection's document table whose
    /// collection ends so (<c>doc_2_archive__b1</c>) is not build 1's, and survives its drop.
    /// </summary>
    [Fact]
    public async Task A_switch_of_one_projection_leaves_another_projections_document_table_alone()
    {
        await using var projections = new PostgresProjectionStore(Store);
        var first = (await projections.OpenAsync(new WithCollection("first", "things"), default)).Serving;

        // Another projection whose collection happens to end in __b<first's build> (letters, digits and _ are allowed).
        var other = new WithCollection("other", "archive__b" + first.Id);
        var otherBuild = (await projections.OpenAsync(other, default)).Serving;
        var otherTable = $"doc_{otherBuild.Id}_archive__b{first.Id}";
        Assert.True(await TableExistsAsync(otherTable));

        // The first projection is rebuilt (version 2) and switches: its old build is dropped.
        var next = new WithCollection("first", "things", version: 2);
        var shadow = await projections.StartShadowAsync(next, default);
        await projections.ApplyAsync(new ProjectionBatch(next.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { }) { GoLive = true }, default);

        Assert.True(await TableExistsAsync(otherTable), $"the other projection's serving table {otherTable} was dropped by the first projection's switch");
    }

    /// <summary>
    /// A build's SQL tables are those its shape declares: an application's table that merely ends like a build
    /// (<c>ledger__b1</c>) was taken for one of build 1's, of any projection, and dropped with it, data and all.
    /// </summary>
    [Fact]
    public async Task A_switch_leaves_an_application_table_whose_name_ends_like_the_old_build()
    {
        await using var projections = new PostgresProjectionStore(Store);
        var old = (await projections.OpenAsync(new WithCollection("docs", "items"), default)).Serving;
        var appTable = $"ledger__b{old.Id}";
        await PostgresServer.ExecuteAsync($"CREATE TABLE \"{Schema}\".\"{appTable}\" (entry int); INSERT INTO \"{Schema}\".\"{appTable}\" VALUES (42)");

        var next = new WithCollection("docs", "items", version: 2);
        var shadow = await projections.StartShadowAsync(next, default);
        await projections.ApplyAsync(new ProjectionBatch(next.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { }) { GoLive = true }, default);

        Assert.True(await TableExistsAsync(appTable), $"the application's table {appTable} was dropped by the switch");
        Assert.False(await TableExistsAsync($"doc_{old.Id}_items"));
    }

    /// <summary>
    /// A projection with documents only makes no view: beside an application's tables <c>ledger</c> and
    /// <c>ledger__b&lt;its build&gt;</c> it was refused (a view 'ledger' would go where a table is) and Faulted for ever,
    /// and without <c>ledger</c> it made a view of that name over the application's table.
    /// </summary>
    [Fact]
    public async Task A_projection_with_documents_only_opens_beside_application_tables_named_like_its_build()
    {
        await using var projections = new PostgresProjectionStore(Store);
        var before = (await projections.OpenAsync(new WithCollection("before", "items"), default)).Serving;
        await PostgresServer.ExecuteAsync(
            $"CREATE TABLE \"{Schema}\".ledger (entry int); CREATE TABLE \"{Schema}\".\"ledger__b{before.Id + 1}\" (entry int); CREATE TABLE \"{Schema}\".\"journal__b{before.Id + 1}\" (entry int)");

        var opened = await projections.OpenAsync(new WithCollection("docs", "items"), default);

        Assert.Equal(before.Id + 1, opened.Serving.Id);
        Assert.True(await TableExistsAsync("ledger"));
        Assert.False(await RelationExistsAsync("journal"), "a view 'journal' was made over the application's table");
    }

    private async Task<bool> RelationExistsAsync(string name)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = Schema });
        command.Parameters.Add(new NpgsqlParameter { Value = name });
        return (long)(await command.ExecuteScalarAsync())! == 1;
    }

    /// <summary>An inline projection storing a document per placed order, of the given version.</summary>
    private sealed class InlinePlaced : Projection
    {
        public InlinePlaced(int version)
            : base("inline-placed")
        {
            Version = version;
            Lifecycle = ProjectionLifecycle.Inline;
            Document<Item>(i => i.Id, "placed");
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new Item(e.OrderId)));
        }
    }

    /// <summary>
    /// docs/projections.md: without RebuildOnVersionChange, code of a new version "goes on over the old read model"
    /// until RebuildAsync. Appends skip an inline build of a newer version only (an old process during a rolling
    /// deployment); one of an older version is the new code's, which its own appends go on applying.
    /// </summary>
    [Fact]
    public async Task An_inline_projection_run_by_a_new_version_over_the_old_read_model_still_applies_appends()
    {
        await using var projections = new PostgresProjectionStore(Store);
        await using (var first = new ProjectionRunner(new InlinePlaced(1), Store, projections, Orders.Serializer()))
        {
            await first.StartAsync(default);
            var placed = (await Store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Placed("o1", "c-1", 1m)], default)).LastPosition;
            await first.WaitForPositionAsync(placed, TimeSpan.FromSeconds(30));
            Assert.Equal(1L, await PlacedDocumentsAsync());
        }

        // Version 2, same shape, no RebuildOnVersionChange: it runs over version 1's read model.
        await using var second = new ProjectionRunner(new InlinePlaced(2), Store, projections, Orders.Serializer());
        await second.StartAsync(default);
        await Wait.UntilAsync(() => second.Status.State == ProjectionState.Live, "the new version's runner is live");
        var next = (await Store.AppendToStreamAsync(Orders.Stream("o2"), ExpectedVersion.Any, [Orders.Placed("o2", "c-1", 1m)], default)).LastPosition;
        await second.WaitForPositionAsync(next, TimeSpan.FromSeconds(30));

        Assert.Equal(2L, await PlacedDocumentsAsync());
    }

    /// <summary>The documents of the inline projection's serving build.</summary>
    private async Task<long> PlacedDocumentsAsync()
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var find = new NpgsqlCommand($"SELECT id FROM \"{Schema}\".projection_builds WHERE projection = 'inline-placed' AND serving", connection);
        var build = (long)(await find.ExecuteScalarAsync())!;
        await using var count = new NpgsqlCommand($"SELECT count(*) FROM \"{Schema}\".\"doc_{build}_placed\"", connection);
        return (long)(await count.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// The registry check refuses a schema a newer Cairn wrote (a pipeline running the previous release's check after the
    /// next was deployed) saying so, not that reading it would migrate it: nothing would, and <c>storage migrate</c>
    /// refuses it.
    /// </summary>
    [Fact]
    public async Task The_registry_check_of_a_schema_a_newer_cairn_wrote_does_not_say_to_migrate_it()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = Schema, MigrateOnStart = false }));
        using var host = builder.Build();
        Assert.Equal(CairnCli.Success, await CairnCli.TryRunAsync(["storage", "migrate"], host.Services, new StringWriter(), new StringWriter()));
        await using (var connection = new NpgsqlConnection(PostgresServer.ConnectionString))
        {
            await connection.OpenAsync();
            await using var newer = new NpgsqlCommand($"INSERT INTO \"{Schema}\".migrations (version, description) VALUES ({PostgresSchema.CurrentVersion + 1}, 'a newer Cairn')", connection);
            await newer.ExecuteNonQueryAsync();
        }

        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(["schemas", "check", "--registry"], host.Services, new StringWriter(), error);

        Assert.True(code == CairnCli.Error, $"exit code {code}: {error}");
        Assert.DoesNotContain("would migrate it", error.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("storage migrate", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("written by a Cairn newer than this one", error.ToString(), StringComparison.Ordinal);
    }

    private async Task<bool> TableExistsAsync(string table)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = Schema });
        command.Parameters.Add(new NpgsqlParameter { Value = table });
        return (long)(await command.ExecuteScalarAsync())! == 1;
    }

    /// <summary>A projection whose one SQL table has the given DDL, writing a row per placed order.</summary>
    private sealed class WithDdl : Projection
    {
        public WithDdl(string name, string ddl)
            : base(name)
        {
            MaxRetries = 0;
            SqlTable("placed", ddl);
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("placed")} (id) VALUES ($id)", ("$id", e.OrderId)));
        }
    }

    private sealed record Ranked(string Id, long Rank);

    private sealed class RankedOrders : Projection
    {
        public RankedOrders()
            : base("ranked")
        {
            Document<Ranked>(r => r.Id, "ranked").Index("rank", r => r.Rank);
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new Ranked(e.OrderId, (long)e.Total)));
        }
    }

    // Queries order an index nulls first ascending (so nulls last descending), then by id; the index was PostgreSQL's
    // default, nulls last ascending, which no scan of it gives: every page of an ordered query read and sorted the whole
    // collection.
    [Fact]
    public async Task A_page_of_an_ordered_query_is_planned_on_its_index_not_a_sort_of_the_collection()
    {
        await using var projections = new PostgresProjectionStore(Store);
        var projection = new RankedOrders();
        GlobalPosition last = default;
        for (var batch = 0; batch < 10; batch++)
        {
            var events = Enumerable.Range(0, 500).Select(i => Orders.Placed($"o{batch}-{i}", "c", (batch * 500) + i)).ToArray();
            last = (await Store.AppendToStreamAsync(new StreamName($"order-batch{batch}"), ExpectedVersion.Any, events, default)).LastPosition;
        }

        await using (var runner = new ProjectionRunner(projection, Store, projections, Orders.Serializer()))
        {
            await runner.StartAsync(default);
            await runner.WaitForPositionAsync(last, Wait.Timeout);
        }

        var page = await new ReadModels(projections, Orders.Serializer(), [projection]).Query<Ranked>().OrderByDescending("rank").Take(10).ToListAsync();
        Assert.Equal(4_999L, page[0].Rank);

        await using var admin = new NpgsqlConnection(PostgresServer.ConnectionString);
        await admin.OpenAsync();
        await using var find = new NpgsqlCommand($"SELECT 'doc_' || id || '_ranked' FROM \"{Schema}\".projection_builds WHERE projection = 'ranked' AND serving", admin);
        var table = $"\"{Schema}\".\"{(string)(await find.ExecuteScalarAsync())!}\"";
        await using (var analyze = new NpgsqlCommand($"ANALYZE {table}", admin))
        {
            await analyze.ExecuteNonQueryAsync();
        }

        foreach (var order in new[] { "\"ix_rank\" DESC NULLS LAST, id", "\"ix_rank\" ASC NULLS FIRST, id" })
        {
            await using var explain = new NpgsqlCommand($"EXPLAIN SELECT id, data FROM {table} ORDER BY {order} LIMIT 10 OFFSET 0", admin);
            var plan = new List<string>();
            await using (var reader = await explain.ExecuteReaderAsync())
            {
                while (await reader.ReadAsync())
                {
                    plan.Add(reader.GetString(0));
                }
            }

            Assert.True(plan.Any(line => line.Contains("Index Scan", StringComparison.Ordinal)) && !plan.Any(line => line.Contains("Seq Scan", StringComparison.Ordinal)), $"ORDER BY {order}:\n{string.Join("\n", plan)}");
        }
    }

    // Five lease check intervals are the lease session's idle_session_timeout, a 32-bit count of milliseconds: from
    // about five days on, every try of the lease failed, and even a process alone on the schema stood by for ever.
    [Fact]
    public void A_lease_check_interval_over_an_hour_is_refused_by_name()
    {
        Assert.Equal("LeaseCheckInterval", Assert.Throws<ArgumentOutOfRangeException>(() => new PostgresProjectionStore(Store) { LeaseCheckInterval = TimeSpan.FromDays(6) }).ParamName);
        Assert.Equal("LeaseCheckInterval", Assert.Throws<ArgumentOutOfRangeException>(() => new PostgresProjectionStore(Store) { LeaseCheckInterval = TimeSpan.FromMinutes(61) }).ParamName);
    }

    /// <summary>
    /// DDL the database refuses fails the projection (<c>Failed</c>): no retry mends it. Only syntax errors (class 42)
    /// were taken so; PostgreSQL refuses <c>numeric(2000)</c> with 22023 and <c>serial[]</c> with 0A000, and the
    /// runner retried them for ever as store failures (<c>Faulted</c>).
    /// </summary>
    [Theory]
    [InlineData("CREATE TABLE {table} (id text PRIMARY KEY, total numeric(2000))")]
    [InlineData("CREATE TABLE {table} (id text PRIMARY KEY, ids serial[])")]
    public async Task Ddl_postgres_refuses_for_any_reason_of_its_own_fails_the_projection(string ddl)
    {
        await using var projections = new PostgresProjectionStore(Store);
        await using var runner = new ProjectionRunner(new WithDdl("bad-ddl", ddl), Store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.State is ProjectionState.Failed or ProjectionState.Faulted, "the projection's start is refused");

        Assert.Equal(ProjectionState.Failed, runner.Status.State);
        Assert.Contains(nameof(InvalidProjectionException), runner.Status.LastError);
    }

    private sealed record DroppedItem(string Id);

    /// <summary>
    /// Stores a document per placed order, loading it first. The first time it meets order <c>o2</c>, the connection
    /// its batch runs on is killed (as an administrator, a failover or a network cut would) before the load.
    /// </summary>
    private sealed class DroppedMidBatch : Projection
    {
        private int _killed;

        public DroppedMidBatch(ProjectionFailurePolicy onFailure, string connectionString, int kills = 2)
            : base("dropped-mid-batch")
        {
            MaxRetries = 0;
            OnFailure = onFailure;
            Document<DroppedItem>(i => i.Id);
            On<OrderPlaced>((ctx, e) =>
            {
                if (e.OrderId == "o2" && Interlocked.Increment(ref _killed) <= kills)
                {
                    var pid = ((NpgsqlConnection)ctx.Sql.Connection!).ProcessID;
                    using var admin = new NpgsqlConnection(connectionString);
                    admin.Open();
                    using var kill = new NpgsqlCommand($"SELECT pg_terminate_backend({pid}, 10000)", admin);
                    kill.ExecuteScalar();
                }

                ctx.Documents.Store(ctx.Documents.Load<DroppedItem>(e.OrderId) ?? new DroppedItem(e.OrderId));
            });
        }

        public bool Killed => Volatile.Read(ref _killed) > 1;
    }

    /// <summary>
    /// A failure of the store itself is not an event's fault: the runner shows Faulted and starts again from its stored
    /// position. A connection that broke while a handler read a document (twice, so the writer's own run on a new
    /// connection meets the second) was taken for the event's failure: under SkipAndDeadLetter a good event was
    /// skipped into a dead letter, its document never written.
    /// </summary>
    [Fact]
    public async Task A_connection_dropped_mid_batch_does_not_dead_letter_a_good_event()
    {
        var projection = new DroppedMidBatch(ProjectionFailurePolicy.SkipAndDeadLetter, PostgresServer.ConnectionString);
        await using var projections = new PostgresProjectionStore(Store);
        var last = await PlaceThreeOrdersAsync();

        await using var runner = new ProjectionRunner(projection, Store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(last, Wait.Timeout);

        Assert.True(projection.Killed);
        var readModels = new ReadModels(projections, Orders.Serializer(), [projection]);
        var deadLetters = await runner.ListDeadLettersAsync();
        Assert.True(deadLetters.Count == 0, "dead-lettered: " + string.Join("; ", deadLetters.Select(d => $"{d.Position} {d.Failure.Type}: {d.Failure.Message}")));
        Assert.NotNull(await readModels.LoadAsync<DroppedItem>("o2"));
    }

    /// <summary>Places orders o1, o2 and o3; the position of the last.</summary>
    private async Task<GlobalPosition> PlaceThreeOrdersAsync()
    {
        GlobalPosition last = default;
        foreach (var id in new[] { "o1", "o2", "o3" })
        {
            last = (await Store.AppendToStreamAsync(Orders.Stream(id), ExpectedVersion.Any, [Orders.Placed(id, "c", 1m)], default)).LastPosition;
        }

        return last;
    }

    /// <summary>The same under the default policy (Stop): the projection stopped for good, Failed, at a good event.</summary>
    [Fact]
    public async Task A_connection_dropped_mid_batch_does_not_stop_the_projection()
    {
        var projection = new DroppedMidBatch(ProjectionFailurePolicy.Stop, PostgresServer.ConnectionString);
        await using var projections = new PostgresProjectionStore(Store);
        var last = await PlaceThreeOrdersAsync();

        await using var runner = new ProjectionRunner(projection, Store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed || runner.Status.Position >= last, "the projection reaches the last event or stops");

        Assert.True(projection.Killed);
        Assert.True(last == runner.Status.Position, $"{runner.Status.State} at {runner.Status.Position}: {runner.Status.LastError}");
        Assert.NotEqual(ProjectionState.Failed, runner.Status.State);
    }

    /// <summary>
    /// Counts orders by id in a table of its own, and takes an order placed twice as already counted: the insert's
    /// unique violation is caught, as a handler written against SQLite (where a failed statement undoes only itself) would.
    /// </summary>
    private sealed class CatchesItsSqlFailure : Projection
    {
        public CatchesItsSqlFailure(ProjectionFailurePolicy onFailure, bool direct)
            : base("catches-its-sql-failure")
        {
            MaxRetries = 1;
            RetryDelay = TimeSpan.FromMilliseconds(10);
            OnFailure = onFailure;
            SqlTable("placed", "CREATE TABLE {table} (id text PRIMARY KEY)");
            On<OrderPlaced>((ctx, e) =>
            {
                try
                {
                    if (direct)
                    {
                        using var insert = new NpgsqlCommand($"INSERT INTO {ctx.Sql.Table("placed")} (id) VALUES ($1)", (NpgsqlConnection)ctx.Sql.Connection);
                        insert.Parameters.Add(new NpgsqlParameter { Value = e.OrderId });
                        insert.ExecuteNonQuery();
                    }
                    else
                    {
                        ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("placed")} (id) VALUES ($id)", ("$id", e.OrderId));
                    }
                }
                catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
                {
                    // Counted already.
                }
            });
        }
    }

    /// <summary>
    /// On PostgreSQL a failed statement aborts the whole transaction, so a handler that catches one leaves its batch
    /// unable to write anything more: every later statement and the commit failed with "current transaction is aborted",
    /// blamed on no event (the projection retried the batch for ever) or on an innocent one. The event whose handler
    /// caught the failure is the one that fails, with a reason that says why, and meets the failure policy.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_handler_that_catches_a_failed_statement_fails_its_own_event_naming_why(bool direct)
    {
        var projection = new CatchesItsSqlFailure(ProjectionFailurePolicy.SkipAndDeadLetter, direct);
        await using var projections = new PostgresProjectionStore(Store);
        var positions = new List<GlobalPosition>();
        foreach (var id in new[] { "o1", "o2", "o1", "o3" })
        {
            positions.Add((await Store.AppendToStreamAsync(Orders.Stream(id), ExpectedVersion.Any, [Orders.Placed(id, "c", 1m)], default)).LastPosition);
        }

        var last = positions[^1];

        await using var runner = new ProjectionRunner(projection, Store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.Position >= last || runner.Status.State == ProjectionState.Failed, "the projection reaches the last event or stops");

        Assert.True(last == runner.Status.Position, $"{runner.Status.State} at {runner.Status.Position}: {runner.Status.LastError}");
        var deadLetter = Assert.Single(await runner.ListDeadLettersAsync());
        Assert.Equal(positions[2], deadLetter.Position);
        Assert.Contains("aborts", deadLetter.Failure.Message, StringComparison.Ordinal);
        if (!direct)
        {
            // Ran through ctx.Sql.Execute, the statement that failed is named.
            Assert.Contains("23505", deadLetter.Failure.Message, StringComparison.Ordinal);
        }

        // The batch around it was written: o1, o2 and o3 are each counted once.
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand($"SELECT string_agg(id, ',' ORDER BY id) FROM \"{Schema}\".placed", connection);
        Assert.Equal("o1,o2,o3", await count.ExecuteScalarAsync());
    }
}
