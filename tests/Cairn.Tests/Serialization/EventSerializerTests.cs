using System.Text;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Serialization;

public sealed class EventSerializerTests
{
    private static RecordedEvent Recorded(string type, string json) =>
        new(MessageId.New(), "account-1", 3, new GlobalPosition(9), type, "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes(json));

    [Fact]
    public void an_event_becomes_json_event_data_under_its_registered_name()
    {
        var serializer = BankAccount.Serializer();
        var id = MessageId.New();

        var data = serializer.ToEventData(new AccountOpened("Ada Lovelace"), id, ["account:1"], new Dictionary<string, string> { ["by"] = "clerk" });

        Assert.Equal(id, data.Id);
        Assert.Equal("account.opened", data.Type);
        Assert.Equal(EventData.JsonContentType, data.ContentType);
        Assert.Equal("""{"owner":"Ada Lovelace"}""", Encoding.UTF8.GetString(data.Data.Span));
        Assert.Equal(["account:1"], data.Tags);
        Assert.Equal("clerk", data.Metadata!["by"]);
        Assert.NotEqual(serializer.ToEventData(new AccountClosed()).Id, serializer.ToEventData(new AccountClosed()).Id);
    }

    [Fact]
    public async Task events_round_trip_through_a_store()
    {
        var serializer = BankAccount.Serializer();
        var store = new InMemoryEventStore();
        AccountEvent[] events = [new AccountOpened("Zoë"), new Deposited(12.34m), new Withdrawn(0.01m), new AccountClosed()];

        await store.AppendToStreamAsync("account-1", ExpectedVersion.NoStream, [.. events.Select(e => serializer.ToEventData(e))]);
        var read = await store.ReadStreamAsync("account-1").Select(serializer.Deserialize<AccountEvent>).ToListAsync();

        Assert.Equal(events, read);
        Assert.IsType<Deposited>(serializer.Deserialize((await store.ReadStreamAsync("account-1").ToListAsync())[1]));
    }

    [Fact]
    public void the_json_options_given_are_used()
    {
        var serializer = new EventSerializer(BankAccount.Registry(), new JsonSerializerOptions { PropertyNamingPolicy = null });

        var data = serializer.ToEventData(new Deposited(5m));

        Assert.Equal("""{"Amount":5}""", Encoding.UTF8.GetString(data.Data.Span));
        Assert.Equal(new Deposited(5m), serializer.Deserialize(Recorded("account.deposited", """{"Amount":5}""")));
    }

    [Fact]
    public void an_unregistered_class_cannot_be_serialized()
    {
        var serializer = new EventSerializer(new EventTypeRegistry());
        Assert.Throws<UnknownEventTypeException>(() => serializer.ToEventData(new Deposited(1m)));
    }

    [Fact]
    public void an_unregistered_stored_type_cannot_be_deserialized()
    {
        var ex = Assert.Throws<UnknownEventTypeException>(() => BankAccount.Serializer().Deserialize(Recorded("account.frozen", "{}")));
        Assert.Equal("account.frozen", ex.EventType);
    }

    [Fact]
    public void data_that_does_not_fit_the_type_fails_with_event_deserialization_naming_the_event()
    {
        var recorded = Recorded("account.deposited", """{"amount":"lots"}""");

        var ex = Assert.Throws<EventDeserializationException>(() => BankAccount.Serializer().Deserialize(recorded));

        Assert.Same(recorded, ex.Event);
        Assert.IsAssignableFrom<JsonException>(ex.InnerException);
        Assert.Contains(recorded.Id.ToString(), ex.Message, StringComparison.Ordinal);
        Assert.Contains("account-1@3", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void json_null_fails_with_event_deserialization()
    {
        var ex = Assert.Throws<EventDeserializationException>(() => BankAccount.Serializer().Deserialize(Recorded("account.deposited", "null")));
        Assert.Contains("null", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void broken_json_fails_with_event_deserialization()
    {
        Assert.Throws<EventDeserializationException>(() => BankAccount.Serializer().Deserialize(Recorded("account.deposited", "{\"amount\":")));
    }

    [Fact]
    public void an_event_of_another_type_than_asked_fails_with_event_deserialization()
    {
        var ex = Assert.Throws<EventDeserializationException>(() => BankAccount.Serializer().Deserialize<Withdrawn>(Recorded("account.deposited", """{"amount":1}""")));
        Assert.Contains(nameof(Withdrawn), ex.Message, StringComparison.Ordinal);
    }
}
