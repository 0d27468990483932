using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Snapshots are never a second truth: a state whose JSON would not bring back what it holds is refused where its
/// handler is made, and one that comes back whole loads as the fold does.
/// </summary>
public sealed class SnapshotStateTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    // A value tuple's items are fields, which the JSON options leave out: its snapshot was "{}", and a load returned
    // the initial state instead of the fold of the events.
    [Fact]
    public void A_value_tuple_state_is_refused_naming_its_items()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var decider = BankAccount.DeciderOf<(string? Owner, decimal Balance)>((s, owner) => (owner, s.Balance), (s, amount) => (s.Owner, s.Balance + amount), (null, 0m));

        var refused = Assert.Throws<SnapshotSerializationException>(() => new DeciderHandler<AccountCommand, (string? Owner, decimal Balance), AccountEvent>(store, new SqliteSnapshotStore(store), BankAccount.Serializer(), decider, BankAccount.Snapshotted));

        Assert.Contains("Item1, Item2", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_state_with_a_getter_only_or_privately_set_stored_property_is_refused_naming_it()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var decider = BankAccount.DeciderOf(HiddenBalance.Open, HiddenBalance.Deposit, new HiddenBalance());

        var refused = Assert.Throws<SnapshotSerializationException>(() => new DeciderHandler<AccountCommand, HiddenBalance, AccountEvent>(store, new SqliteSnapshotStore(store), BankAccount.Serializer(), decider, BankAccount.Snapshotted));

        Assert.Contains("Balance, Entries", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Total", refused.Message, StringComparison.Ordinal);
    }

    // A record with a list and a computed property comes back whole: it is taken, and a load from it is the fold.
    [Fact]
    public async Task A_state_that_comes_back_whole_loads_from_its_snapshot_as_the_fold()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var snapshots = new SqliteSnapshotStore(store);
        var decider = BankAccount.DeciderOf(
            (Ledger s, string owner) => s with { Owner = owner },
            (s, amount) => s with { Entries = [.. s.Entries, amount] },
            new Ledger(null, []));
        var handler = new DeciderHandler<AccountCommand, Ledger, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        StreamName stream = "account-1";
        await handler.HandleAsync(stream, new OpenAccount("ada"));
        await handler.HandleAsync(stream, new Deposit(5m));
        await handler.HandleAsync(stream, new Deposit(7m));

        var loaded = await handler.LoadAsync(stream);
        var folded = await new DeciderHandler<AccountCommand, Ledger, AccountEvent>(store, BankAccount.Serializer(), decider).LoadAsync(stream);

        Assert.NotNull(await snapshots.LoadAsync(stream, "account", default));
        Assert.Equal(("ada", 12m, 2L), (loaded.State.Owner, loaded.State.Total, loaded.Version));
        Assert.Equal(folded.State.Entries, loaded.State.Entries);
    }

    // An internal auto-property is left out of the JSON, so no read-back comparison could see it go: its snapshot loaded
    // a balance of 0 where the fold gave 10. It is refused where the handler is made, naming it.
    [Fact]
    public void A_state_with_a_non_public_stored_property_is_refused_naming_it()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var decider = BankAccount.DeciderOf<Guarded>((s, owner) => s with { Owner = owner }, (s, amount) => s with { Balance = s.Balance + amount }, new Guarded(null));

        var refused = Assert.Throws<SnapshotSerializationException>(() => new DeciderHandler<AccountCommand, Guarded, AccountEvent>(store, new SqliteSnapshotStore(store), BankAccount.Serializer(), decider, BankAccount.Snapshotted));

        Assert.Contains(": Balance.", refused.Message, StringComparison.Ordinal);
    }

    // A nullable value is boxed as its underlying type, which the save took for an undeclared derived type of
    // Nullable<Tally>: every snapshot was refused, and with Every only logged.
    [Fact]
    public async Task A_nullable_value_type_state_is_snapshotted_and_loads_as_the_fold()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var snapshots = new SqliteSnapshotStore(store);
        var decider = BankAccount.DeciderOf<Tally?>((s, owner) => new Tally(owner, s?.Balance ?? 0m), (s, amount) => new Tally(s?.Owner, (s?.Balance ?? 0m) + amount), null);
        var handler = new DeciderHandler<AccountCommand, Tally?, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        StreamName stream = "account-1";
        await handler.HandleAsync(stream, new OpenAccount("ada"));
        await handler.HandleAsync(stream, new Deposit(5m));

        var taken = await handler.TakeSnapshotAsync(stream);

        Assert.Equal(1L, taken?.StreamVersion);
        Assert.Equal(new Tally("ada", 5m), (await handler.LoadAsync(stream)).State);
    }

    // A collection's contract writes its items whatever the collection's own type: a state declared as
    // IReadOnlyList<decimal> was refused at every save for holding a concrete list, with advice to declare that list as a
    // derived type of the interface, which cannot be done.
    [Fact]
    public async Task A_state_declared_as_a_collection_interface_is_snapshotted_and_loads_as_the_fold()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var snapshots = new SqliteSnapshotStore(store);
        var decider = BankAccount.DeciderOf<IReadOnlyList<decimal>>((s, _) => s, (s, amount) => [.. s, amount], []);
        var handler = new DeciderHandler<AccountCommand, IReadOnlyList<decimal>, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        StreamName stream = "account-1";
        await handler.HandleAsync(stream, new Deposit(1m));
        await handler.HandleAsync(stream, new Deposit(2m));

        var taken = await handler.TakeSnapshotAsync(stream);

        Assert.Equal(1L, taken?.StreamVersion);
        Assert.Equal([1m, 2m], (await handler.LoadAsync(stream)).State);
    }

    // A null state (here an account opened for "gone") was saved as JSON null, and every later load passed it over as
    // unreadable, with a warning. It is not saved; the snapshot before it stands, and the load folds on from there.
    [Fact]
    public async Task A_null_state_is_not_snapshotted_and_loads_as_the_fold()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var snapshots = new SqliteSnapshotStore(store);
        var decider = BankAccount.DeciderOf<Ledger?>((_, owner) => owner == "gone" ? null : new Ledger(owner, []), (s, amount) => s is null ? null : s with { Entries = [.. s.Entries, amount] }, null);
        var handler = new DeciderHandler<AccountCommand, Ledger?, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        StreamName stream = "account-1";
        await handler.HandleAsync(stream, new OpenAccount("ada"));
        var first = await handler.TakeSnapshotAsync(stream);
        await handler.HandleAsync(stream, new OpenAccount("gone"));

        var taken = await handler.TakeSnapshotAsync(stream);

        Assert.Null(taken);
        Assert.Equal(first!.StreamVersion, (await snapshots.LoadAsync(stream, "account", default))!.StreamVersion);
        var loaded = await handler.LoadAsync(stream);
        Assert.Null(loaded.State);
        Assert.Equal(1L, loaded.Version);
    }

    public readonly record struct Tally(string? Owner, decimal Balance);

    public sealed record Guarded(string? Owner)
    {
        internal decimal Balance { get; init; }
    }

    public sealed record Ledger(string? Owner, List<decimal> Entries)
    {
        public decimal Total => Entries.Sum();
    }

    public sealed class HiddenBalance
    {
        public string? Owner { get; init; }

        public decimal Balance { get; private set; }

        public List<decimal> Entries { get; } = [];

        public decimal Total => Entries.Sum();

        public static HiddenBalance Open(HiddenBalance state, string owner) => new() { Owner = owner, Balance = state.Balance };

        public static HiddenBalance Deposit(HiddenBalance state, decimal amount)
        {
            var next = new HiddenBalance { Owner = state.Owner, Balance = state.Balance + amount };
            next.Entries.AddRange([.. state.Entries, amount]);
            return next;
        }
    }
}
