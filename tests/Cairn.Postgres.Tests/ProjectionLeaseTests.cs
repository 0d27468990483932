using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Postgres.Child;
using Cairn.Projections;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Several processes on one schema (here, stores of their own, each with its own connections) host the same async
/// projection: the one holding the projection's lease runs it, the others stand by and take over when it dies.
/// </summary>
public sealed class ProjectionLeaseTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = Wait.Timeout;

    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<Process> _processes = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }

        await PostgresServer.DropSchemaAsync(_schema);
    }

    [Fact]
    public async Task Only_the_process_holding_the_lease_applies_and_the_other_stands_by_following_its_position()
    {
        var first = await StartAsync();
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        var second = await StartAsync();
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");

        // Appends from both processes; the standing-by runner still serves read-your-writes waits.
        GlobalPosition last = default;
        for (var i = 0; i < 10; i++)
        {
            last = await (i % 2 == 0 ? first : second).PlaceAsync($"o{i}");
        }

        await second.Runner.WaitForPositionAsync(last, Patience);
        await first.Runner.WaitForPositionAsync(last, Patience);

        Assert.Equal(10, first.Projection.Applied);
        Assert.Equal(0, second.Projection.Applied);
        Assert.Equal(ProjectionState.Standby, second.Runner.Status.State);
        await AssertAppliedOnceAsync(second, events: 10, last);
    }

    // The holder moves past an event its projection does not handle without storing a position, and the process
    // standing by followed the stored position only: a wait there for an append of an unhandled type timed out (until
    // a later handled event was applied), where the holder's own wait returned at once. The follower also knows the head.
    [Fact]
    public async Task A_process_standing_by_follows_past_events_the_projection_does_not_handle()
    {
        var first = await StartAsync();
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        var second = await StartAsync();
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");
        await second.Runner.WaitForPositionAsync(await second.PlaceAsync("o1"), Patience);

        var noted = (await second.Store.AppendToStreamAsync(Orders.Stream("o1"), ExpectedVersion.Any, [Orders.Serializer().ToEventData(new OrderNoted("o1", "gift wrap"))], default)).LastPosition;

        await first.Runner.WaitForPositionAsync(noted, Patience);
        await second.Runner.WaitForPositionAsync(noted, Patience);
        Assert.Equal(noted, second.Runner.Status.Head);
        Assert.Equal(1, first.Projection.Applied);
    }

    [Fact]
    public async Task When_the_process_holding_the_lease_stops_another_takes_over_where_it_stopped()
    {
        var first = await StartAsync();
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        var second = await StartAsync();
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");
        for (var i = 0; i < 5; i++)
        {
            await first.Runner.WaitForPositionAsync(await first.PlaceAsync($"o{i}"), Patience);
        }

        await first.DisposeAsync();
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Live, "the second process takes the projection over");
        GlobalPosition last = default;
        for (var i = 5; i < 10; i++)
        {
            last = await second.PlaceAsync($"o{i}");
        }

        await second.Runner.WaitForPositionAsync(last, Patience);
        Assert.Equal(5, first.Projection.Applied);
        Assert.Equal(5, second.Projection.Applied);
        await AssertAppliedOnceAsync(second, events: 10, last);
    }

    [Fact]
    public async Task When_the_connection_holding_the_lease_is_killed_the_lease_passes_on_and_no_event_is_applied_twice()
    {
        var first = await StartAsync();
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        var second = await StartAsync();
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");
        for (var i = 0; i < 5; i++)
        {
            await first.PlaceAsync($"o{i}");
        }

        var holder = Assert.Single(await PostgresServer.LeaseHoldersAsync(_schema, LeasedTally.ProjectionName));
        await PostgresServer.ExecuteAsync($"SELECT pg_terminate_backend({holder})");

        // Events keep coming while the lease is lost and taken again, by whichever process tries first.
        GlobalPosition last = default;
        for (var i = 5; i < 20; i++)
        {
            last = await second.PlaceAsync($"o{i}");
        }

        await Wait.UntilAsync(async () => await PostgresServer.LeaseHoldersAsync(_schema, LeasedTally.ProjectionName) is [var pid] && pid != holder, "another connection holds the lease");
        await second.Runner.WaitForPositionAsync(last, Patience);
        await first.Runner.WaitForPositionAsync(last, Patience);
        await Wait.UntilAsync(
            () => (first.Runner.Status.State, second.Runner.Status.State) is (ProjectionState.Live, ProjectionState.Standby) or (ProjectionState.Standby, ProjectionState.Live),
            "one process runs the projection and the other stands by");
        await AssertAppliedOnceAsync(second, events: 20, last);
    }

    [Fact]
    public async Task When_the_process_running_the_projection_is_killed_another_takes_over_and_no_event_is_applied_twice()
    {
        var lines = new List<string>();
        using var child = StartChild(lines);
        try
        {
            await Wait.UntilAsync(() => Has(lines, "live"), "the child process runs the projection");
            var second = await StartAsync();
            await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "this process stands by");

            GlobalPosition last = default;
            for (var i = 0; i < 10; i++)
            {
                last = await second.PlaceAsync($"o{i}");
            }

            // Killed while it runs the projection: its lease connection dies with it, and this process takes over.
            await Wait.UntilAsync(() => Has(lines, "applied ", minimum: 1), "the child applying events");
            child.Kill();
            await child.WaitForExitAsync().WaitAsync(Patience);
            for (var i = 10; i < 20; i++)
            {
                last = await second.PlaceAsync($"o{i}");
            }

            await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Live, "this process takes the projection over");
            await second.Runner.WaitForPositionAsync(last, Patience);
            await AssertAppliedOnceAsync(second, events: 20, last);
            Assert.True(second.Projection.Applied > 0, "the survivor applied nothing after the kill");
        }
        finally
        {
            if (!child.HasExited)
            {
                child.Kill();
            }
        }
    }

    /// <summary>Whether the child printed <paramref name="prefix"/> (with a count of at least <paramref name="minimum"/> after it).</summary>
    private static bool Has(List<string> lines, string prefix, long minimum = 0)
    {
        lock (lines)
        {
            return lines.Any(l => l.StartsWith(prefix, StringComparison.Ordinal)
                && (minimum == 0 || long.Parse(l.AsSpan(prefix.Length), System.Globalization.CultureInfo.InvariantCulture) >= minimum));
        }
    }

    /// <summary>Starts a child process that hosts the projection on the test's schema; its lines go to <paramref name="lines"/>.</summary>
    private System.Diagnostics.Process StartChild(List<string> lines)
    {
        var start = ChildProcess.StartInfo(typeof(LeasedTally).Assembly.Location, "project", PostgresServer.ConnectionString, _schema);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;

        var child = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException("The child process did not start.");
        child.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                lock (lines)
                {
                    lines.Add(line);
                }
            }
        };
        child.ErrorDataReceived += (_, _) => { };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        return child;
    }

    [Fact]
    public async Task An_inline_projection_run_by_one_process_is_applied_by_the_appends_of_the_other_in_their_transaction()
    {
        var first = await StartAsync(ProjectionLifecycle.Inline);
        await Wait.UntilAsync(() => first.Runner.Status.State == ProjectionState.Live, "the first process runs the projection");
        var second = await StartAsync(ProjectionLifecycle.Inline);
        await Wait.UntilAsync(() => second.Runner.Status.State == ProjectionState.Standby, "the second process stands by");

        // No wait: each append has applied the projection before it returns, whichever process made it.
        for (var i = 0; i < 6; i++)
        {
            var process = i % 2 == 0 ? second : first;
            var position = await process.PlaceAsync($"o{i}");
            await AssertAppliedOnceAsync(second, events: i + 1, position);
        }

        Assert.Equal(3, first.Projection.Applied);
        Assert.Equal(3, second.Projection.Applied);
    }

    [Fact]
    public async Task A_lease_cannot_be_taken_twice_and_is_free_once_released()
    {
        var first = await StartProcessAsync();
        var second = await StartProcessAsync();
        await using (var lease = await first.Projections.AcquireAsync("leased", default))
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second.Projections.AcquireAsync("leased", cancel.Token));
            Assert.False(lease.Lost.IsCancellationRequested);

            // Another projection's lease is free.
            await using var other = await second.Projections.AcquireAsync("other", default).Bounded();
        }

        await using var taken = await second.Projections.AcquireAsync("leased", default).Bounded();
        Assert.False(taken.Lost.IsCancellationRequested);
    }

    private async Task AssertAppliedOnceAsync(Process process, long events, GlobalPosition last)
    {
        // EventTally throws on an event it has applied already, so a second application would have failed the runner.
        var tally = await process.ReadModels.LoadAsync<Tally>("all");
        Assert.NotNull(tally);
        Assert.Equal(events, tally.Events);
        Assert.Equal(last.Value, tally.LastPosition);
    }

    private async Task<Process> StartAsync(ProjectionLifecycle lifecycle = ProjectionLifecycle.Async)
    {
        var process = await StartProcessAsync(lifecycle);
        await process.Runner.StartAsync(default);
        return process;
    }

    private Task<Process> StartProcessAsync(ProjectionLifecycle lifecycle = ProjectionLifecycle.Async)
    {
        var process = new Process(_schema, lifecycle);
        _processes.Add(process);
        return Task.FromResult(process);
    }

    /// <summary>What one process of the application holds: its store, projection store and runner.</summary>
    private sealed class Process : IAsyncDisposable
    {
        private bool _disposed;

        public Process(string schema, ProjectionLifecycle lifecycle)
        {
            Store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema });
            Projections = new PostgresProjectionStore(Store) { LeaseCheckInterval = TimeSpan.FromMilliseconds(100) };
            Projection = new LeasedTally { Lifecycle = lifecycle };
            Runner = new ProjectionRunner(Projection, Store, Projections, Orders.Serializer());
            ReadModels = new ReadModels(Projections, Orders.Serializer(), [Projection]);
        }

        public PostgresEventStore Store { get; }

        public PostgresProjectionStore Projections { get; }

        public LeasedTally Projection { get; }

        public ProjectionRunner Runner { get; }

        public ReadModels ReadModels { get; }

        public async Task<GlobalPosition> PlaceAsync(string orderId) =>
            (await Store.AppendToStreamAsync(Orders.Stream(orderId), ExpectedVersion.Any, [Orders.Placed(orderId, "c-1", 10m)], default)).LastPosition;

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await Runner.DisposeAsync();
            await Projections.DisposeAsync();
            await Store.DisposeAsync();
        }
    }
}
