using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Domain;
using Cairn.EventStore;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Sqlite.Tests;

/// <summary>What only the SQLite snapshot store can show: snapshots kept in the file, across reopening.</summary>
public sealed class SqliteSnapshotStoreTests
{
    private static readonly StreamName Account = "account-1";

    private static DeciderHandler<AccountCommand, AccountState, AccountEvent> Handler(IEventStore store, ISnapshotStore snapshots, Decider<AccountCommand, AccountState, AccountEvent>? decider = null) =>
        new(store, snapshots, BankAccount.Serializer(), decider ?? BankAccount.Decider, new DeciderHandlerOptions
        {
            Snapshots = new SnapshotPolicy { Kind = "account", SchemaVersion = 1, Every = 2 },
        });

    [Fact]
    public async Task a_snapshot_survives_reopening_the_file_and_is_used()
    {
        using var database = new TempDatabase();
        var options = new SqliteEventStoreOptions { ConnectionString = database.ConnectionString };
        using (var store = new SqliteEventStore(options))
        {
            var handler = Handler(store, new SqliteSnapshotStore(store));
            await handler.HandleAsync(Account, new OpenAccount("ada"));
            for (var i = 1; i <= 4; i++)
            {
                await handler.HandleAsync(Account, new Deposit(i));
            }
        }

        using var reopened = new SqliteEventStore(options);
        var snapshots = new SqliteSnapshotStore(reopened);
        var evolved = 0;
        var counting = BankAccount.Decider with
        {
            Evolve = (state, e) =>
            {
                evolved++;
                return BankAccount.Decider.Evolve(state, e);
            },
        };

        var loaded = await Handler(reopened, snapshots, counting).LoadAsync(Account);

        Assert.Equal(3, (await snapshots.LoadAsync(Account, "account", default))!.StreamVersion);
        Assert.Equal(new LoadedState<AccountState>(new AccountState("ada", 10m, false), 4), loaded);
        Assert.Equal(1, evolved);
    }

    [Fact]
    public async Task use_sqlite_supplies_a_snapshot_store_in_the_same_file()
    {
        using var database = new TempDatabase();
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseSqlite(database.ConnectionString));
        await using (var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true }))
        {
            var snapshots = Assert.IsType<SqliteSnapshotStore>(provider.GetRequiredService<ISnapshotStore>());
            Assert.Same(snapshots, provider.GetRequiredService<ISnapshotStore>());
            var handler = Handler(provider.GetRequiredService<IEventStore>(), snapshots);
            await handler.HandleAsync(Account, new OpenAccount("ada"));
            await handler.HandleAsync(Account, new Deposit(5m));
        }

        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        var stored = await new SqliteSnapshotStore(store).LoadAsync(Account, "account", default);
        Assert.Equal((1L, 0L, 1), (stored!.StreamVersion, stored.FirstVersion, stored.SchemaVersion));
        Assert.Equal((await store.ReadStreamAsync(Account).LastAsync()).Position, stored.Position);
    }

    [Fact]
    public async Task a_cancelled_save_writes_nothing()
    {
        using var database = new TempDatabase();
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        var snapshots = new SqliteSnapshotStore(store);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            await snapshots.SaveAsync(new StoredSnapshot(Account, "account", 1, 0, new GlobalPosition(2), 1, new byte[] { 1 }), cancelled.Token));

        Assert.Null(await snapshots.LoadAsync(Account, "account", default));
    }
}
