using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Sqlite.Tests;

/// <summary>A container that made Cairn's hosted services, disposed synchronously (a console app, a test).</summary>
public sealed class SynchronousDisposalTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    // The store is disposable synchronously so that such a container closes it; the hosted subscription and consumer
    // made from the same container are IAsyncDisposable only, so its Dispose throws at them and never reaches the
    // store made before them: the writer, its thread and the file stay open.
    [Fact]
    public async Task disposing_a_container_with_hosted_workers_synchronously_closes_the_sqlite_store()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseSqlite(_database.ConnectionString))
            .AddQueue("orders")
            .AddConsumer("orders", (_, _) => ValueTask.CompletedTask)
            .AddSubscription("audit", (_, _, _) => ValueTask.CompletedTask);
        var provider = services.BuildServiceProvider();
        var hosted = provider.GetServices<IHostedService>().ToList();
        foreach (var service in hosted)
        {
            await service.StartAsync(default).Bounded();
        }

        foreach (var service in Enumerable.Reverse(hosted))
        {
            await service.StopAsync(default).Bounded();
        }

        var error = Record.Exception(provider.Dispose);

        Assert.False(File.Exists(_database.Path + "-wal"), $"the SQLite store is still open after its container was disposed ({error?.Message})");
        Assert.Null(error);
    }
}
