using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Projections;

[EventType("edge.cart-opened")]
public sealed record EdgeCartOpened(string CartId, List<string> Items);

[EventType("edge.item-added")]
public sealed record EdgeItemAdded(string CartId, string Item);

[EventType("edge.cart-checked")]
public sealed record EdgeCartChecked(string CartId);

/// <summary>A cart read model kept as a mutable list, stored after each change as the docs ask.</summary>
public sealed record EdgeCart(string Id, List<string> Items);

/// <summary>Projection runs at their edges, in memory: a batch retried after a failure, queries during a rebuild that adds an index, waits without a limit.</summary>
public sealed class ProjectionRunEdgeTests
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private static EventSerializer CartSerializer() => new(new EventTypeRegistry()
        .Register<EdgeCartOpened>()
        .Register<EdgeItemAdded>()
        .Register<EdgeCartChecked>());

    /// <summary>Carts; the handler of <see cref="EdgeCartChecked"/> fails <see cref="TransientFailures"/> times first.</summary>
    private sealed class Carts : Projection
    {
        public Carts()
            : base("edge-carts")
        {
            Document<EdgeCart>(c => c.Id);
            On<EdgeCartOpened>((ctx, e) => ctx.Documents.Store(new EdgeCart(e.CartId, e.Items)));
            On<EdgeItemAdded>((ctx, e) =>
            {
                var cart = ctx.Documents.Load<EdgeCart>(e.CartId)!;
                cart.Items.Add(e.Item);
                ctx.Documents.Store(cart);
            });
            On<EdgeCartChecked>((_, e) =>
            {
                if (TransientFailures-- > 0)
                {
                    throw new TimeoutException($"A transient failure checking cart {e.CartId}.");
                }
            });
        }

        public int TransientFailures { get; set; }
    }

    // A batch that failed once (a transient error) and succeeded on its retry leaves the read model as if it had
    // succeeded the first time: the retry decodes its events afresh, rather than replaying the event objects its failed
    // attempt's handlers changed (a document sharing a list with its event, changed by load, change, store).
    [Fact]
    public async Task A_retried_batch_decodes_its_events_afresh()
    {
        var serializer = CartSerializer();
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var stream = new StreamName("cart-1");
        var last = (await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream,
        [
            serializer.ToEventData(new EdgeCartOpened("1", ["apple"])),
            serializer.ToEventData(new EdgeItemAdded("1", "pear")),
            serializer.ToEventData(new EdgeCartChecked("1")),
        ], default)).LastPosition;

        var projection = new Carts { TransientFailures = 1, MaxRetries = 3, RetryDelay = TimeSpan.Zero };
        await using var runner = new ProjectionRunner(projection, store, projections, serializer);
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(last, Patience);

        Assert.Equal(1, runner.Status.Failures);
        var cart = await new ReadModels(projections, serializer, [projection]).LoadAsync<EdgeCart>("1");
        Assert.Equal(["apple", "pear"], cart!.Items);
    }

    /// <summary>Orders, indexed by customer and total; version 2 adds a "status" index before them.</summary>
    private sealed class IndexedOrders : Projection
    {
        public IndexedOrders(int version)
            : base("edge-indexed-orders")
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

    // During the rebuild of a version that adds an index, a query on an index both versions have finds its documents
    // (the index's place in the old build's values, not in the new declaration), and one on the new index is refused
    // until the new build serves.
    [Fact]
    public async Task A_query_during_a_rebuild_that_adds_an_index_reads_the_serving_builds_values()
    {
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.NoStream, [Orders.Placed("o1", "alice", 120m)], default);
        var v1 = new IndexedOrders(version: 1);
        await using (var runner = new ProjectionRunner(v1, store, projections, Orders.Serializer()))
        {
            await runner.StartAsync(default);
            await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Patience);
        }

        // Version 2's rebuild has started; the version 1 build still serves the queries of the new code.
        var v2 = new IndexedOrders(version: 2);
        await projections.StartShadowAsync(v2, default);
        var models = new ReadModels(projections, Orders.Serializer(), [v2]);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("o1"));

        Assert.Equal(1, await models.Query<OrderSummary>().Where("customer", "alice").CountAsync());
        Assert.Equal(["o1"], (await models.Query<OrderSummary>().OrderBy("total").ToListAsync()).Select(o => o.Id));
        await Assert.ThrowsAsync<InvalidDocumentQueryException>(() => models.Query<OrderSummary>().Where("status", "placed").CountAsync());
    }

    /// <summary>Orders whose "total" index is a real number in version 1 and whole units in version 2.</summary>
    private sealed class RetypedTotals : Projection
    {
        public RetypedTotals(int version)
            : base("edge-retyped-totals")
        {
            Version = version;
            RebuildOnVersionChange = true;
            var documents = Document<OrderSummary>(o => o.Id);
            if (version == 1)
            {
                documents.Index("total", o => o.Total);
            }
            else
            {
                documents.Index("total", o => (long)o.Total);
            }

            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0)));
        }
    }

    // During the rebuild of a version that changes an index's kind, a query on it in the new kind is refused (as on every
    // backend; PostgreSQL answered with a raw "operator does not exist"), until the new build serves.
    [Fact]
    public async Task A_query_on_an_index_whose_kind_a_rebuild_changes_is_refused_until_its_build_serves()
    {
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.NoStream, [Orders.Placed("o1", "alice", 120m)], default);
        await using (var runner = new ProjectionRunner(new RetypedTotals(1), store, projections, Orders.Serializer()))
        {
            await runner.StartAsync(default);
            await runner.WaitForPositionAsync(await store.GetHeadPositionAsync(default), Patience);
        }

        var v2 = new RetypedTotals(2);
        await projections.StartShadowAsync(v2, default);
        var models = new ReadModels(projections, Orders.Serializer(), [v2]);

        var refused = await Assert.ThrowsAsync<InvalidDocumentQueryException>(() => models.Query<OrderSummary>().Where("total", 120L).CountAsync());
        Assert.Contains("indexes it as Real, not Integer", refused.Message, StringComparison.Ordinal);
    }

    // A wait "as long as it takes" passes Timeout.InfiniteTimeSpan, as every .NET wait takes.
    [Fact]
    public async Task WaitForPositionAsync_takes_an_infinite_timeout()
    {
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var placed = (await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.NoStream, [Orders.Placed("o1", "alice", 1m)], default)).LastPosition;
        await using var runner = new ProjectionRunner(new OrderSummaries(), store, projections, Orders.Serializer());
        await runner.StartAsync(default);
        await runner.WaitForPositionAsync(placed, Patience);

        await runner.WaitForPositionAsync(placed, Timeout.InfiniteTimeSpan).Bounded();
    }

    /// <summary>Carts whose opening waits for <see cref="Gate"/>, telling <see cref="Entered"/> it has begun.</summary>
    private sealed class GatedCarts : Projection
    {
        public GatedCarts()
            : base("edge-gated-carts")
        {
            Document<EdgeCart>(c => c.Id);
            On<EdgeCartOpened>((ctx, e) =>
            {
                Entered.Set();
                Gate.Wait(Patience);
                ctx.Documents.Store(new EdgeCart(e.CartId, e.Items));
            });
        }

        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Gate { get; } = new();
    }

    // LagSeconds is "how long the oldest event not yet applied has waited", and MaxProjectionLag's health check reads
    // it. It counted from when the runner first read the batch, so a runner starting ten minutes behind reported no lag
    // at all, and the health check called it caught up until it had been reading for MaxProjectionLag.
    [Fact]
    public async Task The_lag_of_a_runner_starting_on_a_backlog_is_the_age_of_its_oldest_unapplied_event()
    {
        var clock = new ManualTimeProvider();
        var serializer = CartSerializer();
        var store = new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock });
        var projections = new InMemoryProjectionStore(store);
        var last = (await store.AppendToStreamAsync(new StreamName("cart-1"), ExpectedVersion.NoStream, [serializer.ToEventData(new EdgeCartOpened("1", ["apple"]))], default)).LastPosition;
        clock.Advance(TimeSpan.FromMinutes(10));

        var projection = new GatedCarts();
        await using var runner = new ProjectionRunner(projection, store, projections, serializer, timeProvider: clock);
        await runner.StartAsync(default);
        try
        {
            Assert.True(projection.Entered.Wait(Patience), "the runner applies the backlog");
            Assert.Equal(600, runner.Status.LagSeconds, precision: 3);
        }
        finally
        {
            projection.Gate.Set();
        }

        await runner.WaitForPositionAsync(last, Patience);
        Assert.Equal(0, runner.Status.LagSeconds);
    }
}
