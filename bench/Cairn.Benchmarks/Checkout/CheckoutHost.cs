using Cairn.DependencyInjection;
using Cairn.Sqlite;
using Microsoft.Extensions.Hosting;

namespace Cairn.Benchmarks.Checkout;

/// <summary>
/// Cairn hosted as an application hosts it: a generic host, <c>AddCairn(o =&gt; o.UseSqlite(...))</c> with its defaults
/// (durability Full), the side's queues, consumers and workflow, started and stopped with the host.
/// </summary>
internal sealed class CheckoutHost : IAsyncDisposable
{
    private readonly IHost _host;

    private CheckoutHost(IHost host) => _host = host;

    public IServiceProvider Services => _host.Services;

    public static async Task<CheckoutHost> StartAsync(TempDatabase db, Action<CairnBuilder> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        configure(builder.Services.AddCairn(o =>
        {
            o.UseSqlite(db.ConnectionString);
            CheckoutOrders.Register(o.EventTypes);
            Choreography.Register(o.EventTypes);
        }));
        var host = new CheckoutHost(builder.Build());
        await host._host.StartAsync();
        return host;
    }

    public async ValueTask DisposeAsync()
    {
        using (var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            await _host.StopAsync(stop.Token);
        }

        if (_host is IAsyncDisposable async)
        {
            await async.DisposeAsync();
        }
        else
        {
            _host.Dispose();
        }
    }
}
