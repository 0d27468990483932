using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;

namespace Cairn.Tests.Serialization;

/// <summary>Stored data the serializer cannot read as it is: a dataschema naming no version, a class refusing its data.</summary>
public sealed class EventSerializerEdgeTests
{
    private sealed record LedgerDeposited(decimal Amount);

    // Two properties the options name alike ("Id" and "ID" are both "id" in camelCase): System.Text.Json cannot build the
    // contract and throws InvalidOperationException. Only NotSupportedException was turned into
    // EventSerializationException, so a write let the raw exception through, and a read did not name the event.
    private sealed record Collides(int Id, int ID);

    [Fact]
    public void An_event_type_whose_contract_cannot_be_built_is_refused_with_cairns_errors()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<Collides>("test.collides"));

        var written = Record.Exception(() => serializer.ToEventData(new Collides(1, 2)));
        Assert.IsAssignableFrom<CairnException>(written);

        var recorded = new RecordedEvent(MessageId.New(), "test-1", 0, new GlobalPosition(1), "test.collides", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, """{"id":1}"""u8.ToArray());
        var read = Record.Exception(() => serializer.Deserialize(recorded));
        Assert.IsAssignableFrom<CairnException>(read);
    }

    // A dataschema of Cairn's form naming no version (…:0) is no other producer's URI. Read as the current version, its
    // upcaster was passed over and the amount silently came back as 0.
    [Fact]
    public void An_event_whose_dataschema_is_of_cairns_form_but_names_no_version_is_refused_not_read_as_current()
    {
        var registry = new EventTypeRegistry().Register<LedgerDeposited>("ledger.deposited", version: 2);
        var upcasters = UpcasterChains.Build(registry, [new Upcaster("ledger.deposited", 1, 2, (json, _) =>
        {
            json["amount"] = json["amt"]?.DeepClone();
            json.Remove("amt");
            return json;
        })]);
        var serializer = new EventSerializer(registry, null, upcasters);
        var recorded = new RecordedEvent(MessageId.New(), "ledger-1", 0, new GlobalPosition(1), "ledger.deposited", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, """{"amt":5}"""u8.ToArray())
        {
            DataSchema = "urn:cairn:schema:ledger.deposited:0",
        };

        var refused = Assert.Throws<UnknownSchemaVersionException>(() => serializer.Deserialize(recorded));
        Assert.Equal("urn:cairn:schema:ledger.deposited:0", refused.DataSchema);

        // Another producer's URI is still read as the current version.
        var foreign = new RecordedEvent(MessageId.New(), "ledger-1", 1, new GlobalPosition(2), "ledger.deposited", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, """{"amount":5}"""u8.ToArray())
        {
            DataSchema = "https://example.com/schemas/deposit.json",
        };
        Assert.Equal(5m, ((LedgerDeposited)serializer.Deserialize(foreign)).Amount);
    }

    private sealed record PositiveDeposit
    {
        public PositiveDeposit(decimal amount) =>
            Amount = amount > 0 ? amount : throw new ArgumentOutOfRangeException(nameof(amount), amount, "A deposit is positive.");

        public decimal Amount { get; }
    }

    // A class that refuses what it is built from (an invariant in its constructor, against old or hand-written data)
    // threw its own exception raw: the reader learned neither which event it was nor that its data could not be read.
    [Fact]
    public void Stored_data_the_event_class_refuses_is_an_event_deserialization_failure_naming_the_event()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<PositiveDeposit>("ledger.positive-deposit"));
        var recorded = new RecordedEvent(MessageId.New(), "ledger-1", 3, new GlobalPosition(9), "ledger.positive-deposit", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, """{"amount":-1}"""u8.ToArray());

        var failure = Assert.Throws<EventDeserializationException>(() => serializer.Deserialize(recorded));

        Assert.Same(recorded, failure.Event);
        Assert.IsType<ArgumentOutOfRangeException>(failure.InnerException);
        Assert.Contains("ledger-1@3", failure.Message, StringComparison.Ordinal);
    }

    // A projection or a decider meeting an event of a type no class is registered for learned the type name only, not
    // which event in which stream: nothing to find it by in a log of millions.
    [Fact]
    public void An_event_of_an_unregistered_type_is_refused_naming_the_event()
    {
        var serializer = new EventSerializer(new EventTypeRegistry());
        var recorded = new RecordedEvent(MessageId.New(), "ledger-7", 4, new GlobalPosition(12), "ledger.closed", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, "{}"u8.ToArray());

        var refused = Assert.Throws<UnknownEventTypeException>(() => serializer.Deserialize(recorded));

        Assert.Equal("ledger.closed", refused.EventType);
        Assert.Contains(recorded.Id.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Contains("ledger-7@4", refused.Message, StringComparison.Ordinal);
    }

    // A value System.Text.Json refuses to write (NaN without named floating-point literals, a dictionary keyed by a
    // record) is refused with Cairn's error naming the type, as a type it cannot map is, not System.Text.Json's own.
    [Fact]
    public void A_value_that_cannot_be_written_as_json_is_refused_naming_its_type()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<MeterReading>("meter.reading").Register<KeyedCounts>("meter.keyed"));

        var nan = Assert.Throws<EventSerializationException>(() => serializer.ToEventData(new MeterReading(double.NaN)));
        var keyed = Assert.Throws<EventSerializationException>(() => serializer.ToOutgoingMessage(new KeyedCounts(new() { [new MeterKey(1)] = 2 })));

        Assert.Equal(typeof(MeterReading), nan.EventType);
        Assert.Contains("'meter.reading'", nan.Message, StringComparison.Ordinal);
        Assert.IsType<ArgumentException>(nan.InnerException);
        Assert.Equal(typeof(KeyedCounts), keyed.EventType);
        Assert.IsType<NotSupportedException>(keyed.InnerException);
        Assert.Equal("meter.reading", serializer.ToEventData(new MeterReading(1.5)).Type);
    }

    private sealed record MeterReading(double Value);

    private sealed record MeterKey(int A);

    private sealed record KeyedCounts(Dictionary<MeterKey, int> Counts);
}
