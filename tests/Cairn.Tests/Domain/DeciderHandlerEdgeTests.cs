using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests.Domain;

/// <summary>A decider handler's loads at the edges of versions and state types, and its constructor's arguments.</summary>
public sealed class DeciderHandlerEdgeTests
{
    private static readonly StreamName Account = "account-1";

    // Without snapshots a version past the stream's end loads the current state; with a snapshot at version 0 the count
    // of events after it (version asked - snapshot's + 1) overflowed for long.MaxValue and the load threw.
    [Fact]
    public async Task A_load_as_of_the_largest_version_with_a_snapshot_at_version_0_loads_the_current_state()
    {
        var store = new InMemoryEventStore();
        var snapshots = new InMemorySnapshotStore();
        var options = new DeciderHandlerOptions { Snapshots = new SnapshotPolicy { Kind = "account", SchemaVersion = 1, Every = 1 } };
        var handler = new DeciderHandler<AccountCommand, AccountState, AccountEvent>(store, snapshots, BankAccount.Serializer(), BankAccount.Decider, options);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        Assert.Equal(0, (await snapshots.LoadAsync(Account, "account", default))?.StreamVersion);

        var plain = await new DeciderHandler<AccountCommand, AccountState, AccountEvent>(store, BankAccount.Serializer(), BankAccount.Decider).LoadAsOfVersionAsync(Account, long.MaxValue);
        var loaded = await handler.LoadAsOfVersionAsync(Account, long.MaxValue);

        Assert.Equal(0, plain.Version);
        Assert.Equal(plain, loaded);
    }

    [Fact]
    public void Missing_arguments_are_refused_by_name()
    {
        var store = new InMemoryEventStore();
        Assert.Equal("serializer", Assert.Throws<ArgumentNullException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(store, new InMemorySnapshotStore(), null!, BankAccount.Decider, BankAccount.Snapshotted)).ParamName);
        Assert.Equal("store", Assert.Throws<ArgumentNullException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(null!, BankAccount.Serializer(), BankAccount.Decider)).ParamName);
        Assert.Equal("decider", Assert.Throws<ArgumentNullException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(store, BankAccount.Serializer(), null!)).ParamName);
    }

    private record Ledger(string? Owner, decimal Balance);

    private sealed record VipLedger(string? Owner, decimal Balance) : Ledger(Owner, Balance);

    // A state machine of records: the state type's contract writes a derived state as the base type, dropping what the
    // derived type adds, so its snapshot would load another state than the events fold to. It is not saved: the
    // command succeeds, the load folds, and a snapshot asked for by hand is refused naming the derived type.
    [Fact]
    public async Task A_state_of_a_derived_type_its_contract_does_not_declare_is_not_snapshotted_and_loads_as_the_fold()
    {
        var decider = BankAccount.DeciderOf<Ledger>(
            (state, owner) => new Ledger(owner, state.Balance),
            (state, amount) => state.Balance + amount >= 100m ? new VipLedger(state.Owner, state.Balance + amount) : new Ledger(state.Owner, state.Balance + amount),
            new Ledger(null, 0m));
        var store = new InMemoryEventStore();
        var snapshots = new InMemorySnapshotStore();
        var handler = new DeciderHandler<AccountCommand, Ledger, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        var handled = await handler.HandleAsync(Account, new Deposit(100m));
        Assert.IsType<VipLedger>(handled.State);

        var folded = await new DeciderHandler<AccountCommand, Ledger, AccountEvent>(store, BankAccount.Serializer(), decider).LoadAsync(Account);
        var loaded = await handler.LoadAsync(Account);
        Assert.IsType<VipLedger>(folded.State);
        Assert.Equal(folded.State, loaded.State);

        var refused = await Assert.ThrowsAsync<SnapshotSerializationException>(() => handler.TakeSnapshotAsync(Account));
        Assert.Equal(typeof(VipLedger), refused.DerivedType);
        Assert.True((await snapshots.LoadAsync(Account, "account", default))?.StreamVersion is null or < 1);
    }

    /// <summary>A balance kept in a hand-written field: the property reads it, and no constructor parameter fills it from JSON.</summary>
    private sealed class HandWritten
    {
        private readonly decimal _balance;

        [System.Text.Json.Serialization.JsonConstructor]
        public HandWritten(string? owner) => Owner = owner;

        public HandWritten(string? owner, decimal balance)
            : this(owner) => _balance = balance;

        public string? Owner { get; }

        public decimal Balance => _balance;

        public override bool Equals(object? obj) => obj is HandWritten other && other.Owner == Owner && other.Balance == Balance;

        public override int GetHashCode() => HashCode.Combine(Owner, Balance);
    }

    // A property over a hand-written field looks computed to the contract check (no auto-property backing field), but
    // its value does not come back from the JSON: the snapshot is refused when saved, so a load folds the events.
    [Fact]
    public async Task A_state_whose_json_does_not_come_back_as_it_was_is_not_snapshotted_and_loads_as_the_fold()
    {
        var decider = BankAccount.DeciderOf<HandWritten>(
            (state, owner) => new HandWritten(owner, state.Balance),
            (state, amount) => new HandWritten(state.Owner, state.Balance + amount),
            new HandWritten(null));
        var store = new InMemoryEventStore();
        var snapshots = new InMemorySnapshotStore();
        var handler = new DeciderHandler<AccountCommand, HandWritten, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(25m));

        var loaded = await handler.LoadAsync(Account);
        Assert.Equal(25m, loaded.State.Balance);

        await Assert.ThrowsAsync<SnapshotSerializationException>(() => handler.TakeSnapshotAsync(Account));
        Assert.Null(await snapshots.LoadAsync(Account, "account", default));
    }
}
