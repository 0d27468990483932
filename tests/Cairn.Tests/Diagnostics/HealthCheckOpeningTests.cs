using Cairn.DependencyInjection;
using Cairn.EventStore.InMemory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Diagnostics;

/// <summary>The health checks when the store or the broker they read takes long to open: they still end within their time-out.</summary>
public sealed class HealthCheckOpeningTests
{
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromMilliseconds(200);

    private static Task<(bool Ended, TimeSpan Elapsed, Task<HealthReport> Check)> RunAsync(IHost host, string name, TimeSpan within) =>
        HealthCheckTimeoutTests.RunAsync(host, name, within);

    // The storage check's first resolution of the reader opens the store (SQLite opens and migrates its file there,
    // waiting up to BusyTimeout on another process's lock): an opening that blocks must not hold the check past its
    // time-out, nor past the registration's backstop (the wait is synchronous and looks at no token).
    [Fact]
    public async Task the_storage_check_of_a_store_whose_opening_blocks_ends_within_its_time_out()
    {
        using var gate = new ManualResetEventSlim();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UseBackend(
            "opening",
            (_, options) =>
            {
                // As SQLite's store opening its file under another process's write lock: at most BusyTimeout.
                gate.Wait(TimeSpan.FromSeconds(30), CancellationToken.None);
                return new InMemoryEventStore(options);
            },
            _ => new Subscriptions.InMemoryCheckpointStore()));
        builder.Services.AddHealthChecks().AddCairn(h => h with { Timeout = CheckTimeout });
        using var host = builder.Build();
        try
        {
            var (ended, elapsed, check) = await RunAsync(host, CairnHealthCheckExtensions.StorageCheck, TimeSpan.FromSeconds(5));
            gate.Set();
            var entry = (await check.WaitAsync(TimeSpan.FromSeconds(60))).Entries[CairnHealthCheckExtensions.StorageCheck];
            Assert.True(ended, $"the check with Timeout {CheckTimeout} was still running after {elapsed}; it then reported {entry.Status}: {entry.Description}");
            Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        }
        finally
        {
            gate.Set();
        }
    }

    // The messaging check's first resolution of the broker opens it (the backend's broker wrapped by the transport;
    // SQLite's opens the store, a transport may connect): a creation that blocks must not hold the check either.
    [Fact]
    public async Task the_messaging_check_of_a_broker_whose_creation_blocks_ends_within_its_time_out()
    {
        using var gate = new ManualResetEventSlim();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UseInMemory().UseTransport("connecting", (_, inner) =>
        {
            gate.Wait(TimeSpan.FromSeconds(30), CancellationToken.None);
            return inner;
        })).AddQueue("orders");
        builder.Services.AddHealthChecks().AddCairn(h => h with { Timeout = CheckTimeout });
        using var host = builder.Build();
        try
        {
            var (ended, elapsed, check) = await RunAsync(host, CairnHealthCheckExtensions.MessagingCheck, TimeSpan.FromSeconds(5));
            gate.Set();
            var entry = (await check.WaitAsync(TimeSpan.FromSeconds(60))).Entries[CairnHealthCheckExtensions.MessagingCheck];
            Assert.True(ended, $"the check with Timeout {CheckTimeout} was still running after {elapsed}; it then reported {entry.Status}: {entry.Description}");
            Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        }
        finally
        {
            gate.Set();
        }
    }
}
