using Cairn.Conformance.Support;
using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The projection leases at their edges: a lease whose connection is killed under a store with a clock of its own, and
/// a bad name refused through the task.
/// </summary>
public sealed class PostgresProjectionLeaseEdgeTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<IAsyncDisposable> _opened = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _opened.Count - 1; i >= 0; i--)
        {
            await _opened[i].DisposeAsync();
        }

        await PostgresServer.DropSchemaAsync(_schema);
    }

    private PostgresEventStore OpenStore(string applicationName, TimeProvider? clock = null)
    {
        var connectionString = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { ApplicationName = applicationName }.ConnectionString;
        var store = new PostgresEventStore(
            new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = _schema, ExternalCommitPollInterval = TimeSpan.FromMilliseconds(200) },
            new EventStoreOptions { TimeProvider = clock ?? TimeProvider.System, Source = "urn:test" });
        _opened.Add(store);
        return store;
    }

    /// <summary>
    /// An argument error "comes through the returned task, never thrown by the call itself" (docs/event-store.md).
    /// </summary>
    [Fact]
    public async Task Acquiring_a_lease_with_an_invalid_projection_name_fails_through_the_task()
    {
        var store = OpenStore("leases-" + _schema);
        var projections = new PostgresProjectionStore(store);
        _opened.Add(projections);

        await ThroughTask.RefusedAsync(() => projections.AcquireAsync("not a valid name!", default), typeof(ArgumentException));
    }

    /// <summary>
    /// "A connection that breaks or is killed (pg_terminate_backend) is found by the holder's check, a SELECT 1 on it
    /// every LeaseCheckInterval: its runners stop at once" (docs/postgres.md). The check runs on real time, as the
    /// server's session does, so a store whose <see cref="TimeProvider"/> stands still (a test clock, a clock the
    /// application drives) still finds it, and its holder never runs on beside the process that took the lease.
    /// </summary>
    [Fact]
    public async Task A_killed_lease_connection_is_found_whatever_the_store_clock_does()
    {
        var clock = new ManualTimeProvider();
        var holderStore = OpenStore("holder-" + _schema, clock);
        var holderProjections = new PostgresProjectionStore(holderStore) { LeaseCheckInterval = TimeSpan.FromMilliseconds(50) };
        _opened.Add(holderProjections);
        var otherProjections = new PostgresProjectionStore(OpenStore("other-" + _schema)) { LeaseCheckInterval = TimeSpan.FromMilliseconds(50) };
        _opened.Add(otherProjections);

        var lease = await holderProjections.AcquireAsync("tally", default).Bounded();
        var holder = Assert.Single(await PostgresServer.LeaseHoldersAsync(_schema, "tally"));
        await PostgresServer.ExecuteAsync($"SELECT pg_terminate_backend({holder})");

        // Another process takes the lease at once: the server released it with the session.
        await using var taken = await otherProjections.AcquireAsync("tally", default).WaitAsync(TimeSpan.FromSeconds(5));

        // The first holder must learn it lost it within a few check intervals (real time), not never.
        var lost = await Record.ExceptionAsync(() => Task.Delay(Timeout.Infinite, lease.Lost).WaitAsync(TimeSpan.FromSeconds(3)));
        Assert.IsAssignableFrom<OperationCanceledException>(lost);
    }
}
