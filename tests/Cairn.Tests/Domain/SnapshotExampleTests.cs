using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Cairn.Tests.Domain;

/// <summary>The example of docs/snapshots.md, run as written, and the in-memory backend's snapshot store.</summary>
public sealed class SnapshotExampleTests
{
    [Fact]
    public async Task the_documented_example_runs_and_loads_from_its_snapshot()
    {
        using var telemetry = new TelemetryRecorder(name => name == Cairn.Diagnostics.CairnDiagnostics.DomainName);
        var services = new ServiceCollection();

        // --- docs/snapshots.md ---
        services.AddCairn(o =>
        {
            o.UseInMemory();   // or o.UseSqlite("Data Source=cairn.db"): the snapshots go in the same file
            o.EventTypes.Register<AccountOpened>().Register<Deposited>().Register<Withdrawn>().Register<AccountClosed>();
        });
        await using var provider = services.BuildServiceProvider();

        var accounts = new DeciderHandler<AccountCommand, AccountState, AccountEvent>(
            provider.GetRequiredService<IEventStore>(),
            provider.GetRequiredService<ISnapshotStore>(),
            provider.GetRequiredService<EventSerializer>(),
            BankAccount.Decider,
            new DeciderHandlerOptions
            {
                Snapshots = new SnapshotPolicy { Kind = "account-docs", SchemaVersion = 1, Every = 100 },
            },
            provider.GetService<ILogger<DeciderHandler<AccountCommand, AccountState, AccountEvent>>>());

        var stream = StreamName.For("account", "alice");
        await accounts.HandleAsync(stream, new OpenAccount("alice"));
        for (var i = 0; i < 149; i++)
        {
            await accounts.HandleAsync(stream, new Deposit(1m));   // the 100th event is followed by a snapshot
        }

        var loaded = await accounts.LoadAsync(stream);              // the snapshot, then events 100 to 149
        await accounts.TakeSnapshotAsync(stream);                   // or take one now, at version 149
        // --- end of the example ---

        Assert.Equal(new LoadedState<AccountState>(new AccountState("alice", 149m, false), 149), loaded);
        var snapshot = await provider.GetRequiredService<ISnapshotStore>().LoadAsync(stream, "account-docs", default);
        Assert.Equal(149, snapshot!.StreamVersion);
        Assert.Equal(2, telemetry.Total("cairn.snapshots.taken|kind=account-docs"));
        Assert.Equal(52, telemetry.Total("cairn.snapshots.used|kind=account-docs"));
    }

    [Fact]
    public async Task the_in_memory_backend_supplies_one_snapshot_store()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        await using var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });

        var store = Assert.IsType<InMemorySnapshotStore>(provider.GetRequiredService<ISnapshotStore>());
        Assert.Same(store, provider.GetRequiredService<ISnapshotStore>());
    }
}
