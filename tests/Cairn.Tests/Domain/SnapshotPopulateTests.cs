using System.Text.Json;
using System.Text.Json.Serialization;
using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests.Domain;

/// <summary>
/// A snapshot state is refused only when its JSON would not bring back what it holds: a getter-only collection the
/// options fill in place (Populate) comes back whole, and was refused all the same.
/// </summary>
public sealed class SnapshotPopulateTests
{
    private static async Task<(TState Loaded, TState Folded)> RoundTripAsync<TState>(Decider<AccountCommand, TState, AccountEvent> decider, DeciderHandlerOptions options)
    {
        var store = new InMemoryEventStore();
        var snapshots = new InMemorySnapshotStore();
        var handler = new DeciderHandler<AccountCommand, TState, AccountEvent>(store, snapshots, BankAccount.Serializer(), decider, options);
        StreamName stream = "account-1";
        await handler.HandleAsync(stream, new OpenAccount("ada"));
        await handler.HandleAsync(stream, new Deposit(5m));
        await handler.HandleAsync(stream, new Deposit(7m));
        Assert.NotNull(await snapshots.LoadAsync(stream, "account", default));
        var loaded = await handler.LoadAsync(stream);
        var folded = await new DeciderHandler<AccountCommand, TState, AccountEvent>(store, BankAccount.Serializer(), decider).LoadAsync(stream);
        return (loaded.State, folded.State);
    }

    // With JsonObjectCreationHandling.Populate (on the property, or as the options' PreferredObjectCreationHandling),
    // System.Text.Json fills a getter-only collection on the way back, so the state round-trips whole.
    [Fact]
    public async Task A_getter_only_collection_the_json_populates_is_not_refused_as_lost_on_the_way_back()
    {
        // System.Text.Json brings the state back whole with the serializer's own options.
        var state = PopulatedLedger.Deposit(PopulatedLedger.Open(new PopulatedLedger(), "ada"), 5m);
        var back = JsonSerializer.Deserialize<PopulatedLedger>(JsonSerializer.Serialize(state, BankAccount.Serializer().Options), BankAccount.Serializer().Options)!;
        Assert.Equal("ada", back.Owner);
        Assert.Equal([5m], back.Entries);

        var decider = BankAccount.DeciderOf(PopulatedLedger.Open, PopulatedLedger.Deposit, new PopulatedLedger());
        var (loaded, folded) = await RoundTripAsync(decider, BankAccount.Snapshotted);
        Assert.Equal(folded.Entries, loaded.Entries);
    }

    [Fact]
    public async Task A_getter_only_collection_is_not_refused_when_the_snapshot_options_populate_collections()
    {
        var json = new JsonSerializerOptions { PreferredObjectCreationHandling = JsonObjectCreationHandling.Populate };
        var state = PlainLedger.Deposit(PlainLedger.Open(new PlainLedger(), "ada"), 5m);
        var back = JsonSerializer.Deserialize<PlainLedger>(JsonSerializer.Serialize(state, json), json)!;
        Assert.Equal("ada", back.Owner);
        Assert.Equal([5m], back.Entries);

        var options = new DeciderHandlerOptions { Snapshots = new SnapshotPolicy { Kind = "account", SchemaVersion = 1, Every = 2, JsonOptions = json } };
        var decider = BankAccount.DeciderOf(PlainLedger.Open, PlainLedger.Deposit, new PlainLedger());
        var (loaded, folded) = await RoundTripAsync(decider, options);
        Assert.Equal(folded.Entries, loaded.Entries);
    }

    public sealed class PopulatedLedger
    {
        public string? Owner { get; set; }

        [JsonObjectCreationHandling(JsonObjectCreationHandling.Populate)]
        public List<decimal> Entries { get; } = [];

        public static PopulatedLedger Open(PopulatedLedger s, string owner)
        {
            var next = new PopulatedLedger { Owner = owner };
            next.Entries.AddRange(s.Entries);
            return next;
        }

        public static PopulatedLedger Deposit(PopulatedLedger s, decimal amount)
        {
            var next = new PopulatedLedger { Owner = s.Owner };
            next.Entries.AddRange([.. s.Entries, amount]);
            return next;
        }
    }

    public sealed class PlainLedger
    {
        public string? Owner { get; set; }

        public List<decimal> Entries { get; } = [];

        public static PlainLedger Open(PlainLedger s, string owner)
        {
            var next = new PlainLedger { Owner = owner };
            next.Entries.AddRange(s.Entries);
            return next;
        }

        public static PlainLedger Deposit(PlainLedger s, decimal amount)
        {
            var next = new PlainLedger { Owner = s.Owner };
            next.Entries.AddRange([.. s.Entries, amount]);
            return next;
        }
    }
}
