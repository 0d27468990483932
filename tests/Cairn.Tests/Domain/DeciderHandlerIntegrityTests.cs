using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests;

/// <summary>
/// A decider handler writes nothing a fault of its decider would leave half-done, and a snapshot is never a second
/// truth: a load returns the fold of the events as stored, with or without it.
/// </summary>
public sealed class DeciderHandlerIntegrityTests
{
    private static readonly StreamName Account = "account-1";

    private static DeciderHandler<AccountCommand, TState, AccountEvent> Snapshotting<TState>(IEventStore store, ISnapshotStore snapshots, Decider<AccountCommand, TState, AccountEvent> decider, int? every = 2, EventSerializer? serializer = null) =>
        new(store, snapshots, serializer ?? BankAccount.Serializer(), decider, new DeciderHandlerOptions { Snapshots = new SnapshotPolicy { Kind = "account", SchemaVersion = 1, Every = every } });


    // An Evolve that throws on an event its own Decide just produced is a decider fault the handler sees before it
    // writes anything: the command fails with nothing appended, so a retry doubles nothing and the stream holds no event
    // its decider cannot fold.
    [Fact]
    public async Task An_evolve_that_throws_on_the_decided_events_leaves_the_stream_unwritten()
    {
        var decider = new Decider<AccountCommand, AccountState, AccountEvent>(
            BankAccount.Decider.Decide,
            (state, e) => e is Deposited { Amount: 13m } ? throw new InvalidOperationException("13 is unlucky") : BankAccount.Decider.Evolve(state, e),
            AccountState.Initial);
        var store = new InMemoryEventStore();
        var handler = new DeciderHandler<AccountCommand, AccountState, AccountEvent>(store, BankAccount.Serializer(), decider);
        await handler.HandleAsync(Account, new OpenAccount("ada"));

        await Assert.ThrowsAsync<InvalidOperationException>(() => handler.HandleAsync(Account, new Deposit(13m)));

        var stored = await store.ReadStreamAsync(Account).Select(e => e.Type).ToListAsync();
        Assert.Equal(["account.opened"], stored);
    }


    private sealed record Averaged(string? Owner, double Mean);

    // A state whose JSON does not come back "is not saved (SnapshotSerializationException)" (docs/snapshots.md): a
    // double that is NaN (the mean of no deposits) cannot be written as JSON at all, and the refusal names the state.
    [Fact]
    public async Task A_state_json_cannot_write_is_refused_with_snapshot_serialization_exception()
    {
        var decider = BankAccount.DeciderOf<Averaged>(
            (state, owner) => state with { Owner = owner, Mean = double.NaN },
            (state, amount) => state with { Mean = double.IsNaN(state.Mean) ? (double)amount : (state.Mean + (double)amount) / 2 },
            new Averaged(null, double.NaN));
        var snapshots = new InMemorySnapshotStore();
        var handler = Snapshotting(new InMemoryEventStore(), snapshots, decider, every: null);
        await handler.HandleAsync(Account, new OpenAccount("ada"));

        var ex = await Assert.ThrowsAnyAsync<Exception>(() => handler.TakeSnapshotAsync(Account));

        Assert.IsType<SnapshotSerializationException>(ex);
        Assert.Null(await snapshots.LoadAsync(Account, "account", default));
    }

    public interface IShape
    {
        decimal Size { get; }
    }

    public sealed record Square(decimal Size) : IShape;

    private sealed record Shaped(string? Owner, IShape Shape);

    // The same for a state whose JSON is written but cannot be read back (a member declared as an interface: "the
    // members' own types are not looked into", so the handler is created).
    [Fact]
    public async Task A_state_json_cannot_read_back_is_refused_with_snapshot_serialization_exception()
    {
        var decider = BankAccount.DeciderOf<Shaped>(
            (state, owner) => state with { Owner = owner },
            (state, amount) => state with { Shape = new Square(state.Shape.Size + amount) },
            new Shaped(null, new Square(0m)));
        var snapshots = new InMemorySnapshotStore();
        var handler = Snapshotting(new InMemoryEventStore(), snapshots, decider, every: null);
        await handler.HandleAsync(Account, new OpenAccount("ada"));

        var ex = await Assert.ThrowsAnyAsync<Exception>(() => handler.TakeSnapshotAsync(Account));

        Assert.IsType<SnapshotSerializationException>(ex);
    }


    /// <summary>An entity-style state, equal by identity (its owner), keeping its balance in a private field.</summary>
    private sealed class IdentifiedLedger
    {
        private readonly decimal _balance;

        [System.Text.Json.Serialization.JsonConstructor]
        public IdentifiedLedger(string? owner) => Owner = owner;

        private IdentifiedLedger(string? owner, decimal balance)
            : this(owner) => _balance = balance;

        public string? Owner { get; }

        public decimal Balance() => _balance;

        public IdentifiedLedger Deposited(decimal amount) => new(Owner, _balance + amount);

        public override bool Equals(object? obj) => obj is IdentifiedLedger other && other.Owner == Owner;

        public override int GetHashCode() => HashCode.Combine(Owner);
    }

    // The JSON "is read back, compared with the state field by field (private fields too)" (docs/snapshots.md), whatever
    // the state's own Equals says: a state equal by identity (the usual DDD entity) whose private balance its JSON loses
    // is not snapshotted, and loads return the fold of the events.
    [Fact]
    public async Task A_state_equal_by_identity_whose_json_drops_a_private_field_loads_as_the_fold()
    {
        var decider = BankAccount.DeciderOf<IdentifiedLedger>(
            (state, owner) => new IdentifiedLedger(owner).Deposited(state.Balance()),
            (state, amount) => state.Deposited(amount),
            new IdentifiedLedger(null));
        var store = new InMemoryEventStore();
        var handler = Snapshotting(store, new InMemorySnapshotStore(), decider);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(25m));   // version 1: a snapshot is due
        await handler.HandleAsync(Account, new Deposit(5m));

        var folded = await new DeciderHandler<AccountCommand, IdentifiedLedger, AccountEvent>(store, BankAccount.Serializer(), decider).LoadAsync(Account);
        var loaded = await handler.LoadAsync(Account);

        Assert.Equal(30m, folded.State.Balance());
        Assert.Equal(folded.State.Balance(), loaded.State.Balance());
    }


    private sealed record Holders(Dictionary<string, int> ByName);

    private static Holders Opened(Holders state, string owner)
    {
        var copy = new Dictionary<string, int>(state.ByName, state.ByName.Comparer);
        copy.TryAdd(owner, 0);
        return new Holders(copy);
    }

    // A dictionary keyed case-insensitively reads back from JSON with the default, case-sensitive comparer: the same
    // items, another behaviour. Its snapshot is not saved, so a load never folds "ADA" as a second holder where the
    // fold of the events has one.
    [Fact]
    public async Task A_state_with_a_case_insensitive_dictionary_loads_as_the_fold()
    {
        var decider = BankAccount.DeciderOf<Holders>(Opened, (state, _) => state, new Holders(new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase)));
        var store = new InMemoryEventStore();
        var handler = Snapshotting(store, new InMemorySnapshotStore(), decider, every: 1);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new OpenAccount("ADA"));

        var folded = await new DeciderHandler<AccountCommand, Holders, AccountEvent>(store, BankAccount.Serializer(), decider).LoadAsync(Account);
        var loaded = await handler.LoadAsync(Account);

        Assert.Single(folded.State.ByName);
        Assert.Equal(folded.State.ByName.Count, loaded.State.ByName.Count);
    }


    /// <summary>An event with a member its JSON does not bring back (a private setter, which events are not checked for).</summary>
    [EventType("account.tipped")]
    public sealed record Tipped(decimal Amount) : AccountEvent
    {
        public decimal Bonus { get; private set; }

        public static Tipped WithBonus(decimal amount, decimal bonus) => new(amount) { Bonus = bonus };
    }

    private sealed record Tips(decimal Total);

    // "Snapshots are an optimisation, never a second truth" (docs/snapshots.md): the snapshot taken after a command is
    // the fold of the events as the store gives them back, not of the objects decided in memory, so what their JSON
    // loses (here Bonus) does not live on in the snapshot alone.
    [Fact]
    public async Task The_snapshot_after_a_command_is_the_fold_of_the_events_as_stored()
    {
        var serializer = new EventSerializer(BankAccount.Registry().Register<Tipped>());
        var decider = new Decider<AccountCommand, Tips, AccountEvent>(
            (command, _) => command is Deposit d ? [Tipped.WithBonus(d.Amount, 1m)] : [],
            (state, e) => e is Tipped t ? new Tips(state.Total + t.Amount + t.Bonus) : state,
            new Tips(0m));
        var store = new InMemoryEventStore();
        var handler = Snapshotting(store, new InMemorySnapshotStore(), decider, every: 1, serializer: serializer);
        await handler.HandleAsync(Account, new Deposit(10m));

        var folded = await new DeciderHandler<AccountCommand, Tips, AccountEvent>(store, serializer, decider).LoadAsync(Account);
        var loaded = await handler.LoadAsync(Account);

        Assert.Equal(folded.State, loaded.State);
    }


    // A setting is refused "with ArgumentOutOfRangeException naming the setting" (docs/snapshots.md), not the handler's
    // own field.
    [Fact]
    public void A_negative_max_conflict_retries_is_refused_naming_the_setting()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new DeciderHandler<AccountCommand, AccountState, AccountEvent>(
            new InMemoryEventStore(), BankAccount.Serializer(), BankAccount.Decider, new DeciderHandlerOptions { MaxConflictRetries = -1 }));

        Assert.Equal(nameof(DeciderHandlerOptions.MaxConflictRetries), ex.ParamName);
    }
}
