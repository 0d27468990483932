using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>The base of the projection conformance classes: runners over a fresh store and its projection store.</summary>
public abstract class ProjectionTestsBase<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    protected static readonly TimeSpan Patience = Wait.Timeout;

    protected static ProjectionRunner Runner(StoreUnderTest sut, Projection projection, TimeProvider? clock = null) =>
        new(projection, sut.Store, sut.Projections, Orders.Serializer(), timeProvider: clock);

    protected static ReadModels ReadModels(StoreUnderTest sut, params Projection[] projections) =>
        new(sut.Projections, Orders.Serializer(), projections);

    protected static async Task<ProjectionRunner> StartAsync(StoreUnderTest sut, Projection projection, TimeProvider? clock = null)
    {
        var runner = Runner(sut, projection, clock);
        await runner.StartAsync(default);
        return runner;
    }

    /// <summary>Appends events to an order's stream and returns the append's last position.</summary>
    protected static async Task<GlobalPosition> AppendAsync(StoreUnderTest sut, string orderId, params EventData[] events) =>
        (await sut.Store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, events, default)).LastPosition;

    protected static Task<GlobalPosition> PlaceAsync(StoreUnderTest sut, string orderId, string customer = "c-1", decimal total = 10m) =>
        AppendAsync(sut, orderId, Orders.Placed(orderId, customer, total));

    /// <summary>Waits for the runner to reach the head of the log.</summary>
    protected static async Task CaughtUpAsync(StoreUnderTest sut, ProjectionRunner runner) =>
        await runner.WaitForPositionAsync(await sut.Store.GetHeadPositionAsync(default), Patience);
}

/// <summary>Projections: async and inline lifecycles, positions, read-your-writes, many projections, restarts.</summary>
public abstract class ProjectionTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task A_second_runner_of_an_inline_projection_over_the_same_store_is_refused_and_the_first_keeps_serving()
    {
        await using var sut = await CreateAsync();
        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using var first = await StartAsync(sut, projection);
        await Wait.UntilAsync(() => first.Status.State == ProjectionState.Live, "the first runner is live");

        await using (var second = Runner(sut, new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline }))
        {
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => second.StartAsync(default));
            Assert.Contains("already has a running runner", refused.Message, StringComparison.Ordinal);
        }

        // Disposing the refused one took nothing from the first: appends still apply it.
        var placed = await PlaceAsync(sut, "after");
        await first.WaitForPositionAsync(placed, Patience);
        Assert.NotNull(await ReadModels(sut, projection).LoadAsync<OrderSummary>("after"));
    }

    [Fact]
    public async Task Text_orders_and_compares_by_code_point_on_every_backend()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "a", customer: "\uFF21");
        await PlaceAsync(sut, "b", customer: "\U0001F600");
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        // U+1F600 is past U+FF21 as a code point (and in UTF-8), though its UTF-16 surrogates come before it.
        var models = ReadModels(sut, projection);
        Assert.Equal(["\uFF21", "\U0001F600"], (await models.Query<OrderSummary>().OrderBy("customer").ToListAsync()).Select(o => o.Customer));
        Assert.Equal(1, await models.Query<OrderSummary>().Where("customer", QueryOperator.GreaterThan, "\uFF21").CountAsync());
    }

    [Fact]
    public async Task An_async_projection_applies_history_then_live_events()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1", total: 5m);
        await AppendAsync(sut, "1", Orders.Line("1", 7m), Orders.Shipped("1"));
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        var models = ReadModels(sut, projection);
        Assert.Equal(new OrderSummary("1", "c-1", 12m, "shipped", 1), await models.LoadAsync<OrderSummary>("1"));

        var live = await PlaceAsync(sut, "2", "c-2", 3m);
        await runner.WaitForPositionAsync(live, Patience);
        Assert.Equal("c-2", (await models.LoadAsync<OrderSummary>("2"))!.Customer);
        Assert.Equal(ProjectionState.Live, runner.Status.State);
        Assert.Equal(live, runner.Status.Position);
        Assert.Equal(0, runner.Status.LagEvents);
    }

    [Fact]
    public async Task Read_your_writes_waits_for_the_position_a_command_returned()
    {
        await using var sut = await CreateAsync();
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        var models = ReadModels(sut, projection);
        for (var i = 0; i < 20; i++)
        {
            var position = await PlaceAsync(sut, $"o{i}", total: i);
            await runner.WaitForPositionAsync(position, Patience);
            Assert.NotNull(await models.LoadAsync<OrderSummary>($"o{i}"));
        }
    }

    [Fact]
    public async Task A_wait_beyond_what_arrives_times_out_with_a_typed_error()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await using var runner = await StartAsync(sut, new OrderSummaries());
        await CaughtUpAsync(sut, runner);
        var error = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => runner.WaitForPositionAsync(new GlobalPosition(1000), TimeSpan.FromMilliseconds(50)));
        Assert.Equal(new GlobalPosition(1000), error.Wanted);
        Assert.Equal(new GlobalPosition(1), error.Reached);
    }

    [Fact]
    public async Task An_inline_projection_is_updated_in_the_appends_own_transaction()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "before");
        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        var models = ReadModels(sut, projection);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("before"));

        // No wait: the append's commit carried the read model's change.
        for (var i = 0; i < 10; i++)
        {
            await PlaceAsync(sut, $"o{i}", total: i);
            Assert.Equal(i, (await models.LoadAsync<OrderSummary>($"o{i}"))!.Total);
        }

        await AppendAsync(sut, "o3", Orders.Line("o3", 2m));
        Assert.Equal(5m, (await models.LoadAsync<OrderSummary>("o3"))!.Total);
    }

    [Fact]
    public async Task An_inline_projection_reaches_the_head_past_a_streams_lifecycle_records_and_after_a_restart()
    {
        await using var sut = await CreateAsync();
        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline };
        await using (var runner = await StartAsync(sut, projection))
        {
            await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
            await PlaceAsync(sut, "o1");
            await sut.Store.SetStreamMetadataAsync(Orders.Stream("o1"), new StreamMetadata { MaxCount = 5 }, default);
            await sut.Store.DeleteStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, default);
            await CaughtUpAsync(sut, runner);
        }

        await using var restarted = await StartAsync(sut, new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline });
        await Wait.UntilAsync(() => restarted.Status.State == ProjectionState.Live, "the inline projection is live again");
        Assert.Equal(await sut.Store.GetHeadPositionAsync(default), restarted.Status.Position);
    }

    [Fact]
    public async Task An_inline_projection_that_throws_fails_the_append_and_nothing_lands()
    {
        await using var sut = await CreateAsync();
        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline, FailWhen = e => e.OrderId == "bad" };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        await PlaceAsync(sut, "good");
        var before = await SnapshotAsync(sut.Store, Orders.Stream("bad"));

        var error = await Assert.ThrowsAsync<ProjectionEventException>(() => PlaceAsync(sut, "bad"));
        Assert.Equal("order-summaries", error.Projection);
        await AssertNothingWrittenAsync(sut.Store, before, Orders.Stream("bad"));
        Assert.Null(await ReadModels(sut, projection).LoadAsync<OrderSummary>("bad"));

        // The store and the projection go on.
        await PlaceAsync(sut, "after");
        Assert.NotNull(await ReadModels(sut, projection).LoadAsync<OrderSummary>("after"));
    }

    // Two parts of an application may each make a projection store over the one event store, each attaching inline
    // projections of its own. An append applies both in its own transaction; one refusing an event refuses the append
    // for both; one stopping leaves the other applied.
    [Fact]
    public async Task Inline_projections_attached_through_two_projection_store_objects_are_applied_together_and_refused_together()
    {
        await using var sut = await CreateAsync();
        var other = sut.NewProjectionStore();
        try
        {
            var first = new OrderSummaries("first-summaries") { Lifecycle = ProjectionLifecycle.Inline };
            var second = new OrderSummaries("second-summaries") { Lifecycle = ProjectionLifecycle.Inline, FailWhen = e => e.OrderId == "bad" };
            await using var firstRunner = await StartAsync(sut, first);
            var secondRunner = new ProjectionRunner(second, sut.Store, other, Orders.Serializer());
            await using (secondRunner)
            {
                await secondRunner.StartAsync(default);
                await Wait.UntilAsync(() => firstRunner.Status.State == ProjectionState.Live && secondRunner.Status.State == ProjectionState.Live, "both inline projections are live");
                var firstModels = ReadModels(sut, first);
                var secondModels = new ReadModels(other, Orders.Serializer(), [second]);

                // No wait: each append's commit carried both read models' changes.
                await PlaceAsync(sut, "o1");
                Assert.NotNull(await firstModels.LoadAsync<OrderSummary>("o1"));
                Assert.NotNull(await secondModels.LoadAsync<OrderSummary>("o1"));
                await PlaceAsync(sut, "o2");
                Assert.NotNull(await firstModels.LoadAsync<OrderSummary>("o2"));
                Assert.NotNull(await secondModels.LoadAsync<OrderSummary>("o2"));

                var before = await SnapshotAsync(sut.Store, Orders.Stream("bad"));
                var error = await Assert.ThrowsAsync<ProjectionEventException>(() => PlaceAsync(sut, "bad"));
                Assert.Equal("second-summaries", error.Projection);
                await AssertNothingWrittenAsync(sut.Store, before, Orders.Stream("bad"));
                Assert.Null(await firstModels.LoadAsync<OrderSummary>("bad"));
                Assert.Null(await secondModels.LoadAsync<OrderSummary>("bad"));
            }

            // The second stopped: the first is still applied by every append.
            await PlaceAsync(sut, "o3");
            Assert.NotNull(await ReadModels(sut, first).LoadAsync<OrderSummary>("o3"));
            Assert.Equal(ProjectionState.Live, firstRunner.Status.State);
        }
        finally
        {
            await DisposeAsync(other);
        }
    }

    private static async ValueTask DisposeAsync(object owned)
    {
        if (owned is IAsyncDisposable asyncDisposable)
        {
            await asyncDisposable.DisposeAsync();
        }
        else if (owned is IDisposable disposable)
        {
            disposable.Dispose();
        }
    }

    [Fact]
    public async Task Many_projections_over_the_same_events_keep_their_own_positions_and_failures()
    {
        await using var sut = await CreateAsync();
        var healthy = new OrderSummaries("healthy");
        var failing = new OrderSummaries("failing") { FailWhen = e => e.OrderId == "3", MaxRetries = 0, RetryDelay = TimeSpan.Zero };
        var tally = new EventTally();
        for (var i = 1; i <= 5; i++)
        {
            await PlaceAsync(sut, i.ToString());
        }

        await using var a = await StartAsync(sut, healthy);
        await using var b = await StartAsync(sut, failing);
        await using var c = await StartAsync(sut, tally);
        await CaughtUpAsync(sut, a);
        await CaughtUpAsync(sut, c);
        await Wait.UntilAsync(() => b.Status.State == ProjectionState.Failed, "the failing projection stops");

        Assert.Equal(new GlobalPosition(5), a.Status.Position);
        Assert.Equal(new GlobalPosition(2), b.Status.Position);
        Assert.Equal(new GlobalPosition(3), b.Status.FailedEvent);
        Assert.Equal(5, (await ReadModels(sut, tally).LoadAsync<Tally>("all"))!.Events);
        Assert.Equal(5, await ReadModels(sut, healthy).Query<OrderSummary>().CountAsync());
        Assert.Equal(2, await ReadModels(sut, failing).Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task A_restarted_projection_resumes_from_its_stored_position_and_applies_each_event_once()
    {
        await using var sut = await CreateAsync();
        var tally = new EventTally();
        for (var i = 0; i < 30; i++)
        {
            await PlaceAsync(sut, i.ToString());
        }

        await using (var runner = await StartAsync(sut, tally))
        {
            await CaughtUpAsync(sut, runner);
        }

        for (var i = 30; i < 45; i++)
        {
            await PlaceAsync(sut, i.ToString());
        }

        await using (var runner = await StartAsync(sut, new EventTally()))
        {
            await CaughtUpAsync(sut, runner);
        }

        Assert.Equal(45, (await ReadModels(sut, tally).LoadAsync<Tally>("all"))!.Events);
    }

    [Fact]
    public async Task Two_runners_of_one_projection_never_apply_an_event_twice()
    {
        await using var sut = await CreateAsync();
        var tally = new EventTally { BatchSize = 7 };
        await using var first = await StartAsync(sut, tally);
        await using var second = await StartAsync(sut, new EventTally { BatchSize = 5 });
        var appends = Enumerable.Range(0, 4).Select(async w =>
        {
            for (var i = 0; i < 25; i++)
            {
                await PlaceAsync(sut, $"{w}-{i}");
            }
        });
        await Task.WhenAll(appends);
        await CaughtUpAsync(sut, first);
        await CaughtUpAsync(sut, second);
        var count = (await ReadModels(sut, tally).LoadAsync<Tally>("all"))!;
        Assert.Equal(100, count.Events);
        Assert.Equal(ProjectionState.Live, first.Status.State);
        Assert.Equal(ProjectionState.Live, second.Status.State);
    }

    [Fact]
    public async Task Events_of_types_the_projection_does_not_handle_are_passed_over()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await AppendAsync(sut, "1", Orders.Noted("1"), TestEvents.Json("{}", "someone.elses"));
        var last = await AppendAsync(sut, "1", Orders.Shipped("1"));
        var projection = new OrderSummaries();
        await using var runner = await StartAsync(sut, projection);
        await runner.WaitForPositionAsync(last, Patience);
        Assert.Equal("shipped", (await ReadModels(sut, projection).LoadAsync<OrderSummary>("1"))!.Status);
        Assert.Equal(0, runner.Status.Failures);
    }

    [Fact]
    public async Task A_category_filter_keeps_other_categories_out()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "1");
        await sut.Store.AppendToStreamAsync(new StreamName("archive-1"), ExpectedVersion.Any, [Orders.Placed("9", "c", 1m)], default);
        var projection = new OrderSummaries { Filter = EventFilter.ForCategory("order") };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        Assert.Equal(1, await ReadModels(sut, projection).Query<OrderSummary>().CountAsync());
    }
}
