using System.Text.Json.Nodes;
using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests.Domain;

/// <summary>States whose JSON comes back whole are snapshotted, whatever members their contract maps.</summary>
public sealed class SnapshotStateMemberTests
{
    private static readonly StreamName Account = "account-1";

    private sealed record Noted(string? Owner, decimal Balance, JsonObject Notes);

    private static async Task<long?> SnapshotVersionAsync<TState>(Decider<AccountCommand, TState, AccountEvent> decider)
    {
        var store = new InMemoryEventStore();
        var snapshots = new InMemorySnapshotStore();
        var handler = new DeciderHandler<AccountCommand, TState, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, BankAccount.Snapshotted);
        await handler.HandleAsync(Account, new OpenAccount("ada"));
        await handler.HandleAsync(Account, new Deposit(25m));
        await handler.TakeSnapshotAsync(Account);
        return (await snapshots.LoadAsync(Account, "account", default))?.StreamVersion;
    }

    // A JsonObject built in code holds values of other node types than the ones JSON reads back: equal as JSON, unequal
    // field by field.
    [Fact]
    public async Task A_state_holding_a_json_object_built_in_code_is_snapshotted()
    {
        var decider = BankAccount.DeciderOf<Noted>(
            (state, owner) => state with { Owner = owner, Notes = new JsonObject { ["owner"] = owner } },
            (state, amount) => state with { Balance = state.Balance + amount },
            new Noted(null, 0m, []));

        Assert.Equal(1, await SnapshotVersionAsync(decider));
    }

    // A memoised result held in a private field is filled in the folded state and empty in the one read back: unmarked,
    // the snapshot is refused; marked [NonSerialized], it is no part of the state and the snapshot is saved.
    [Fact]
    public async Task A_memoised_field_marked_non_serialized_does_not_stop_a_snapshot_and_an_unmarked_one_does()
    {
        var marked = BankAccount.DeciderOf<MemoisedLabel>(
            (state, owner) => state with { Owner = owner },
            (state, amount) => (state with { Balance = state.Balance + amount }).Touched(),
            new MemoisedLabel(null, 0m));
        var unmarked = BankAccount.DeciderOf<UnmarkedLabel>(
            (state, owner) => state with { Owner = owner },
            (state, amount) => (state with { Balance = state.Balance + amount }).Touched(),
            new UnmarkedLabel(null, 0m));

        Assert.Equal(1, await SnapshotVersionAsync(marked));
        await Assert.ThrowsAsync<SnapshotSerializationException>(() => SnapshotVersionAsync(unmarked));
    }

    private sealed record MemoisedLabel(string? Owner, decimal Balance)
    {
        [NonSerialized]
        private string? _label;

        public MemoisedLabel Touched()
        {
            _label ??= $"{Owner}: {Balance}";
            return this;
        }
    }

    private sealed record UnmarkedLabel(string? Owner, decimal Balance)
    {
        private string? _label;

        public UnmarkedLabel Touched()
        {
            _label ??= $"{Owner}: {Balance}";
            return this;
        }
    }
}
