using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests;

/// <summary>Hosting at its edges: AddCairn called twice, a backend without a part, health-check settings past what a timer keeps.</summary>
public sealed class HostingEdgeTests
{
    private sealed class CountingRelay : IHostedService
    {
        public int Starts;

        public int Stops;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Starts);
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Stops);
            return Task.CompletedTask;
        }
    }

    [Fact]
    public async Task a_second_add_cairn_adds_its_configuration_but_starts_cairns_own_services_once()
    {
        var relay = new CountingRelay();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UseInMemory().UseTransport("counting", (_, inner) => inner, _ => relay)).AddQueue("module-a");
        builder.Services.AddCairn(o => o.EventTypes.Register<OrderPlaced>()).AddQueue("module-b");
        using var host = builder.Build();

        await host.StartAsync();
        var admin = host.Services.GetRequiredService<Cairn.Messaging.IMessagingAdmin>();
        Assert.NotNull(await admin.GetQueueAsync("module-a", default));
        Assert.NotNull(await admin.GetQueueAsync("module-b", default));
        Assert.True(host.Services.GetRequiredService<Cairn.Serialization.EventTypeRegistry>().TryGetName(typeof(OrderPlaced), out _));
        await host.StopAsync();

        Assert.Equal(1, relay.Starts);
        Assert.Equal(1, relay.Stops);
    }

    [Fact]
    public void the_error_for_a_missing_backend_part_says_which_backend_has_it()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IStorageMigrator>());
        Assert.Contains("in-memory backend has no IStorageMigrator", error.Message, StringComparison.Ordinal);
        Assert.Contains("UsePostgres(...) and UseSqlite(...)", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("UseInMemory()", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_health_check_timeout_past_an_hour_is_refused_naming_the_setting()
    {
        foreach (var timeout in new[] { TimeSpan.FromDays(60), TimeSpan.MaxValue, TimeSpan.FromHours(1) + TimeSpan.FromTicks(1) })
        {
            var services = new ServiceCollection();
            var refused = Assert.Throws<ArgumentOutOfRangeException>(() => services.AddHealthChecks().AddCairn(h => h with { Timeout = timeout }));
            Assert.Equal("Timeout", refused.ParamName);
        }
    }

    [Fact]
    public async Task a_health_check_timeout_of_an_hour_keeps_a_healthy_log_healthy()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UseInMemory());
        builder.Services.AddHealthChecks().AddCairn(h => h with { Timeout = TimeSpan.FromHours(1) });
        using var host = builder.Build();

        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Name == CairnHealthCheckExtensions.StorageCheck);
        Assert.Equal(HealthStatus.Healthy, report.Entries[CairnHealthCheckExtensions.StorageCheck].Status);
    }

    // Two routes of one name in one host would share one checkpoint: the one ahead would move it past events the other
    // has not published, which a restart would then skip. The second is refused where it is added (two subscriptions of
    // one name are refused when the host starts).
    [Fact]
    public void a_second_route_of_one_name_is_refused_where_it_is_added()
    {
        var cairn = new ServiceCollection().AddCairn(o => o.UseInMemory())
            .AddEventRoute("orders-out", Cairn.EventStore.EventFilter.ForCategory("order"), "orders");

        var refused = Assert.Throws<ArgumentException>(() => cairn.AddEventRoute("orders-out", Cairn.EventStore.EventFilter.ForCategory("order"), "shop"));
        Assert.Contains("route:orders-out", refused.Message, StringComparison.Ordinal);
    }
}
