using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Projections and snapshots hosted on the PostgreSQL backend through <c>UsePostgres</c>, by two hosts on one schema as
/// two processes of one application would be.
/// </summary>
public sealed class ProjectionHostingTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private readonly string _schema = PostgresServer.NewSchema();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => PostgresServer.DropSchemaAsync(_schema);

    [Fact]
    public async Task use_postgres_hosts_projections_and_snapshots_and_of_two_hosts_one_runs_a_projection_until_it_stops()
    {
        using var first = Host();
        using var second = Host();
        Assert.IsType<PostgresProjectionStore>(first.Services.GetRequiredService<IProjectionStore>());
        Assert.IsType<PostgresSnapshotStore>(first.Services.GetRequiredService<ISnapshotStore>());

        await first.StartAsync();
        var running = first.Services.GetRequiredService<ProjectionMonitor>().Find("tally")!;
        await Wait.UntilAsync(() => running.Status.State == ProjectionState.Live, "the first host runs the projection");
        await second.StartAsync();
        var standing = second.Services.GetRequiredService<ProjectionMonitor>().Find("tally")!;
        await Wait.UntilAsync(() => standing.Status.State == ProjectionState.Standby, "the second host stands by");

        await PlaceAsync(first, "1");
        var last = await PlaceAsync(second, "2");
        await second.Services.GetRequiredService<ProjectionMonitor>().WaitForAllAsync(last, Patience);
        Assert.Equal(2, (await second.Services.GetRequiredService<ReadModels>().LoadAsync<Tally>("all"))!.Events);

        // The first host stops: its runner gives the lease back, and the second takes the projection over.
        await first.StopAsync();
        await Wait.UntilAsync(() => standing.Status.State == ProjectionState.Live, "the second host takes the projection over");
        last = await PlaceAsync(second, "3");
        await second.Services.GetRequiredService<ProjectionMonitor>().WaitForAllAsync(last, Patience);
        Assert.Equal(3, (await second.Services.GetRequiredService<ReadModels>().LoadAsync<Tally>("all"))!.Events);
        await second.StopAsync();
    }

    private IHost Host()
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = _schema });
            o.EventTypes.Register<OrderPlaced>().Register<OrderLineAdded>().Register<OrderShipped>();
        }).AddProjection(new EventTally());
        return builder.Build();
    }

    private static async Task<GlobalPosition> PlaceAsync(IHost host, string orderId) =>
        (await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, "c-1", 10m)])).LastPosition;
}
