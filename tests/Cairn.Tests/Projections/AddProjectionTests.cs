using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Projections;

/// <summary>
/// Hosting projections with <c>AddProjection</c> on the in-memory backend: what it registers, the read model coming up
/// with the host, the monitor's waits, rebuilds and statuses, and the names it refuses.
/// </summary>
public sealed class AddProjectionTests
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private static void OrderEvents(CairnOptions o) =>
        o.EventTypes.Register<OrderPlaced>().Register<OrderLineAdded>().Register<OrderShipped>().Register<OrderCancelled>().Register<OrderNoted>();

    private static HostApplicationBuilder Builder(Action<CairnBuilder> projections)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        projections(builder.Services.AddCairn(o =>
        {
            o.UseInMemory();
            OrderEvents(o);
        }));
        return builder;
    }

    private static Task<AppendResult> PlaceAsync(IHost host, string orderId, string customer = "c-1", decimal total = 10m) =>
        host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, customer, total)]);

    [Fact]
    public async Task add_projection_registers_read_models_the_monitor_and_the_backends_projection_store()
    {
        var tally = new EventTally();
        var services = new ServiceCollection();
        services.AddCairn(o =>
            {
                o.UseInMemory();
                OrderEvents(o);
            })
            .AddProjection<OrderSummaries>()
            .AddProjection(tally);
        await using var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });

        Assert.IsType<InMemoryProjectionStore>(provider.GetRequiredService<IProjectionStore>());
        Assert.Same(provider.GetRequiredService<IProjectionStore>(), provider.GetRequiredService<IProjectionStore>());
        Assert.Same(provider.GetRequiredService<ReadModels>(), provider.GetRequiredService<ReadModels>());
        Assert.Same(provider.GetRequiredService<ProjectionMonitor>(), provider.GetRequiredService<ProjectionMonitor>());
        var projections = provider.GetServices<Projection>().ToList();
        Assert.Equal(2, projections.Count);
        Assert.Contains(tally, projections);
        Assert.Same(provider.GetRequiredService<OrderSummaries>(), projections.OfType<OrderSummaries>().Single());
        Assert.Equal(2, provider.GetServices<IHostedService>().OfType<ProjectionHostedService>().Count());

        // Each hosted projection shows in the monitor once its hosted service exists, stopped until the host starts it.
        var monitor = provider.GetRequiredService<ProjectionMonitor>();
        Assert.Equal(["order-summaries", "tally"], monitor.Statuses.Select(s => s.Name).Order());
        Assert.All(monitor.Statuses, s => Assert.Equal(ProjectionState.Stopped, s.State));
        Assert.NotNull(monitor.Find("tally"));
    }

    [Fact]
    public async Task starting_the_host_brings_the_read_models_up_and_keeps_them_there()
    {
        var tally = new EventTally();
        using var host = Builder(b => b.AddProjection<OrderSummaries>().AddProjection(tally)).Build();

        // History written before the host starts is applied when it does.
        await PlaceAsync(host, "1", total: 5m);
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("1"), ExpectedVersion.Any, [Orders.Line("1", 7m)]);
        var models = host.Services.GetRequiredService<ReadModels>();
        var beforeStart = await Assert.ThrowsAsync<ProjectionNotFoundException>(() => models.LoadAsync<OrderSummary>("1"));
        Assert.Contains("has not been started", beforeStart.Message);

        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await monitor.WaitForAllAsync(new GlobalPosition(2), Patience);
        Assert.Equal(new OrderSummary("1", "c-1", 12m, "placed", 1), await models.LoadAsync<OrderSummary>("1"));
        Assert.Equal(2, (await models.LoadAsync<Tally>("all"))!.Events);

        // Read-your-writes on each projection, with the position the append returned.
        var placed = await PlaceAsync(host, "2", "c-2", 3m);
        await monitor.WaitForAsync("order-summaries", placed.LastPosition, Patience);
        Assert.Equal("c-2", (await models.LoadAsync<OrderSummary>("2"))!.Customer);
        await monitor.WaitForAsync("tally", placed.LastPosition, Patience);
        Assert.Equal(3, (await models.LoadAsync<Tally>("all"))!.Events);

        await Wait.UntilAsync(() => monitor.Statuses.All(s => s.State == ProjectionState.Live), "both projections are live");
        Assert.All(monitor.Statuses, s =>
        {
            Assert.Equal(placed.LastPosition, s.Position);
            Assert.Equal(0, s.LagEvents);
            Assert.Equal(ProjectionLifecycle.Async, s.Lifecycle);
            Assert.Null(s.LastError);
        });

        await host.StopAsync();
        Assert.All(monitor.Statuses, s => Assert.Equal(ProjectionState.Stopped, s.State));
    }

    [Fact]
    public async Task the_monitor_waits_for_every_projection_within_one_timeout()
    {
        using var host = Builder(b => b.AddProjection<OrderSummaries>().AddProjection(new EventTally())).Build();
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        AppendResult last = null!;
        for (var i = 0; i < 20; i++)
        {
            last = await PlaceAsync(host, $"o{i}");
        }

        await monitor.WaitForAllAsync(last.LastPosition, Patience);
        Assert.All(monitor.Statuses, s => Assert.True(s.Position >= last.LastPosition));

        // A position nothing will reach: the wait ends with the projection and the positions named.
        var error = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => monitor.WaitForAllAsync(new GlobalPosition(1_000), TimeSpan.FromMilliseconds(50)));
        Assert.Equal(new GlobalPosition(1_000), error.Wanted);
        Assert.Equal(last.LastPosition, error.Reached);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_rebuild_through_the_monitor_switches_to_a_new_read_model_with_every_document()
    {
        var projection = new OrderSummaries { BatchSize = 8 };
        using var host = Builder(b => b.AddProjection(projection)).Build();
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        AppendResult last = null!;
        for (var i = 0; i < 40; i++)
        {
            last = await PlaceAsync(host, $"o{i}", total: i);
        }

        await monitor.WaitForAsync("order-summaries", last.LastPosition, Patience);
        await monitor.RebuildAsync("order-summaries").WaitAsync(Patience);

        var status = Assert.Single(monitor.Statuses);
        Assert.Null(status.Rebuild);
        Assert.Equal(1, status.ServingVersion);
        Assert.True(status.Position >= last.LastPosition);
        var models = host.Services.GetRequiredService<ReadModels>();
        Assert.Equal(40, await models.Query<OrderSummary>().CountAsync());
        Assert.Equal(39m, (await models.Query<OrderSummary>().OrderByDescending("total").FirstOrDefaultAsync())!.Total);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_hosted_inline_projection_has_each_append_in_its_read_model_when_the_append_returns()
    {
        using var host = Builder(b => b.AddProjection(new OrderSummaries { Lifecycle = ProjectionLifecycle.Inline })).Build();
        await PlaceAsync(host, "before");
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await Wait.UntilAsync(() => monitor.Statuses.Single().State == ProjectionState.Live, "the inline projection is live");
        var models = host.Services.GetRequiredService<ReadModels>();
        Assert.NotNull(await models.LoadAsync<OrderSummary>("before"));
        for (var i = 0; i < 5; i++)
        {
            await PlaceAsync(host, $"o{i}", total: i);
            Assert.Equal(i, (await models.LoadAsync<OrderSummary>($"o{i}"))!.Total);
        }

        Assert.Equal(ProjectionLifecycle.Inline, monitor.Statuses.Single().Lifecycle);
        await host.StopAsync();
    }

    [Fact]
    public async Task add_projection_of_a_type_makes_it_with_its_dependencies_from_the_container()
    {
        var builder = Builder(b => b.AddProjection<CustomerTotals>());
        builder.Services.AddSingleton(new Rounding(10m));
        using var host = builder.Build();
        await host.StartAsync();
        var placed = await PlaceAsync(host, "1", "c-9", 123m);
        await host.Services.GetRequiredService<ProjectionMonitor>().WaitForAsync("customer-totals", placed.LastPosition, Patience);
        Assert.Equal(new CustomerTotal("c-9", 120m), await host.Services.GetRequiredService<ReadModels>().LoadAsync<CustomerTotal>("c-9"));
        await host.StopAsync();
    }

    [Fact]
    public async Task two_projections_with_the_same_name_are_refused_when_the_host_starts()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            using var host = Builder(b => b.AddProjection<OrderSummaries>().AddProjection(new OrderSummaries())).Build();
            await host.StartAsync();
        });
        Assert.Contains("Two projections are named 'order-summaries'", error.Message);
    }

    [Fact]
    public async Task the_same_projection_type_added_twice_is_refused_too()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
        {
            using var host = Builder(b => b.AddProjection<EventTally>().AddProjection<EventTally>()).Build();
            await host.StartAsync();
        });
        Assert.Contains("Two projections are named 'tally'", error.Message);
    }

    [Fact]
    public async Task a_name_that_is_not_hosted_is_refused_with_the_hosted_names()
    {
        using var host = Builder(b => b.AddProjection<OrderSummaries>()).Build();
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        var wait = await Assert.ThrowsAsync<ProjectionNotFoundException>(() => monitor.WaitForAsync("order-summary", GlobalPosition.Start, Patience));
        Assert.Contains("No projection named 'order-summary' is hosted", wait.Message);
        Assert.Contains("order-summaries", wait.Message);
        await Assert.ThrowsAsync<ProjectionNotFoundException>(() => monitor.RebuildAsync("order-summary"));
        Assert.Null(monitor.Find("order-summary"));
        var models = host.Services.GetRequiredService<ReadModels>();
        Assert.Throws<ProjectionNotFoundException>(() => models.Query<OrderSummary>("order-summary"));
        Assert.Throws<ProjectionNotFoundException>(() => models.Query<Tally>());
        await host.StopAsync();
    }

    [Fact]
    public async Task a_projection_handling_an_unregistered_event_type_stops_the_host_from_starting()
    {
        var error = await Assert.ThrowsAsync<UnknownEventTypeException>(async () =>
        {
            using var host = Builder(b => b.AddProjection<Unregistered>()).Build();
            await host.StartAsync();
        });
        Assert.Contains(nameof(NotAnEvent), error.Message);
    }

    [Fact]
    public void impossible_settings_of_an_instance_are_refused_when_it_is_added()
    {
        var services = new ServiceCollection();
        var cairn = services.AddCairn(o => o.UseInMemory());
        Assert.Throws<ArgumentOutOfRangeException>(() => cairn.AddProjection(new OrderSummaries { MaxRetries = -1 }));
        Assert.Throws<ArgumentNullException>(() => cairn.AddProjection(null!));
    }

    [Fact]
    public async Task a_stopped_projection_fails_waits_at_once_and_goes_on_after_the_fix_and_a_restart()
    {
        var projection = new OrderSummaries { MaxRetries = 0, RetryDelay = TimeSpan.Zero, FailWhen = e => e.OrderId == "poison" };
        using var host = Builder(b => b.AddProjection(projection)).Build();
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await PlaceAsync(host, "1");
        var poison = await PlaceAsync(host, "poison");
        await Wait.UntilAsync(() => monitor.Statuses.Single().State == ProjectionState.Failed, "the projection stops");
        var status = monitor.Statuses.Single();
        Assert.Equal(poison.LastPosition, status.FailedEvent);
        Assert.Contains("Refusing order poison", status.LastError);
        var wait = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => monitor.WaitForAsync("order-summaries", poison.LastPosition, TimeSpan.FromMinutes(5)));
        Assert.Contains("failed", wait.Message);

        // The documented restart: fix the cause, then stop and start the runner the monitor finds.
        projection.FailWhen = null;
        var runner = monitor.Find("order-summaries")!;
        await runner.StopAsync(default);
        await runner.StartAsync(default);
        await monitor.WaitForAsync("order-summaries", poison.LastPosition, Patience);
        Assert.NotNull(await host.Services.GetRequiredService<ReadModels>().LoadAsync<OrderSummary>("poison"));
        await host.StopAsync();
    }

    // The docs: a wait on a failed or stopped projection "throws at once". Waiting for all of them, one failed
    // projection's error came only once every other wait had ended, here after the full timeout of one still retrying.
    [Fact]
    public async Task waiting_for_every_projection_throws_as_soon_as_one_has_failed()
    {
        var failing = new OrderSummaries { MaxRetries = 0, RetryDelay = TimeSpan.Zero, FailWhen = e => e.OrderId == "poison" };
        var retrying = new OrderSummaries("retrying-summaries") { MaxRetries = 5, RetryDelay = TimeSpan.FromMinutes(10), FailWhen = e => e.OrderId == "poison" };
        using var host = Builder(b => b.AddProjection(failing).AddProjection(retrying)).Build();
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        var poison = await PlaceAsync(host, "poison");
        await Wait.UntilAsync(() => monitor.Find("order-summaries")!.Status.State == ProjectionState.Failed, "the projection stops");
        await Wait.UntilAsync(() => monitor.Find("retrying-summaries")!.Status.LastError is not null, "the other waits to retry");

        var error = await Assert.ThrowsAsync<ProjectionWaitTimeoutException>(() => monitor.WaitForAllAsync(poison.LastPosition, TimeSpan.FromMinutes(10)).Bounded());

        Assert.Contains("order-summaries", error.Message, StringComparison.Ordinal);
        Assert.Contains("failed", error.Message, StringComparison.Ordinal);
        await host.StopAsync();
    }

    [Fact]
    public async Task dead_letters_of_a_hosted_projection_are_listed_by_its_runner()
    {
        var projection = new OrderSummaries
        {
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter,
            MaxRetries = 1,
            RetryDelay = TimeSpan.Zero,
            FailWhen = e => e.OrderId == "poison",
        };
        using var host = Builder(b => b.AddProjection(projection)).Build();
        await host.StartAsync();
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await PlaceAsync(host, "1");
        var poison = await PlaceAsync(host, "poison");
        var last = await PlaceAsync(host, "3");
        await monitor.WaitForAsync("order-summaries", last.LastPosition, Patience);

        var deadLetter = Assert.Single(await monitor.Find("order-summaries")!.ListDeadLettersAsync());
        Assert.Equal(poison.LastPosition, deadLetter.Position);
        Assert.Equal(2, deadLetter.Attempts);
        Assert.Equal(1, monitor.Statuses.Single().DeadLetters);
        Assert.Equal(2, await host.Services.GetRequiredService<ReadModels>().Query<OrderSummary>().CountAsync());
        await host.StopAsync();
    }

    public sealed record NotAnEvent(string X);

    public sealed record CustomerTotal(string Customer, decimal Total);

    public sealed record Rounding(decimal Step);

    /// <summary>A projection with a dependency, made by the container.</summary>
    public sealed class CustomerTotals : Projection
    {
        public CustomerTotals(Rounding rounding)
            : base("customer-totals")
        {
            Document<CustomerTotal>(t => t.Customer);
            On<OrderPlaced>((ctx, e) =>
            {
                var total = ctx.Documents.Load<CustomerTotal>(e.Customer) ?? new CustomerTotal(e.Customer, 0m);
                ctx.Documents.Store(total with { Total = total.Total + (Math.Floor(e.Total / rounding.Step) * rounding.Step) });
            });
        }
    }

    public sealed class Unregistered : Projection
    {
        public Unregistered()
            : base("unregistered")
        {
            On<NotAnEvent>((_, _) => { });
        }
    }
}
