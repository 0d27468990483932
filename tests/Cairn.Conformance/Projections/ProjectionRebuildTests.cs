using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;

namespace Cairn.Conformance.Projections;

/// <summary>Rebuilds into a shadow without downtime, version changes, and views of the past.</summary>
public abstract class ProjectionRebuildTests<TFixture>(TFixture fixture) : ProjectionTestsBase<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task A_rebuild_awaited_when_the_runner_stops_before_the_switch_fails_at_once_and_goes_on_at_the_next_start()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 50; i++)
        {
            await PlaceAsync(sut, $"o{i}");
        }

        var projection = new OrderSummaries { BatchSize = 10 };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        // The rebuild's first batch is held until the runner is asked to stop.
        using var release = new ManualResetEventSlim(false);
        var entered = 0;
        projection.FailWhen = _ =>
        {
            if (Interlocked.Exchange(ref entered, 1) == 0)
            {
                release.Wait(Patience);
            }

            return false;
        };
        var rebuild = runner.RebuildAsync();
        await Wait.UntilAsync(() => Volatile.Read(ref entered) == 1, "the rebuild applies its first batch");
        var pending = runner.WaitForPositionAsync(new GlobalPosition(1000), Patience);
        var stopping = runner.StopAsync(default);
        release.Set();
        await stopping.Bounded();

        Assert.Equal(ProjectionState.Stopped, runner.Status.State);
        var stopped = await Assert.ThrowsAsync<InvalidOperationException>(() => rebuild.Bounded());
        Assert.Contains("stopped before its rebuild switched", stopped.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => pending.Bounded());

        // Started again, the runner finishes the rebuild.
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status.Rebuild is null && runner.Status.State == ProjectionState.Live, "the rebuild finishes after the start");
        Assert.Equal(50, await ReadModels(sut, projection).Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task A_rebuild_fills_a_shadow_while_the_old_read_model_serves_then_switches_with_nothing_lost()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 300; i++)
        {
            await PlaceAsync(sut, $"o{i}", total: i);
        }

        var projection = new OrderSummaries { BatchSize = 16 };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);
        var models = ReadModels(sut, projection);

        // Appends keep coming while the rebuild runs; queries keep answering from the serving read model.
        var rebuild = runner.RebuildAsync();
        var appended = 300;
        while (!rebuild.IsCompleted)
        {
            Assert.True(await models.Query<OrderSummary>().CountAsync() >= 300, "the serving read model lost documents during the rebuild");
            if (appended < 400)
            {
                await PlaceAsync(sut, $"o{appended}", total: appended);
                appended++;
            }

            await Task.Yield();
        }

        await rebuild.Bounded();
        for (; appended < 420; appended++)
        {
            await PlaceAsync(sut, $"o{appended}", total: appended);
        }

        await CaughtUpAsync(sut, runner);
        Assert.Equal(appended, await models.Query<OrderSummary>().CountAsync());
        Assert.Null(runner.Status.Rebuild);
        Assert.Equal(ProjectionState.Live, runner.Status.State);
        Assert.Equal(appended - 1m, (await models.Query<OrderSummary>().OrderByDescending("total").FirstOrDefaultAsync())!.Total);
    }

    [Fact]
    public async Task Rebuild_progress_reports_position_pace_and_time_left()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 50; i++)
        {
            await PlaceAsync(sut, $"o{i}");
        }

        var block = new SemaphoreSlim(0);
        var projection = new OrderSummaries { BatchSize = 10 };
        await using var runner = await StartAsync(sut, projection);
        await CaughtUpAsync(sut, runner);

        // Hold the rebuild after its first batches to look at it.
        var applied = 0;
        projection.FailWhen = _ =>
        {
            if (Interlocked.Increment(ref applied) == 20)
            {
                block.Wait(Wait.Timeout);
            }

            return false;
        };
        var rebuild = runner.RebuildAsync();
        await Wait.UntilAsync(() => Volatile.Read(ref applied) >= 20, "the rebuild has applied two batches");
        var progress = runner.Status.Rebuild;
        Assert.NotNull(progress);
        Assert.Equal(new GlobalPosition(50), progress.Head);
        Assert.Equal(new GlobalPosition(10), progress.Position);
        Assert.Equal(0.2, progress.Fraction, 3);
        Assert.Equal(10, progress.EventsApplied);
        Assert.True(progress.EventsPerSecond > 0);
        Assert.NotNull(progress.EstimatedRemaining);
        block.Release();
        await rebuild.Bounded();
        Assert.Null(runner.Status.Rebuild);
    }

    [Fact]
    public async Task A_new_version_with_rebuild_on_version_change_rebuilds_on_start_and_switches()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 20; i++)
        {
            await PlaceAsync(sut, $"o{i}", total: 1m);
        }

        await using (var v1 = await StartAsync(sut, new OrderSummaries()))
        {
            await CaughtUpAsync(sut, v1);
        }

        var v2 = new OrderSummaries { Version = 2, RebuildOnVersionChange = true, Bonus = 100m };
        await using var runner = await StartAsync(sut, v2);
        await Wait.UntilAsync(() => runner.Status.ServingVersion == 2, "version 2 serves");
        await CaughtUpAsync(sut, runner);
        var models = ReadModels(sut, v2);
        Assert.Equal(20, await models.Query<OrderSummary>().Where("total", 101m).CountAsync());
    }

    [Fact]
    public async Task Code_older_than_the_serving_read_model_refuses_to_run_it_rather_than_rebuild_it_back()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", total: 1m);
        await using (var v2 = await StartAsync(sut, new OrderSummaries { Version = 2, RebuildOnVersionChange = true, Bonus = 100m }))
        {
            await CaughtUpAsync(sut, v2);
        }

        // A process of the old code, still running during a rolling deployment.
        var v1 = new OrderSummaries { Version = 1, RebuildOnVersionChange = true };
        await using var runner = await StartAsync(sut, v1);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "version 1 refuses to run");
        Assert.Contains("served by version 2, newer than this process's version 1", runner.Status.LastError, StringComparison.Ordinal);
        Assert.Equal(nameof(ProjectionVersionNewerException), runner.Status.LastError!.Split(':')[0]);

        // The read model is version 2's, untouched; version 2 goes on with it.
        Assert.Equal(101m, (await ReadModels(sut, v1).LoadAsync<OrderSummary>("o1"))!.Total);
        await using var again = await StartAsync(sut, new OrderSummaries { Version = 2, RebuildOnVersionChange = true, Bonus = 100m });
        await PlaceAsync(sut, "o2", total: 1m);
        await CaughtUpAsync(sut, again);
        Assert.Equal(2, again.Status.ServingVersion);
        Assert.Equal(101m, (await ReadModels(sut, v1).LoadAsync<OrderSummary>("o2"))!.Total);
    }

    [Fact]
    public async Task Documents_a_new_version_adds_read_as_none_until_its_rebuild_switches()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", customer: "acme");
        await using (var v1 = await StartAsync(sut, new OrdersAndCustomers(version: 1, withCustomers: false)))
        {
            await CaughtUpAsync(sut, v1);
        }

        // Version 2's shadow exists but the old build serves until the switch.
        var v2 = new OrdersAndCustomers(version: 2, withCustomers: true);
        await sut.Projections.StartShadowAsync(v2, default);
        var models = ReadModels(sut, v2);
        Assert.Equal(0, await models.Query<CustomerOrders>().CountAsync());
        Assert.Empty(await models.Query<CustomerOrders>().ToListAsync());
        Assert.Null(await models.LoadAsync<CustomerOrders>("acme"));
        Assert.NotNull(await models.LoadAsync<OrderSummary>("o1"));

        await using var runner = await StartAsync(sut, v2);
        await Wait.UntilAsync(() => runner.Status is { ServingVersion: 2, Rebuild: null }, "version 2 serves");
        Assert.Equal(1, (await models.LoadAsync<CustomerOrders>("acme"))!.Orders);
    }

    /// <summary>Orders per customer, kept in a collection of its own.</summary>
    public sealed record CustomerOrders(string Id, long Orders);

    /// <summary>Order summaries, and (from version 2) orders per customer.</summary>
    private sealed class OrdersAndCustomers : Projection
    {
        public OrdersAndCustomers(int version, bool withCustomers)
            : base("orders-and-customers")
        {
            Version = version;
            Document<OrderSummary>(o => o.Id).Index("customer", o => o.Customer);
            if (withCustomers)
            {
                Document<CustomerOrders>(c => c.Id).Index("orders", c => c.Orders);
            }

            On<OrderPlaced>((ctx, e) =>
            {
                ctx.Documents.Store(new OrderSummary(e.OrderId, e.Customer, e.Total, "placed", 0));
                if (withCustomers)
                {
                    var customer = ctx.Documents.Load<CustomerOrders>(e.Customer) ?? new CustomerOrders(e.Customer, 0);
                    ctx.Documents.Store(customer with { Orders = customer.Orders + 1 });
                }
            });
        }
    }

    [Fact]
    public async Task A_new_version_without_rebuild_keeps_serving_the_old_read_model_and_says_so()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", total: 1m);
        await using (var v1 = await StartAsync(sut, new OrderSummaries()))
        {
            await CaughtUpAsync(sut, v1);
        }

        var v2 = new OrderSummaries { Version = 2, Bonus = 100m };
        await using var runner = await StartAsync(sut, v2);
        await PlaceAsync(sut, "o2", total: 1m);
        await CaughtUpAsync(sut, runner);
        Assert.Equal(1, runner.Status.ServingVersion);
        Assert.Equal(2, runner.Status.Version);
        var models = ReadModels(sut, v2);
        Assert.Equal(1m, (await models.LoadAsync<OrderSummary>("o1"))!.Total);
        Assert.Equal(101m, (await models.LoadAsync<OrderSummary>("o2"))!.Total);

        await runner.RebuildAsync().Bounded();
        Assert.Equal(2, runner.Status.ServingVersion);
        Assert.Equal(101m, (await models.LoadAsync<OrderSummary>("o1"))!.Total);
    }

    [Fact]
    public async Task A_changed_read_model_shape_without_a_new_version_is_refused_on_start()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1");
        await using (var v1 = await StartAsync(sut, new OrderSummaries()))
        {
            await CaughtUpAsync(sut, v1);
        }

        await using var runner = await StartAsync(sut, new OrderSummaries(indexPriority: false));
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Failed, "the projection refuses to start");
        Assert.Contains("Raise its Version", runner.Status.LastError);

        // Raising the version with a rebuild fixes it.
        await using var fixedRunner = await StartAsync(sut, new OrderSummaries(indexPriority: false) { Version = 2, RebuildOnVersionChange = true });
        await Wait.UntilAsync(() => fixedRunner.Status.ServingVersion == 2, "version 2 serves");
    }

    [Fact]
    public async Task An_inline_projection_rebuilds_without_missing_appends_committed_during_the_switch()
    {
        await using var sut = await CreateAsync();
        for (var i = 0; i < 100; i++)
        {
            await PlaceAsync(sut, $"o{i}", total: 1m);
        }

        var projection = new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline, BatchSize = 8 };
        await using var runner = await StartAsync(sut, projection);
        await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live");
        var models = ReadModels(sut, projection);
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 3).Select(w => Task.Run(async () =>
        {
            var n = 0;
            while (!stop.IsCancellationRequested)
            {
                await PlaceAsync(sut, $"w{w}-{n++}", total: 1m);

                // An in-memory append can complete at once: without a yield, three such loops hold pool threads
                // and starve the runner's own continuations until the pool adds threads, seconds later.
                await Task.Yield();
            }

            return n;
        })).ToList();
        await runner.RebuildAsync().Bounded();
        await stop.CancelAsync();
        var written = (await Task.WhenAll(writers)).Sum();

        // Inline again: an append is in the read model the moment it returns.
        await PlaceAsync(sut, "last", total: 1m);
        Assert.NotNull(await models.LoadAsync<OrderSummary>("last"));
        Assert.Equal(100 + written + 1, await models.Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task A_view_as_of_a_position_or_a_time_shows_the_read_model_as_it_was()
    {
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock });
        var october = clock.GetUtcNow();
        await PlaceAsync(sut, "o1", total: 10m);
        var afterFirst = await AppendAsync(sut, "o1", Orders.Line("o1", 5m));
        clock.Advance(TimeSpan.FromDays(1));
        var secondDay = clock.GetUtcNow();
        await PlaceAsync(sut, "o2", total: 20m);
        await AppendAsync(sut, "o1", Orders.Shipped("o1"));
        clock.Advance(TimeSpan.FromDays(1));
        await AppendAsync(sut, "o2", Orders.Cancelled("o2"));

        var projection = new OrderSummaries();
        var serializer = Orders.Serializer();
        var atPosition = await sut.Store.BuildAsOfAsync(projection, serializer, afterFirst);
        Assert.Equal(afterFirst, atPosition.Position);
        Assert.Equal(new OrderSummary("o1", "c-1", 15m, "placed", 1), await atPosition.ReadModels.LoadAsync<OrderSummary>("o1"));
        Assert.Null(await atPosition.ReadModels.LoadAsync<OrderSummary>("o2"));

        var firstDay = await sut.Store.BuildAsOfAsync(projection, serializer, october + TimeSpan.FromHours(12));
        Assert.Equal(1, await firstDay.ReadModels.Query<OrderSummary>().CountAsync());
        var second = await sut.Store.BuildAsOfAsync(projection, serializer, secondDay + TimeSpan.FromHours(1));
        Assert.Equal(["o1", "o2"], (await second.ReadModels.Query<OrderSummary>().OrderBy("total").ToListAsync()).Select(o => o.Id));
        Assert.Equal("shipped", (await second.ReadModels.LoadAsync<OrderSummary>("o1"))!.Status);
        var now = await sut.Store.BuildLiveAsync(projection, serializer);
        Assert.Equal(["o1"], (await now.ReadModels.Query<OrderSummary>().ToListAsync()).Select(o => o.Id));
        var beforeAnything = await sut.Store.BuildAsOfAsync(projection, serializer, october - TimeSpan.FromDays(1));
        Assert.Equal(0, await beforeAnything.ReadModels.Query<OrderSummary>().CountAsync());
        Assert.Equal(GlobalPosition.Start, beforeAnything.Position);
    }

    [Fact]
    public async Task A_live_projection_folds_one_stream_in_memory_for_a_caller()
    {
        await using var sut = await CreateAsync();
        await PlaceAsync(sut, "o1", total: 10m);
        await AppendAsync(sut, "o1", Orders.Line("o1", 5m), Orders.Shipped("o1"));
        await PlaceAsync(sut, "o2", total: 1m);
        var projection = new OrderSummaries();
        var serializer = Orders.Serializer();
        Assert.Equal(new OrderSummary("o1", "c-1", 15m, "shipped", 1), await sut.Store.AggregateStreamAsync<OrderSummary>(projection, serializer, Orders.Stream("o1"), "o1"));
        Assert.Equal(new OrderSummary("o1", "c-1", 15m, "placed", 1), await sut.Store.AggregateStreamAsync<OrderSummary>(projection, serializer, Orders.Stream("o1"), "o1", asOfVersion: 1));
        Assert.Null(await sut.Store.AggregateStreamAsync<OrderSummary>(projection, serializer, Orders.Stream("nothing"), "nothing"));
    }
}
