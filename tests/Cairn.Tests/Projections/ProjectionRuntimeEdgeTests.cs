using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests;

/// <summary>An order event seen through an interface its handlers may name.</summary>
public interface IDispatchOrderEvent
{
    string OrderId { get; }
}

[EventType("dispatch.order-placed")]
public sealed record DispatchOrderPlaced(string OrderId) : IDispatchOrderEvent;

/// <summary>An event something audits, beside being an order event.</summary>
public interface IDispatchAudited
{
    string OrderId { get; }
}

[EventType("dispatch.order-audited")]
public sealed record DispatchOrderAudited(string OrderId) : IDispatchOrderEvent, IDispatchAudited;

/// <summary>The base record of a family of shipment events.</summary>
public abstract record DispatchShipmentEvent(string OrderId);

/// <summary>An interface only some shipment events implement.</summary>
public interface IDispatchTracked
{
    string OrderId { get; }
}

[EventType("dispatch.shipment-sent")]
public sealed record DispatchShipmentSent(string OrderId) : DispatchShipmentEvent(OrderId), IDispatchTracked;

/// <summary>Which handler applied an event to an order.</summary>
public sealed record DispatchHit(string Id, string By);

/// <summary>
/// The projection runtime's choices at its edges: which handler an event goes to, the state and lag it reports after a
/// fault or a stop, and the in-memory store refusing through its tasks.
/// </summary>
public sealed class ProjectionRuntimeEdgeTests
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    /// <summary>A catch-all handler on <see cref="object"/> beside a handler on the events' interface.</summary>
    private sealed class InterfaceAndCatchAll : Projection
    {
        public InterfaceAndCatchAll()
            : base("dispatch-interface-and-catch-all")
        {
            Document<DispatchHit>(h => h.Id);
            On<IDispatchOrderEvent>((ctx, e) => ctx.Documents.Store(new DispatchHit(e.OrderId, "interface")));
            On<object>((ctx, _) => ctx.Documents.Store(new DispatchHit("catch-all", "object")));
        }
    }

    // "The handler of the most specific type wins" (docs/projections.md): an interface the event implements is more
    // specific than a catch-all on object.
    [Fact]
    public async Task The_handler_of_an_interface_the_event_implements_wins_over_a_catch_all_on_object()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<DispatchOrderPlaced>());
        var store = new InMemoryEventStore();
        await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [serializer.ToEventData(new DispatchOrderPlaced("1"))], default);

        var view = await store.BuildLiveAsync(new InterfaceAndCatchAll(), serializer);

        var hit = await view.ReadModels.LoadAsync<DispatchHit>("1");
        Assert.NotNull(hit);
        Assert.Equal("interface", hit.By);
    }

    /// <summary>Handlers on two interfaces the same event implements, neither more specific than the other.</summary>
    private sealed class TwoInterfaces : Projection
    {
        public TwoInterfaces()
            : base("dispatch-two-interfaces")
        {
            Document<DispatchHit>(h => h.Id);
            On<IDispatchOrderEvent>((ctx, e) => ctx.Documents.Store(new DispatchHit(e.OrderId, "order")));
            On<IDispatchAudited>((ctx, e) => ctx.Documents.Store(new DispatchHit(e.OrderId, "audit")));
        }
    }

    // Which of two unrelated handlers an event goes to is never left to the order they were declared in.
    [Fact]
    public async Task Handlers_of_two_unrelated_types_an_event_matches_are_refused_naming_both()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<DispatchOrderAudited>());
        var store = new InMemoryEventStore();

        var ex = await Assert.ThrowsAsync<InvalidProjectionException>(() => store.BuildLiveAsync(new TwoInterfaces(), serializer));

        Assert.Contains(typeof(IDispatchOrderEvent).FullName!, ex.Message, StringComparison.Ordinal);
        Assert.Contains(typeof(IDispatchAudited).FullName!, ex.Message, StringComparison.Ordinal);
        Assert.Contains("'dispatch.order-audited'", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>A handler on the events' base record beside one on an interface only some of them implement.</summary>
    private sealed class BaseAndInterface : Projection
    {
        public BaseAndInterface()
            : base("dispatch-base-and-interface")
        {
            Document<DispatchHit>(h => h.Id);
            On<DispatchShipmentEvent>((ctx, e) => ctx.Documents.Store(new DispatchHit(e.OrderId, "base")));
            On<IDispatchTracked>((ctx, e) => ctx.Documents.Store(new DispatchHit(e.OrderId, "interface")));
        }
    }

    // A family's base record beats an interface some of its members implement, which it is not related to: a common
    // shape of projection, which runs as it always did.
    [Fact]
    public async Task A_handler_on_a_base_record_beats_one_on_an_interface_some_subclasses_implement()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<DispatchShipmentSent>());
        var store = new InMemoryEventStore();
        await store.AppendToStreamAsync(new StreamName("shipment-1"), ExpectedVersion.NoStream, [serializer.ToEventData(new DispatchShipmentSent("1"))], default);

        var view = await store.BuildLiveAsync(new BaseAndInterface(), serializer);

        Assert.Equal("base", (await view.ReadModels.LoadAsync<DispatchHit>("1"))!.By);
    }

    /// <summary>Order summaries whose handler of order "o2" waits for <see cref="Gate"/>, telling <see cref="Entered"/>.</summary>
    private sealed class GatedOrders : Projection
    {
        public GatedOrders()
            : base("dispatch-gated-orders")
        {
            BatchSize = 1;
            CatchUpBatchSize = 1;
            Document<OrderSummary>(o => o.Id);
            On<OrderPlaced>((ctx, e) =>
            {
                if (e.OrderId == "o2")
                {
                    Entered.Set();
                    Gate.Wait(Patience);
                }

                ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0));
            });
        }

        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Gate { get; } = new();
    }

    /// <summary>A projection store whose first batch fails as a disk or connection would.</summary>
    private sealed class FailingFirstBatch(IProjectionStore inner) : DelegatingProjectionStore(inner)
    {
        private int _batches;

        public override Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken) =>
            Interlocked.Increment(ref _batches) == 1
                ? Task.FromException<ProjectionBatchResult>(new IOException("The disk went away for a moment."))
                : base.ApplyAsync(batch, cancellationToken);
    }

    // State "Faulted (retrying the store)" (docs/projections.md): once the store takes batches again, the runner works
    // through its backlog as CatchingUp, not shown as broken for as long as the backlog takes.
    [Fact]
    public async Task A_runner_applying_its_backlog_again_after_a_store_fault_no_longer_shows_faulted()
    {
        var serializer = Orders.Serializer();
        var store = new InMemoryEventStore();
        for (var i = 1; i <= 3; i++)
        {
            await store.AppendToStreamAsync(Orders.Stream("o" + i), ExpectedVersion.NoStream, [Orders.Placed("o" + i, "alice", i)], default);
        }

        var projection = new GatedOrders();
        await using var runner = new ProjectionRunner(projection, store, new FailingFirstBatch(new InMemoryProjectionStore(store)), serializer);
        await runner.StartAsync(default);
        try
        {
            // The first batch failed on the store; the runner came back, committed o1 and is applying o2.
            Assert.True(projection.Entered.Wait(Patience), "the runner resumes after the store fault");
            Assert.Equal(1, runner.Status.Position.Value);
            Assert.NotEqual(ProjectionState.Faulted, runner.Status.State);
        }
        finally
        {
            projection.Gate.Set();
        }
    }

    // "The ones that return a task ... refuse through it, on every backend" (docs/projections.md): a stale batch, a
    // projection not open, a null argument and a cancelled token, as SQLite and PostgreSQL report them.
    [Fact]
    public async Task The_in_memory_store_refuses_a_stale_batch_through_its_task()
    {
        var serializer = Orders.Serializer();
        var store = new InMemoryEventStore();
        var placed = (await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.NoStream, [Orders.Placed("o1", "alice", 1m)], default)).LastPosition;
        var projection = new OrderSummaries();
        var projections = new InMemoryProjectionStore(store);
        var builds = await projections.OpenAsync(projection, default);
        var apply = (ReadModelApply)((_, _) => { });

        // Expects position 7, but the build is at 0.
        var stale = new ProjectionBatch(projection.Name, builds.Serving.Id, new GlobalPosition(7), placed, [], apply);

        await ThroughTask.RefusedAsync<ProjectionConflictException>(() => projections.ApplyAsync(stale, default));
        await ThroughTask.RefusedAsync<ProjectionNotFoundException>(() => new InMemoryProjectionStore(store).ApplyAsync(stale, default));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => projections.ApplyAsync(null!, default));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => projections.OpenAsync(null!, default));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => projections.StartShadowAsync(null!, default));
        await ThroughTask.RefusedAsync<OperationCanceledException>(() => projections.OpenAsync(projection, new CancellationToken(canceled: true)));
        await ThroughTask.RefusedAsync<ProjectionNotFoundException>(() => new InMemoryProjectionStore(store).StartShadowAsync(projection, default));
    }

    // LagSeconds is "how long the oldest of them [the events not yet applied] has waited" (docs/projections.md): a batch
    // that fails on its second event commits the first and stops at the second, whose commit time the lag counts from.
    [Fact]
    public async Task The_lag_of_a_projection_stopped_mid_batch_counts_from_the_event_it_stopped_at()
    {
        var clock = new ManualTimeProvider();
        var serializer = Orders.Serializer();
        var store = new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock });
        await store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.NoStream, [Orders.Placed("o1", "alice", 1m)], default);
        clock.Advance(TimeSpan.FromMinutes(10));
        await store.AppendToStreamAsync(Orders.Stream("o2"), ExpectedVersion.NoStream, [Orders.Placed("o2", "alice", 2m)], default);

        var projection = new OrderSummaries { FailWhen = e => e.OrderId == "o2", MaxRetries = 0 };
        await using var runner = new ProjectionRunner(projection, store, new InMemoryProjectionStore(store), serializer, timeProvider: clock);
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection stops at o2");

        var status = runner.Status;
        Assert.Equal(1, status.Position.Value);
        Assert.Equal(2, status.FailedEvent!.Value.Value);
        // o2, the oldest event not applied, was committed just now.
        Assert.Equal(0, status.LagSeconds, precision: 3);
    }
}
