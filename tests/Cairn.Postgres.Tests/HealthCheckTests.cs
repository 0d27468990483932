using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Cairn.Postgres.Tests;

/// <summary>The health checks over PostgreSQL, with a server of the test's own taken down and brought back.</summary>
public sealed class HealthCheckTests
{
    [Fact]
    public async Task the_storage_and_messaging_checks_are_unhealthy_while_the_server_is_down_and_healthy_once_it_is_back()
    {
        await using var server = await OwnPostgresServer.StartAsync();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddCairn(o => o.UsePostgres(server.ConnectionString)).AddQueue("orders");
        services.AddHealthChecks().AddCairn(h => h with { Timeout = TimeSpan.FromSeconds(2) });
        await using var provider = services.BuildServiceProvider();
        await provider.GetRequiredService<Messaging.IMessageBroker>().DeclareQueueAsync(new Messaging.QueueDefinition("orders"), default);
        var health = provider.GetRequiredService<HealthCheckService>();
        async Task<HealthReport> CheckAsync() =>
            await health.CheckHealthAsync(r => r.Name is CairnHealthCheckExtensions.StorageCheck or CairnHealthCheckExtensions.MessagingCheck);

        var up = await CheckAsync();
        Assert.Equal(HealthStatus.Healthy, up.Entries[CairnHealthCheckExtensions.StorageCheck].Status);
        Assert.Equal(HealthStatus.Healthy, up.Entries[CairnHealthCheckExtensions.MessagingCheck].Status);

        await server.HaltAsync();
        var down = await CheckAsync();
        Assert.Equal(HealthStatus.Unhealthy, down.Entries[CairnHealthCheckExtensions.StorageCheck].Status);
        Assert.StartsWith("The log does not answer: ", down.Entries[CairnHealthCheckExtensions.StorageCheck].Description);
        Assert.Equal(HealthStatus.Unhealthy, down.Entries[CairnHealthCheckExtensions.MessagingCheck].Status);
        Assert.StartsWith("queue 'orders': its statistics cannot be read", down.Entries[CairnHealthCheckExtensions.MessagingCheck].Description);

        // The pool's connections broke with the server; the checks recover as new ones open.
        await server.ResumeAsync();
        await Wait.UntilAsync(async () => (await CheckAsync()).Status == HealthStatus.Healthy, "both checks are healthy again");
    }
}
