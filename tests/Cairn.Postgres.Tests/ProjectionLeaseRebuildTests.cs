using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Postgres.Child;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Leases and rebuilds across processes: a rebuild asked of a process that stands by, or of one that loses the lease
/// before the switch; a process of older code taking the lease; leases of different projections whose names hashed
/// alike in 32 bits.
/// </summary>
public sealed class ProjectionLeaseRebuildTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            try
            {
                await _owned[i].DisposeAsync();
            }
            catch (Exception)
            {
                // Best effort: the schema goes below anyway.
            }
        }

        await PostgresServer.DropSchemaAsync(_schema);
    }

    [Fact]
    public async Task A_rebuild_asked_of_a_runner_standing_by_is_refused_naming_the_reason()
    {
        var first = await StartProcessAsync();
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        var second = await StartProcessAsync();
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");
        await first.Runner.WaitForPositionAsync(await first.PlaceAsync("o1"), Patience);

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => second.Runner.RebuildAsync());
        Assert.Contains("stands by", refused.Message, StringComparison.Ordinal);

        // The process holding the lease rebuilds it.
        await first.Runner.RebuildAsync().Bounded();
        Assert.Null(first.Runner.Status.Rebuild);
    }

    [Fact]
    public async Task A_rebuild_whose_runner_loses_its_lease_before_the_switch_fails_at_once_and_stops_reporting_it_while_the_new_holder_finishes_it()
    {
        var (first, second, rebuild) = await RebuildThenLoseTheLeaseAsync();

        var lost = await Assert.ThrowsAsync<InvalidOperationException>(() => rebuild.Bounded());
        Assert.Contains("lost its lease", lost.Message, StringComparison.Ordinal);
        Assert.Equal(ProjectionState.Standby, first.Runner.Status.State);
        Assert.Null(first.Runner.Status.Rebuild);

        // The shadow is the new holder's to finish: it switches, and both processes follow the new build.
        var position = await second.PlaceAsync("o3");
        await second.Runner.WaitForPositionAsync(position, Patience);
        await first.Runner.WaitForPositionAsync(position, Patience);
        var tally = await second.ReadModels.LoadAsync<Tally>("all");
        Assert.Equal(4, tally!.Events);
    }

    /// <summary>
    /// The first process rebuilds; its shadow's first batch is held in a handler while its lease connection is killed;
    /// the second process takes the lease and finishes the rebuild (switching to that shadow).
    /// </summary>
    private async Task<(Process First, Process Second, Task Rebuild)> RebuildThenLoseTheLeaseAsync()
    {
        var first = await StartProcessAsync(new GatedTally());
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        await first.PlaceAsync("o1");
        await first.PlaceAsync("gate");
        await first.Runner.WaitForPositionAsync(await first.PlaceAsync("o2"), Patience);
        var second = await StartProcessAsync(new GatedTally());
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");

        var gated = (GatedTally)first.Projection;
        gated.Gate = new ManualResetEventSlim(false);
        var rebuild = first.Runner.RebuildAsync();
        await Wait.UntilAsync(() => gated.Blocked, "the rebuild's batch is in the handler");

        // A lease of another projection, on the first process's lease connection: it is lost with the runner's.
        await using var probe = await first.Projections.AcquireAsync("probe", default).Bounded();
        foreach (var pid in await PostgresServer.LeaseHoldersAsync(_schema, GatedTally.ProjectionName))
        {
            await PostgresServer.ExecuteAsync($"SELECT pg_terminate_backend({pid})");
        }

        // The handler goes on once the first process knows its lease is lost (its next lease check) and the second holds
        // it. Let go before that check, the batch would commit and the rebuild switch there, still rightly (the
        // positions each batch expects keep an event from being applied twice), but not the case this test is about.
        await Wait.UntilAsync(() => probe.Lost.IsCancellationRequested, "the first process found its lease connection broken");
        await Wait.UntilAsync(() => second.Runner.Status.State is ProjectionState.CatchingUp or ProjectionState.Live, "the second process holds the lease");
        gated.Gate.Set();
        await Wait.UntilAsync(async () => await BuildsAsync(GatedTally.ProjectionName) == 1 && second.Runner.Status.Rebuild is null, "the rebuild has switched");
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Live, "the second process runs the projection");
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Standby, "the first process stands by");
        return (first, second, rebuild);
    }

    [Fact]
    public async Task During_a_rolling_deployment_a_process_of_the_old_version_taking_the_lease_refuses_it_and_lets_it_go()
    {
        // Version 1 was deployed with RebuildOnVersionChange (as version 2 needs it, it is on from the start).
        var old = await StartProcessAsync(new OrderSummaries("rolling") { Version = 1, RebuildOnVersionChange = true });
        await Wait.UntilAsync(() => old.Runner.Status.State == ProjectionState.Live, "version 1 runs");
        await old.Runner.WaitForPositionAsync(await old.PlaceAsync("o1"), Patience);
        await old.Runner.StopAsync(default);

        // The new process (version 2) takes the lease, rebuilds and switches to version 2.
        var upgraded = await StartProcessAsync(new OrderSummaries("rolling") { Version = 2, RebuildOnVersionChange = true });
        await Wait.UntilAsync(() => upgraded.Runner.Status is { State: ProjectionState.Live, ServingVersion: 2, Rebuild: null }, "version 2 serves");

        // An old process still running the old code stands by; the new one restarts (its deployment goes on).
        await old.Runner.StartAsync(default);
        await Wait.UntilAsync(() => old.Runner.Status.State == ProjectionState.Standby, "version 1 stands by");
        await upgraded.Runner.StopAsync(default);
        await Wait.UntilAsync(() => old.Runner.Status.State == ProjectionState.Failed, "version 1 takes the lease and refuses the projection");
        Assert.Contains(nameof(ProjectionVersionNewerException), old.Runner.Status.LastError, StringComparison.Ordinal);

        // It let the lease go: the new code takes it again and goes on with its read model, still version 2's.
        await upgraded.Runner.StartAsync(default);
        var position = await old.PlaceAsync("o2");
        await upgraded.Runner.WaitForPositionAsync(position, Patience);
        await Wait.UntilAsync(() => upgraded.Runner.Status.State == ProjectionState.Live, "version 2 runs it again");
        Assert.Equal(2, upgraded.Runner.Status.ServingVersion);
        Assert.Equal(2, await upgraded.ReadModels.Query<OrderSummary>().CountAsync());
    }

    [Fact]
    public async Task Two_different_projections_run_in_two_processes_even_when_their_lease_keys_collide()
    {
        // Two projection names of this schema whose lease keys collided when they were 32-bit hashes (found by trying
        // names; with a schema per tenant, thousands of schemas with a few dozen projections each made such pairs all
        // but certain).
        var seen = new Dictionary<int, string>();
        string? a = null, b = null;
        for (var i = 0; a is null; i++)
        {
            var name = "p-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var key = PostgresSchema.SchemaKey(_schema + "/" + name);
            if (seen.TryGetValue(key, out var other))
            {
                (a, b) = (other, name);
            }

            seen[key] = name;
        }

        var first = await StartProcessAsync(new OrderSummaries(a));
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, $"the first process runs '{a}'");

        // Another process (another service) runs only the other projection: nothing else holds its lease.
        var second = await StartProcessAsync(new OrderSummaries(b!));
        var position = await second.PlaceAsync("o1");
        await second.Runner.WaitForPositionAsync(position, Patience);
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Live, $"projection '{b}' runs in the second process");
        Assert.NotEqual(PostgresSchema.ProjectionLeaseKey(_schema, a), PostgresSchema.ProjectionLeaseKey(_schema, b!));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers.
    // ---------------------------------------------------------------------------------------------------------------

    private (PostgresEventStore Store, PostgresProjectionStore Projections) Open(TimeSpan? leaseCheck = null)
    {
        var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        var projections = new PostgresProjectionStore(store) { LeaseCheckInterval = leaseCheck ?? TimeSpan.FromMilliseconds(100) };
        _owned.Add(store);
        _owned.Add(projections);
        return (store, projections);
    }

    private ProjectionRunner Runner(Projection projection, IEventStore store, IProjectionStore projections)
    {
        var runner = new ProjectionRunner(projection, store, projections, Orders.Serializer());
        _owned.Add(runner);
        return runner;
    }

    private async Task<Process> StartProcessAsync(Projection? projection = null)
    {
        var (store, projections) = Open();
        var process = new Process(store, projections, projection ?? new LeasedTally());
        _owned.Add(process.Runner);
        await process.Runner.StartAsync(default);
        return process;
    }

    private sealed class Process(PostgresEventStore store, PostgresProjectionStore projections, Projection projection)
    {
        public PostgresEventStore Store { get; } = store;

        public PostgresProjectionStore Projections { get; } = projections;

        public Projection Projection { get; } = projection;

        public ProjectionRunner Runner { get; } = new(projection, store, projections, Orders.Serializer());

        public ReadModels ReadModels { get; } = new(projections, Orders.Serializer(), [projection]);

        public async Task<GlobalPosition> PlaceAsync(string orderId, string customer = "c-1", decimal total = 10m) =>
            (await Store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, customer, total)], default)).LastPosition;
    }

    private async Task<long> BuildsAsync(string projection)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM \"{_schema}\".projection_builds WHERE projection = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = projection });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>A tally of placed orders whose handler can be held at the order "gate".</summary>
    private sealed class GatedTally : Projection
    {
        public const string ProjectionName = "gated-tally";

        private volatile bool _blocked;

        public GatedTally()
            : base(ProjectionName)
        {
            Document<Tally>(t => t.Id);
            On<OrderPlaced>((ctx, e) =>
            {
                if (e.OrderId == "gate" && Gate is { } gate)
                {
                    _blocked = true;
                    gate.Wait();
                }

                var tally = ctx.Documents.Load<Tally>("all") ?? new Tally("all", 0, 0);
                ctx.Documents.Store(tally with { Events = tally.Events + 1, LastPosition = ctx.Event.Position.Value });
            });
        }

        public ManualResetEventSlim? Gate { get; set; }

        public bool Blocked => _blocked;
    }

}
