using System.Data.Common;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite.Tests;

/// <summary>A projection whose handler of <see cref="OrderPlaced"/> throws an OperationCanceledException for one order.</summary>
public sealed class CancellingOrders : Projection
{
    public CancellingOrders(string name = "cancelling-orders")
        : base(name)
    {
        Document<OrderSummary>(o => o.Id).Index("customer", o => o.Customer);
        On<OrderPlaced>((ctx, e) =>
        {
            if (e.OrderId == "poison")
            {
                // A handler's own failure that happens to be a cancellation (a timed-out call, a cancelled token of its own).
                throw new OperationCanceledException($"Handling of order {e.OrderId} was cancelled.");
            }

            ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0));
        });
    }
}

/// <summary>Orders in a SQL table of its own; version 2 adds a column for the total, which its handler writes.</summary>
public sealed class OrderRows : Projection
{
    public OrderRows(int version)
        : base("edge-order-rows")
    {
        Version = version;
        RebuildOnVersionChange = true;
        BatchSize = 1;
        CatchUpBatchSize = 1;
        MaxRetries = 0;
        RetryDelay = TimeSpan.Zero;
        if (version == 1)
        {
            SqlTable("priced_orders", "CREATE TABLE {table} (id TEXT PRIMARY KEY, customer TEXT NOT NULL)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute(
                $"INSERT INTO {ctx.Sql.Table("priced_orders")} (id, customer) VALUES ($id, $customer)",
                ("$id", e.OrderId),
                ("$customer", e.Customer)));
        }
        else
        {
            SqlTable("priced_orders", "CREATE TABLE {table} (id TEXT PRIMARY KEY, customer TEXT NOT NULL, total REAL NOT NULL)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute(
                $"INSERT INTO {ctx.Sql.Table("priced_orders")} (id, customer, total) VALUES ($id, $customer, $total)",
                ("$id", e.OrderId),
                ("$customer", e.Customer),
                ("$total", (double)e.Total)));
        }
    }
}

/// <summary>Projections that fail at an event, whose handler cancels, whose disk is full, or whose new version changes its SQL table.</summary>
public sealed class ProjectionFailureEdgeTests : IDisposable
{
    private readonly TempDatabase _database = new();
    private readonly SqliteEventStore _store;
    private readonly SqliteProjectionStore _projections;

    public ProjectionFailureEdgeTests()
    {
        _store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        _projections = new SqliteProjectionStore(_store);
    }

    public void Dispose()
    {
        _store.Dispose();
        _database.Dispose();
    }

    private static async Task<GlobalPosition> AppendAsync(IEventStore store, string orderId, EventData data) =>
        (await store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [data], default)).LastPosition;

    // "A projection stopped by Stop is still reported, with its lag growing: alert on cairn.projection.lag"
    // (docs/projections.md): its head, and so its lag, follow the events appended after the stop.
    [Fact]
    public async Task The_lag_of_a_projection_stopped_at_an_event_grows_with_the_events_appended_after_the_stop()
    {
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        await AppendAsync(store, "o1", Orders.Placed("o1", "alice", 10m));
        await AppendAsync(store, "poison", Orders.Placed("poison", "bob", 1m));
        var projection = new OrderSummaries("edge-lag") { MaxRetries = 0, RetryDelay = TimeSpan.Zero, FailWhen = e => e.OrderId == "poison" };
        await using var runner = new ProjectionRunner(projection, store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops at the poison event");
        Assert.Equal(1, runner.Status.LagEvents);

        await AppendAsync(store, "o3", Orders.Placed("o3", "carol", 3m));
        var last = await AppendAsync(store, "o4", Orders.Placed("o4", "dave", 4m));

        // Three events (the poison one and the two appended since) are not applied.
        await Wait.UntilAsync(() => runner.Status.LagEvents == 3, "the lag shows the events appended after the stop");
        Assert.Equal(ProjectionState.Failed, runner.Status.State);
    }

    // "An event fails when its handler throws ... then OnFailure decides" (docs/projections.md), also when what it throws
    // is an OperationCanceledException of its own: taken for the runner's stop or a store failure, the runner would
    // start again from the same position for ever, and SkipAndDeadLetter never skip the event.
    [Fact]
    public async Task A_handler_throwing_OperationCanceledException_meets_the_failure_policy()
    {
        await AppendAsync(_store, "o1", Orders.Placed("o1", "alice", 10m));
        var poison = await AppendAsync(_store, "poison", Orders.Placed("poison", "bob", 1m));
        var last = await AppendAsync(_store, "o3", Orders.Placed("o3", "carol", 3m));
        var projection = new CancellingOrders { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        await using var runner = new ProjectionRunner(projection, _store, _projections, Orders.Serializer());
        await runner.StartAsync(default);

        // Today: Faulted at position 0 ("OperationCanceledException: Handling of order poison was cancelled."), restarting
        // every few seconds, with no failure counted and o1 not applied either.
        await Wait.UntilAsync(() => runner.Status.Position >= last, "the projection passes the poison event");
        var deadLetters = await runner.ListDeadLettersAsync();
        var deadLetter = Assert.Single(deadLetters);
        Assert.Equal(poison, deadLetter.Position);
        var readModels = new ReadModels(_projections, Orders.Serializer(), [projection]);
        Assert.NotNull(await readModels.LoadAsync<OrderSummary>("o3"));
    }

    /// <summary>A read model transaction whose document writes fail as a full disk would, while <c>failing</c> says so.</summary>
    private sealed class DiskFullTransaction(IReadModelTransaction inner, Func<bool> failing) : IReadModelTransaction
    {
        public DbConnection? Connection => inner.Connection;

        public ReadOnlyMemory<byte>? ReadDocument(DocumentDefinition document, string id) => inner.ReadDocument(document, id);

        public void WriteDocument(DocumentDefinition document, string id, ReadOnlyMemory<byte> json, IReadOnlyList<object?> indexValues)
        {
            if (failing())
            {
                // What Microsoft.Data.Sqlite reports for SQLITE_FULL.
                throw new SqliteException("SQLite Error 13: 'database or disk is full'.", 13);
            }

            inner.WriteDocument(document, id, json, indexValues);
        }

        public bool DeleteDocument(DocumentDefinition document, string id) => inner.DeleteDocument(document, id);

        public string TableName(string table) => inner.TableName(table);
    }

    /// <summary>The SQLite store, with its document writes failing as a full disk would for the first <paramref name="failures"/> batches.</summary>
    private sealed class DiskFullStore(IProjectionStore inner, int failures) : DelegatingProjectionStore(inner)
    {
        private int _left = failures;

        public override Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
        {
            var fail = batch.Events.Count > 0 && Interlocked.Decrement(ref _left) >= 0;
            return Inner.ApplyAsync(batch with { Apply = (transaction, events) => batch.Apply(new DiskFullTransaction(transaction, () => fail), events) }, cancellationToken);
        }
    }

    // "A failure of the store itself (the disk, a lock, ...) is not an event's fault: the runner shows Faulted with the
    // error and starts again from its stored position ... for as long as it takes" (docs/projections.md): a full disk under
    // a document write does not make a good event meet the failure policy (under SkipAndDeadLetter, skipped for good).
    [Fact]
    public async Task A_full_disk_under_a_document_write_on_SQLite_is_a_store_failure_not_the_events()
    {
        var last = await AppendAsync(_store, "o1", Orders.Placed("o1", "alice", 10m));
        var projection = new OrderSummaries("edge-disk-full") { OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter, MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        var faulty = new DiskFullStore(_projections, failures: 1);
        await using var runner = new ProjectionRunner(projection, _store, faulty, Orders.Serializer());
        await runner.StartAsync(default);

        await Wait.UntilAsync(() => runner.Status.Position >= last, "the projection reaches the event");
        var readModels = new ReadModels(_projections, Orders.Serializer(), [projection]);
        Assert.NotNull(await readModels.LoadAsync<OrderSummary>("o1"));
        Assert.Empty(await runner.ListDeadLettersAsync());
        Assert.Equal(0, runner.Status.DeadLetters);
    }

    // "A second runner of the same name over the same store is refused at StartAsync" (docs/projections.md), also over
    // another SqliteProjectionStore object of the same file: the writer applies an inline projection by its name, so the
    // second would take the first's place and, stopping, take it away, while the first still said Live.
    [Fact]
    public async Task A_second_inline_runner_over_another_projection_store_object_of_the_same_file_is_refused()
    {
        await AppendAsync(_store, "o1", Orders.Placed("o1", "alice", 10m));
        var first = new ProjectionRunner(new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline }, _store, _projections, Orders.Serializer());
        await using var firstRunner = first;
        await first.StartAsync(default);
        await Wait.UntilAsync(() => first.Status.State == ProjectionState.Live, "the first runner goes live");

        var otherObject = new SqliteProjectionStore(_store);
        var second = new ProjectionRunner(new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline }, _store, otherObject, Orders.Serializer());
        InvalidOperationException? refused = null;
        try
        {
            await second.StartAsync(default);
        }
        catch (InvalidOperationException ex)
        {
            refused = ex;
        }

        if (refused is null)
        {
            await Wait.UntilAsync(() => second.Status.State == ProjectionState.Live, "the second runner goes live");
        }

        await second.DisposeAsync();

        await AppendAsync(_store, "o2", Orders.Placed("o2", "bob", 20m));
        var readModels = new ReadModels(_projections, Orders.Serializer(), [first.Projection]);
        Assert.Equal(ProjectionState.Live, first.Status.State);
        Assert.NotNull(await readModels.LoadAsync<OrderSummary>("o2")); // inline: in the read model when the append returns
        Assert.NotNull(refused);
    }

    // A new version that adds a column to its SQL table (RebuildOnVersionChange) rebuilds into a shadow while the old read
    // model serves. Its statements write the new column, which the old build's table lacks: the old build is left as it
    // is until the switch, rather than written by the new code, failing there and stopping the projection as a whole.
    [Fact]
    public async Task A_new_version_that_adds_a_column_to_its_sql_table_rebuilds_and_switches_with_events_appended_meanwhile()
    {
        for (var i = 1; i <= 8; i++)
        {
            await AppendAsync(_store, "o" + i, Orders.Placed("o" + i, "c" + i, i));
        }

        var v1 = new ProjectionRunner(new OrderRows(1), _store, _projections, Orders.Serializer());
        await v1.StartAsync(default);
        var head = await _store.GetHeadPositionAsync(default);
        await Wait.UntilAsync(() => v1.Status.State == ProjectionState.Live && v1.Status.Position >= head, "version 1 is live");
        await v1.DisposeAsync();

        // An order placed while no process runs the projection; version 2 starts on it.
        var last = await AppendAsync(_store, "o9", Orders.Placed("o9", "c9", 9m));
        await using var v2 = new ProjectionRunner(new OrderRows(2), _store, _projections, Orders.Serializer());
        await v2.StartAsync(default);
        await Wait.UntilAsync(
            () => v2.Status.State == ProjectionState.Failed || v2.Status is { ServingVersion: 2, State: ProjectionState.Live } s && s.Position >= last,
            "version 2 switches, or stops");

        Assert.True(v2.Status.State == ProjectionState.Live, $"version 2 is {v2.Status.State}: {v2.Status.LastError}");
        var totals = _database.Query("SELECT id, total FROM priced_orders ORDER BY id", r => (r.GetString(0), r.GetDouble(1)));
        Assert.Equal(9, totals.Count);
        Assert.Contains(("o9", 9.0), totals);
    }
}
