using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests.Domain;

/// <summary>A decider's side of the contract: a snapshot state's hidden fields, and a decider that decides null.</summary>
public sealed class DeciderContractTests
{
    private static readonly StreamName Account = "account-1";

    // A state with a plain private field (no auto-property, read by a method, not a property): the contract check looks only at public fields and at
    // auto-properties' backing fields, and the read-back comparison sees the same JSON (the field is in neither), so
    // the snapshot is saved and loads a state with the field at its default: another state than the events fold to.
    [Fact]
    public async Task a_state_with_a_private_field_its_json_does_not_carry_is_refused_or_loads_as_the_fold()
    {
        var decider = BankAccount.DeciderOf<CountingLedger>((state, owner) => state.Opened(owner), (state, amount) => state.Deposited(amount), new CountingLedger(null, 0m));
        var store = new InMemoryEventStore();
        DeciderHandler<AccountCommand, CountingLedger, AccountEvent> handler;
        try
        {
            handler = new DeciderHandler<AccountCommand, CountingLedger, AccountEvent>(store, new InMemorySnapshotStore(), BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        }
        catch (SnapshotSerializationException ex)
        {
            Assert.Contains("_deposits", ex.Message, StringComparison.Ordinal);
            return;
        }

        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(5m));
        await handler.HandleAsync(Account, new Deposit(7m));

        var folded = await new DeciderHandler<AccountCommand, CountingLedger, AccountEvent>(store, BankAccount.Serializer(), decider).LoadAsync(Account);
        var loaded = await handler.LoadAsync(Account);

        Assert.Equal(2, folded.State.Deposits());
        Assert.Equal(folded.State.Deposits(), loaded.State.Deposits());
    }

    // Decide returning null, or a null event, broke the decider's contract; HandleAsync let through an
    // ArgumentNullException for a parameter ('source', '@event') of a method the caller never called, naming neither
    // the decider's fault nor the command.
    [Fact]
    public async Task a_decider_that_decides_null_is_refused_naming_the_command()
    {
        var nullSequence = new Decider<AccountCommand, AccountState, AccountEvent>((_, _) => null!, BankAccount.Decider.Evolve, AccountState.Initial);
        var nullEvent = new Decider<AccountCommand, AccountState, AccountEvent>((_, _) => [null!], BankAccount.Decider.Evolve, AccountState.Initial);

        foreach (var decider in new[] { nullSequence, nullEvent })
        {
            var handler = new DeciderHandler<AccountCommand, AccountState, AccountEvent>(new InMemoryEventStore(), BankAccount.Serializer(), decider);
            var ex = await Assert.ThrowsAnyAsync<Exception>(() => handler.HandleAsync(Account, new Deposit(1m)));
            Assert.IsNotAssignableFrom<ArgumentException>(ex);
            Assert.Contains(nameof(Deposit), ex.Message, StringComparison.Ordinal);
        }
    }

    public sealed record CountingLedger(string? Owner, decimal Balance)
    {
        private int _deposits;

        public int Deposits() => _deposits;

        public CountingLedger Opened(string owner) => this with { Owner = owner };

        public CountingLedger Deposited(decimal amount) => new(Owner, Balance + amount) { _deposits = _deposits + 1 };
    }
}
