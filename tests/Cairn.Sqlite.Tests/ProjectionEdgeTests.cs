using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Sqlite.Tests;

/// <summary>A document whose indexed ratio is computed, so it can be NaN (0 / 0) while its JSON holds plain numbers.</summary>
public sealed record EdgeScore(string Id, double Paid, double Total);

/// <summary>
/// Projections on SQLite at their edges: two runners skipping one poison event, values and queries no index takes,
/// a projection's own DDL refused, inline projections across a rebuild in another process or a restart.
/// </summary>
public sealed class ProjectionEdgeTests : IDisposable
{
    private static readonly TimeSpan Patience = Wait.Timeout;
    private readonly TempDatabase _database = new();
    private readonly SqliteEventStore _store;
    private readonly SqliteProjectionStore _projections;

    public ProjectionEdgeTests()
    {
        _store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        _projections = new SqliteProjectionStore(_store);
    }

    public void Dispose()
    {
        _store.Dispose();
        _database.Dispose();
    }

    private async Task<GlobalPosition> AppendAsync(string orderId, EventData data) =>
        (await _store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [data], default)).LastPosition;

    /// <summary>The real store, holding one chosen batch until the test releases it (a slow writer, made deterministic).</summary>
    private sealed class HoldingStore(IProjectionStore inner, Func<ProjectionBatch, bool> hold) : DelegatingProjectionStore(inner)
    {
        private int _held;

        public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
        {
            if (hold(batch) && Interlocked.Exchange(ref _held, 1) == 0)
            {
                Holding.TrySetResult();
                await Release.Task.WaitAsync(cancellationToken);
            }

            return await Inner.ApplyAsync(batch, cancellationToken);
        }
    }

    // Two runners of one projection skip the same poison event: the one whose commit of the events before it finds the
    // other there first goes on from where that one left it, rather than recording the dead letter from the poison's
    // position, taking the build back, and applying the events after it a second time.
    [Fact]
    public async Task Two_runners_skipping_the_same_poison_event_apply_the_events_after_it_once()
    {
        await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await AppendAsync("poison", Orders.Placed("poison", "bob", 1m));
        var last = await AppendAsync("o1", Orders.Line("o1", 5m));

        // Runner B holds the commit of the events before the poison (its give-up's first step) until A is done.
        var holding = new HoldingStore(_projections, batch => batch.Events.Count == 1 && batch.Events[0].Position == new GlobalPosition(1));
        var b = new OrderSummaries
        {
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
            MaxRetries = 0,
            FailWhen = e => e.OrderId == "poison",
        };
        await using var runnerB = new ProjectionRunner(b, _store, holding, Orders.Serializer());
        await runnerB.StartAsync(default);
        await holding.Holding.Task.Bounded();

        var a = new OrderSummaries
        {
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
            MaxRetries = 0,
            FailWhen = e => e.OrderId == "poison",
        };
        await using (var runnerA = new ProjectionRunner(a, _store, _projections, Orders.Serializer()))
        {
            await runnerA.StartAsync(default);
            await runnerA.WaitForPositionAsync(last, Patience);
        }

        var models = new ReadModels(_projections, Orders.Serializer(), [a]);
        Assert.Equal(1, (await models.LoadAsync<OrderSummary>("o1"))!.Lines);

        // B goes on; a later event shows when it has finished with the batch it held.
        holding.Release.TrySetResult();
        var later = await AppendAsync("o2", Orders.Placed("o2", "carol", 1m));
        await runnerB.WaitForPositionAsync(later, Patience);

        var o1 = (await models.LoadAsync<OrderSummary>("o1"))!;
        Assert.Equal((1, 15m), (o1.Lines, o1.Total));
    }

    /// <summary>Scores indexed by a computed ratio.</summary>
    private sealed class Scores : Projection
    {
        public Scores()
            : base("edge-scores")
        {
            Document<EdgeScore>(s => s.Id).Index("ratio", s => s.Paid / s.Total);
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new EdgeScore(e.OrderId, 0, (double)e.Total)));
        }
    }

    // NaN in a real index (a ratio of 0 / 0) is refused, failing its event, on every backend: SQLite would store it as
    // null, where it matched a query for null, and memory as a value that equals nothing.
    [Fact]
    public async Task A_NaN_index_value_is_refused()
    {
        var last = await AppendAsync("free", Orders.Placed("free", "alice", 0m));
        var projection = new Scores();
        await using var runner = new ProjectionRunner(projection, _store, _projections, Orders.Serializer());
        await runner.StartAsync(default);

        var stopped = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => runner.WaitForPositionAsync(last, Patience));
        Assert.Contains("NaN cannot be indexed", stopped.Message, StringComparison.Ordinal);
    }

    /// <summary>Orders indexed by customer; version 2 indexes their status too and rebuilds on start.</summary>
    private sealed class IndexedOrders : Projection
    {
        public IndexedOrders(int version)
            : base("edge-indexed-orders")
        {
            Version = version;
            RebuildOnVersionChange = true;
            var documents = Document<OrderSummary>(o => o.Id).Index("customer", o => o.Customer);
            if (version >= 2)
            {
                documents.Index("status", o => o.Status);
            }

            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0)));
        }
    }

    // During the rebuild of a version that adds an index, a query naming it is refused with a typed error saying so,
    // not a raw "no such column" from SQLite.
    [Fact]
    public async Task A_query_on_an_index_a_new_version_adds_is_refused_until_its_build_serves()
    {
        var last = await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await using (var v1 = new ProjectionRunner(new IndexedOrders(version: 1), _store, _projections, Orders.Serializer()))
        {
            await v1.StartAsync(default);
            await v1.WaitForPositionAsync(last, Patience);
        }

        var v2 = new IndexedOrders(version: 2);
        await _projections.StartShadowAsync(v2, default);
        var models = new ReadModels(_projections, Orders.Serializer(), [v2]);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("o1"));

        await Assert.ThrowsAsync<InvalidDocumentQueryException>(() => models.Query<OrderSummary>().Where("status", "placed").CountAsync());
        Assert.Equal(1, await models.Query<OrderSummary>().Where("customer", "alice").CountAsync());
    }

    /// <summary>A projection whose table DDL has a typo.</summary>
    private sealed class BrokenDdl : Projection
    {
        public BrokenDdl()
            : base("edge-broken-ddl")
        {
            SqlTable("edge_daily", "CREATE TABLE {table} (day TEXT PRIMARY KEY, total REAL NOT NULL,)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("edge_daily")} (day, total) VALUES ('d', 1)"));
        }
    }

    // A projection whose own DDL SQLite refuses (a syntax error) cannot run whatever the store does: it fails (State
    // Failed), as a taken table name does, rather than being retried for ever as a fault of the store.
    [Fact]
    public async Task A_syntax_error_in_a_tables_ddl_fails_the_projection()
    {
        await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await using var runner = new ProjectionRunner(new BrokenDdl(), _store, _projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.State is ProjectionState.Faulted or ProjectionState.Failed, "the DDL is refused");

        Assert.Equal(ProjectionState.Failed, runner.Status.State);
    }

    // An inline projection rebuilt in one process: another process's appends follow the build that serves now (of the
    // same version and shape) rather than replaying the log into the dropped build's tables and failing.
    [Fact]
    public async Task After_an_inline_projection_is_rebuilt_in_one_process_another_processs_appends_apply_it_to_the_new_build()
    {
        using var otherStore = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var otherProjections = new SqliteProjectionStore(otherStore);
        await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await AppendAsync("o2", Orders.Placed("o2", "bob", 20m));

        var here = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using var runnerHere = new ProjectionRunner(here, _store, _projections, Orders.Serializer());
        await runnerHere.StartAsync(default);
        await Wait.UntilAsync(() => runnerHere.Status.State == ProjectionState.Live, "the inline projection is live here");
        var there = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using var runnerThere = new ProjectionRunner(there, otherStore, otherProjections, Orders.Serializer());
        await runnerThere.StartAsync(default);
        await Wait.UntilAsync(() => runnerThere.Status.State == ProjectionState.Live, "the inline projection is live in the other process");
        await otherStore.AppendToStreamAsync(Orders.Stream("o3"), ExpectedVersion.Any, [Orders.Placed("o3", "carol", 30m)], default);

        await runnerHere.RebuildAsync().Bounded();

        await otherStore.AppendToStreamAsync(Orders.Stream("o4"), ExpectedVersion.Any, [Orders.Placed("o4", "dave", 40m)], default);
        var models = new ReadModels(_projections, Orders.Serializer(), [here]);
        Assert.Equal(4, await models.Query<OrderSummary>().CountAsync());
    }

    // Another process rebuilt an inline projection as version 2 and switched: this process's appends (version 1) stop
    // applying it, and its runner, which applies nothing while appends do, was never told: it stayed Live at the head,
    // and a read-your-writes wait returned at once for an event no read model held. It starts again on what serves,
    // which is newer code's (ProjectionVersionNewerException), and the wait fails.
    [Fact]
    public async Task An_inline_runner_whose_appends_stop_applying_it_after_another_version_switches_starts_again()
    {
        using var otherStore = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var otherProjections = new SqliteProjectionStore(otherStore);
        await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        var here = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using var runnerHere = new ProjectionRunner(here, _store, _projections, Orders.Serializer());
        await runnerHere.StartAsync(default);
        await Wait.UntilAsync(() => runnerHere.Status.State == ProjectionState.Live, "version 1 is live here");

        var there = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline, Version = 2, RebuildOnVersionChange = true };
        await using var runnerThere = new ProjectionRunner(there, otherStore, otherProjections, Orders.Serializer());
        await runnerThere.StartAsync(default);
        await Wait.UntilAsync(() => runnerThere.Status is { State: ProjectionState.Live, ServingVersion: 2 }, "version 2 switched in the other process");

        var placed = await AppendAsync("o2", Orders.Placed("o2", "bob", 20m));

        var ended = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => runnerHere.WaitForPositionAsync(placed, Patience));
        Assert.Contains(nameof(ProjectionVersionNewerException), ended.Message, StringComparison.Ordinal);
        Assert.Equal(ProjectionState.Failed, runnerHere.Status.State);
        Assert.Contains(nameof(ProjectionVersionNewerException), runnerHere.Status.LastError, StringComparison.Ordinal);
    }

    /// <summary>Order totals: in a SQL table in versions 1 and 3, in documents in version 2.</summary>
    private sealed class Totals : Projection
    {
        public Totals(int version)
            : base("edge-totals")
        {
            Version = version;
            RebuildOnVersionChange = true;
            var withTable = version != 2;
            if (withTable)
            {
                SqlTable("edge_totals", "CREATE TABLE {table} (id TEXT PRIMARY KEY, total REAL NOT NULL)");
            }
            else
            {
                Document<OrderSummary>(o => o.Id);
            }

            On<OrderPlaced>((ctx, e) =>
            {
                if (withTable)
                {
                    ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("edge_totals")} (id, total) VALUES ($id, $total)", ("$id", e.OrderId), ("$total", (double)e.Total));
                }
                else
                {
                    ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0));
                }
            });
        }
    }

    // A version that stops writing a SQL table switches and drops the old build's table and its view with it, so a later
    // version may declare the table again (a leftover view of nothing was taken for another projection's, and refused
    // it on start).
    [Fact]
    public async Task A_version_that_drops_a_sql_table_drops_its_view_and_a_later_version_may_declare_it_again()
    {
        var last = await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await using (var v1 = new ProjectionRunner(new Totals(1), _store, _projections, Orders.Serializer()))
        {
            await v1.StartAsync(default);
            await v1.WaitForPositionAsync(last, Patience);
        }

        await using (var v2 = new ProjectionRunner(new Totals(2), _store, _projections, Orders.Serializer()))
        {
            await v2.StartAsync(default);
            await Wait.UntilAsync(() => v2.Status is { ServingVersion: 2, Rebuild: null }, "version 2 serves");
        }

        await using var v3 = new ProjectionRunner(new Totals(3), _store, _projections, Orders.Serializer());
        await v3.StartAsync(default);
        await Wait.UntilAsync(() => v3.Status is { ServingVersion: 3, Rebuild: null } or { State: ProjectionState.Failed }, "version 3 serves or fails");
        Assert.True(v3.Status.ServingVersion == 3, $"Version 3 did not switch: {v3.Status.State}, {v3.Status.LastError}");
    }

    /// <summary>The real store; it refuses the switches and holds the batches the test picks (a busy writer, made deterministic).</summary>
    private sealed class SteeredStore(IProjectionStore inner, Func<ProjectionBatch, bool> refuse, Func<ProjectionBatch, bool> hold) : DelegatingProjectionStore(inner)
    {
        private int _refusals;

        public int Refusals => Volatile.Read(ref _refusals);

        public override async Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
        {
            if (refuse(batch))
            {
                Interlocked.Increment(ref _refusals);
                throw new ProjectionSwitchRefusedException(batch.Projection, batch.Build, "held back by the test");
            }

            if (hold(batch))
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }

            return await Inner.ApplyAsync(batch, cancellationToken);
        }
    }

    // An inline projection restarted during its rebuild (a shadow of its own version left to take up): the serving
    // build goes live in appends while the shadow fills, so a query right after an append sees it.
    [Fact]
    public async Task An_inline_projection_restarted_during_its_rebuild_is_applied_by_appends()
    {
        await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using (var first = new ProjectionRunner(projection, _store, _projections, Orders.Serializer()))
        {
            await first.StartAsync(default);
            await Wait.UntilAsync(() => first.Status.State == ProjectionState.Live, "the inline projection is live");
        }

        // The process stopped during a rebuild: its shadow is there to be taken up.
        var serving = (await _projections.OpenAsync(projection, default)).Serving.Id;
        var shadow = (await _projections.StartShadowAsync(projection, default)).Id;
        var clock = new ManualTimeProvider();
        var steered = new SteeredStore(
            _projections,
            refuse: batch => batch.GoLive && batch.Build == shadow,
            hold: batch => batch.Build == serving && !batch.GoLive && batch.Events.Count > 0);
        await using var runner = new ProjectionRunner(projection, _store, steered, Orders.Serializer(), timeProvider: clock);
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => steered.Refusals >= 1, "the rebuild reaches its switch");

        // Advanced at each look: the runner arms its pause after the refusal, which the test may see first.
        await Wait.UntilAsync(
            () =>
            {
                clock.Advance(TimeSpan.FromMinutes(1));
                return steered.Refusals >= 2;
            },
            "the runner has been round its loop again");

        await AppendAsync("o2", Orders.Placed("o2", "bob", 20m));
        var models = new ReadModels(_projections, Orders.Serializer(), [projection]);
        Assert.True(await models.LoadAsync<OrderSummary>("o2") is not null, $"The append is not in the inline read model; the runner is {runner.Status.State}.");
    }

    /// <summary>The real store, refusing switches while <see cref="Refuse"/> is set, so a rebuild stays under way.</summary>
    private sealed class RefusingSwitches(IProjectionStore inner) : DelegatingProjectionStore(inner)
    {
        public volatile bool Refuse = true;

        public override Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken) =>
            batch.GoLive && Refuse
                ? Task.FromException<ProjectionBatchResult>(new ProjectionSwitchRefusedException(batch.Projection, batch.Build, "held for the test"))
                : Inner.ApplyAsync(batch, cancellationToken);
    }

    /// <summary>Orders indexed by customer and total; version 2 adds a "status" index before them.</summary>
    private sealed class StatusIndexedOrders : Projection
    {
        public StatusIndexedOrders(int version)
            : base("edge-status-indexed-orders")
        {
            Version = version;
            RebuildOnVersionChange = true;
            var documents = Document<OrderSummary>(o => o.Id);
            if (version >= 2)
            {
                documents.Index("status", o => o.Status);
            }

            documents.Index("customer", o => o.Customer).Index("total", o => o.Total);
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0)));
        }
    }

    // Version 2 adds an index and rebuilds while version 1's build serves. An event appended during the rebuild is not
    // written into the old build by the new code (whose index column it lacks: the projection stopped on it): the old
    // build serves as it is, the shadow takes the event, and the switch brings it in.
    [Fact]
    public async Task An_event_appended_during_a_rebuild_that_adds_an_index_reaches_the_read_model_at_the_switch()
    {
        await AppendAsync("o1", Orders.Placed("o1", "alice", 120m));
        await using (var v1 = new ProjectionRunner(new StatusIndexedOrders(1), _store, _projections, Orders.Serializer()))
        {
            await v1.StartAsync(default);
            await v1.WaitForPositionAsync(await _store.GetHeadPositionAsync(default), Patience);
        }

        var v2 = new StatusIndexedOrders(2) { MaxRetries = 0 };
        var refusing = new RefusingSwitches(_projections);
        var clock = new ManualTimeProvider();
        await using var runner = new ProjectionRunner(v2, _store, refusing, Orders.Serializer(), timeProvider: clock);
        await runner.StartAsync(default);
        var placed = await AppendAsync("o2", Orders.Placed("o2", "bob", 30m));
        await Wait.UntilAsync(() => runner.Status.Rebuild is { } rebuild && rebuild.Position >= placed, "the shadow takes the event appended during the rebuild");
        Assert.NotEqual(ProjectionState.Failed, runner.Status.State);
        var models = new ReadModels(_projections, Orders.Serializer(), [v2]);
        Assert.Equal(1, await models.Query<OrderSummary>().Where("customer", "alice").CountAsync());

        // Advanced at each look: the runner may arm its pause after its last refused switch only now.
        refusing.Refuse = false;
        await Wait.UntilAsync(
            () =>
            {
                clock.Advance(TimeSpan.FromMinutes(1));
                return runner.Status.ServingVersion == 2;
            },
            "the switch is tried again and goes through");
        await runner.WaitForPositionAsync(placed, Patience);

        Assert.Equal(2, runner.Status.ServingVersion);
        Assert.Equal(1, await models.Query<OrderSummary>().Where("customer", "bob").CountAsync());
        Assert.Equal(2, await models.Query<OrderSummary>().Where("status", "placed").CountAsync());
    }

    private sealed record Item(string Id);

    /// <summary>A projection with one document collection of the given name, storing an item per placed order.</summary>
    private sealed class WithCollection : Projection
    {
        public WithCollection(string name, string collection, int version = 1)
            : base(name)
        {
            Version = version;
            Document<Item>(i => i.Id, collection);
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new Item(e.OrderId)));
        }
    }

    // Another projection's collection may end like a build ("archive__b1"): a switch of the first projection drops its
    // own old build's tables, found by the shapes the builds store, not by a name pattern that took the other's.
    [Fact]
    public async Task A_switch_leaves_another_projections_document_table_whose_name_ends_like_a_build()
    {
        var first = (await _projections.OpenAsync(new WithCollection("edge-first", "things"), default)).Serving;
        var other = new WithCollection("edge-other", "archive__b" + first.Id);
        var placed = await AppendAsync("o1", Orders.Placed("o1", "alice", 1m));
        await using (var runner = new ProjectionRunner(other, _store, _projections, Orders.Serializer()))
        {
            await runner.StartAsync(default);
            await runner.WaitForPositionAsync(placed, Patience);
        }

        var models = new ReadModels(_projections, Orders.Serializer(), [other]);
        Assert.NotNull(await models.LoadAsync<Item>("o1"));

        var next = new WithCollection("edge-first", "things", version: 2);
        var shadow = await _projections.StartShadowAsync(next, default);
        await _projections.ApplyAsync(new ProjectionBatch(next.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { }) { GoLive = true }, default);

        Assert.NotNull(await models.LoadAsync<Item>("o1"));
    }
    private static bool Settled(ProjectionRunner runner) =>
        runner.Status.State is ProjectionState.Live or ProjectionState.Failed or ProjectionState.Faulted;

    /// <summary>Counts placed orders per customer in its own SQL table, under a table name chosen by the test.</summary>
    private sealed class CustomerCounts : Projection
    {
        public CustomerCounts(string name, string table, string category)
            : base(name)
        {
            Filter = EventFilter.ForCategory(category);
            SqlTable(table, "CREATE TABLE {table} (customer TEXT PRIMARY KEY, orders INTEGER NOT NULL)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute(
                $"INSERT INTO {ctx.Sql.Table(table)} (customer, orders) VALUES ($c, 1) ON CONFLICT (customer) DO UPDATE SET orders = orders + 1",
                ("$c", e.Customer)));
        }
    }

    // SQLite's names ignore case, and the check for a taken view name did not: a second projection declaring
    // "Customer_Counts" passed it, and its switch dropped the first projection's view "customer_counts" and pointed the
    // name at its own (empty) table. It fails on start, and the first projection's view keeps its rows.
    [Fact]
    public async Task A_sql_table_named_like_another_projections_view_but_for_case_is_refused()
    {
        var first = await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await using var one = new ProjectionRunner(new CustomerCounts("counts-one", "customer_counts", "order"), _store, _projections, Orders.Serializer());
        await one.StartAsync(default);
        await one.WaitForPositionAsync(first, Patience);

        await using var two = new ProjectionRunner(new CustomerCounts("counts-two", "Customer_Counts", "nothing"), _store, _projections, Orders.Serializer());
        await two.StartAsync(default);
        await Wait.UntilAsync(() => Settled(two), "the second projection settles");

        Assert.Equal(ProjectionState.Failed, two.Status.State);
        Assert.Contains("'Customer_Counts'", two.Status.LastError, StringComparison.Ordinal);
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString);
        await connection.OpenAsync();
        await using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM customer_counts";
        Assert.Equal(1L, (long)(await count.ExecuteScalarAsync())!);
    }

    /// <summary>A collection "item" indexed by "customer", and a collection "item_by_customer".</summary>
    private sealed class ItemsAndItemsByCustomer : Projection
    {
        public ItemsAndItemsByCustomer()
            : base("items-and-items-by-customer")
        {
            Document<OrderSummary>(o => o.Id, "item").Index("customer", o => o.Customer);
            Document<EdgeScore>(o => o.Id, "item_by_customer");
            On<OrderPlaced>((ctx, e) =>
            {
                ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0));
                ctx.Documents.Store(new EdgeScore(e.OrderId, 0, (double)e.Total));
            });
        }
    }

    // A collection's index was named "<its table>_by_<index>", which is the table of a collection named
    // "<collection>_by_<index>": both valid names, so the build's DDL failed ("there is already an index named ...") and
    // the runner stayed Faulted, retrying for ever. The index's name now holds a colon, which no collection name does.
    [Fact]
    public async Task A_collection_named_like_another_collections_index_is_created_and_filled()
    {
        var first = await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        var projection = new ItemsAndItemsByCustomer();
        await using var runner = new ProjectionRunner(projection, _store, _projections, Orders.Serializer());
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(first, Patience);

        // A runner reaches the head as it catches up, which releases the wait; it goes live just after (a failure, which
        // is what this test guards against, still shows in the assertion below).
        await Wait.UntilAsync(() => runner.Status.State is ProjectionState.Live or ProjectionState.Failed or ProjectionState.Faulted, "the projection goes live or fails");
        var models = new ReadModels(_projections, Orders.Serializer(), [projection]);
        Assert.Equal(ProjectionState.Live, runner.Status.State);
        Assert.Equal("alice", Assert.Single(await models.Query<OrderSummary>().Where("customer", "alice").ToListAsync()).Customer);
        Assert.NotNull(await models.LoadAsync<EdgeScore>("o1"));
    }
    // A build's SQL tables are those its shape declares: an application's table in the file that merely ends like a
    // build ("ledger__b1") was taken for one of build 1's, of any projection, and dropped at its switch, data and all.
    [Fact]
    public async Task A_switch_leaves_an_application_table_whose_name_ends_like_the_old_build()
    {
        var first = await AppendAsync("o1", Orders.Placed("o1", "alice", 10m));
        await using (var one = new ProjectionRunner(new CustomerCounts("counts", "customer_counts", "order"), _store, _projections, Orders.Serializer()))
        {
            await one.StartAsync(default);
            await one.WaitForPositionAsync(first, Patience);
        }

        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString);
        await connection.OpenAsync();
        long build;
        await using (var create = connection.CreateCommand())
        {
            create.CommandText = "SELECT id FROM cairn_projection_builds WHERE projection = 'counts'";
            build = (long)(await create.ExecuteScalarAsync())!;
            create.CommandText = $"CREATE TABLE ledger__b{build} (entry INTEGER); INSERT INTO ledger__b{build} VALUES (42)";
            await create.ExecuteNonQueryAsync();
        }

        await using var two = new ProjectionRunner(new CustomerCounts("counts", "customer_counts", "order") { Version = 2, RebuildOnVersionChange = true }, _store, _projections, Orders.Serializer());
        await two.StartAsync(default);
        await Wait.UntilAsync(() => two.Status is { State: ProjectionState.Live, ServingVersion: 2 }, "version 2 serves");

        await using var count = connection.CreateCommand();
        count.CommandText = $"SELECT (SELECT count(*) FROM ledger__b{build}) * 10 + (SELECT count(*) FROM sqlite_schema WHERE name = 'customer_counts__b{build}')";
        Assert.Equal(10L, (long)(await count.ExecuteScalarAsync())!);
    }
}
