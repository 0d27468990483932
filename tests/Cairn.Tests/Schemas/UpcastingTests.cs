using System.Text;
using System.Text.Json.Nodes;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Schemas;
using Cairn.Serialization;

namespace Cairn.Tests.Schemas;

// Three shapes of one event type. Version 1 had a single "name"; version 2 split it; version 3 added a currency to
// the amount, which version 2 held as a number of cents.
[EventType("customer.registered", Version = 1)]
public sealed record CustomerRegisteredV1(string Name, int CreditCents);

[EventType("customer.registered", Version = 2)]
public sealed record CustomerRegisteredV2(string FirstName, string LastName, int CreditCents);

[EventType("customer.registered", Version = 3)]
public sealed record CustomerRegistered(string FirstName, string LastName, Money Credit);

public sealed record Money(decimal Amount, string Currency);

public sealed class UpcastingTests
{
    internal static readonly Func<JsonObject, JsonObject> SplitName = json =>
    {
        var name = json["name"]!.GetValue<string>();
        var space = name.IndexOf(' ', StringComparison.Ordinal);
        json.Remove("name");
        json["firstName"] = space < 0 ? name : name[..space];
        json["lastName"] = space < 0 ? "" : name[(space + 1)..];
        return json;
    };

    /// <summary>A serializer reading customer.registered from version 1 (one name) through 2 (cents) to 3 (money).</summary>
    internal static EventSerializer Serializer(Action<SchemaOptions>? configure = null)
    {
        var types = new EventTypeRegistry().Register<CustomerRegistered>();
        var options = new SchemaOptions()
            .Upcast("customer.registered", 1, 2, SplitName)
            .Upcast<CustomerRegisteredV2, CustomerRegistered>(v2 => new CustomerRegistered(v2.FirstName, v2.LastName, new Money(v2.CreditCents / 100m, "EUR")));
        configure?.Invoke(options);
        return new EventSerializer(types, null, UpcasterChains.Build(types, options.Upcasters));
    }

    private static RecordedEvent Stored(string json, string? dataSchema, string type = "customer.registered") =>
        new(MessageId.New(), "customer-7", 0, new GlobalPosition(1), type, "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes(json))
        {
            DataSchema = dataSchema,
        };

    [Fact]
    public void a_class_names_its_version_and_what_is_written_says_so_in_its_dataschema()
    {
        var serializer = Serializer();

        var data = serializer.ToEventData(new CustomerRegistered("Ada", "Lovelace", new Money(5m, "EUR")));
        var message = serializer.ToOutgoingMessage(new CustomerRegistered("Ada", "Lovelace", new Money(5m, "EUR")));

        Assert.Equal("urn:cairn:schema:customer.registered:3", data.DataSchema);
        Assert.Equal("urn:cairn:schema:customer.registered:3", message.DataSchema);
        Assert.Equal(3, serializer.Registry.GetVersion("customer.registered"));
        Assert.True(SchemaReference.TryParse(data.DataSchema, out var reference));
        Assert.Equal(new SchemaReference("customer.registered", 3), reference);
    }

    [Fact]
    public void an_assembly_registers_the_highest_version_of_each_name_and_keeps_the_others_for_typed_upcasters()
    {
        // The conformance suite's customer log keeps version 2's class beside version 3's.
        var types = new EventTypeRegistry().RegisterAssembly(typeof(Cairn.Conformance.Upcasting.CustomerLog).Assembly);

        Assert.Equal(typeof(Cairn.Conformance.Upcasting.CustomerRegistered), types.GetType("customer.registered"));
        Assert.Equal(3, types.GetVersion("customer.registered"));
        Assert.False(types.TryGetName(typeof(Cairn.Conformance.Upcasting.CustomerRegisteredV2), out _));
    }

    [Fact]
    public void events_of_each_earlier_version_are_read_as_the_current_one_through_json_and_typed_upcasters()
    {
        var serializer = Serializer();

        // Version 1 written before the registry existed: no dataschema at all.
        var fromV1 = serializer.Deserialize(Stored("""{"name":"Grace Hopper","creditCents":1250}""", null));
        var fromV2 = serializer.Deserialize(Stored("""{"firstName":"Alan","lastName":"Turing","creditCents":99}""", "urn:cairn:schema:customer.registered:2"));
        var fromV3 = serializer.Deserialize(Stored("""{"firstName":"Ada","lastName":"Lovelace","credit":{"amount":5,"currency":"GBP"}}""", "urn:cairn:schema:customer.registered:3"));

        Assert.Equal(new CustomerRegistered("Grace", "Hopper", new Money(12.5m, "EUR")), fromV1);
        Assert.Equal(new CustomerRegistered("Alan", "Turing", new Money(0.99m, "EUR")), fromV2);
        Assert.Equal(new CustomerRegistered("Ada", "Lovelace", new Money(5m, "GBP")), fromV3);
    }

    [Fact]
    public void a_message_of_an_earlier_version_is_upcast_before_its_handler_reads_it()
    {
        var serializer = Serializer();
        var message = new Message(MessageId.New(), "customer.registered", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes("""{"name":"Edsger Dijkstra","creditCents":10}"""))
        {
            DataSchema = "urn:cairn:schema:customer.registered:1",
        };

        Assert.Equal(new CustomerRegistered("Edsger", "Dijkstra", new Money(0.1m, "EUR")), serializer.Deserialize<CustomerRegistered>(message));
    }

    [Fact]
    public void an_event_of_a_later_version_than_the_class_is_refused_naming_the_event_the_type_and_both_versions()
    {
        var serializer = Serializer();
        var stored = Stored("""{"firstName":"A","lastName":"B","credit":{"amount":1,"currency":"EUR"},"tier":"gold"}""", "urn:cairn:schema:customer.registered:4");

        var error = Assert.Throws<UnknownSchemaVersionException>(() => serializer.Deserialize(stored));

        Assert.Equal("customer.registered", error.EventType);
        Assert.Equal(4, error.Version);
        Assert.Equal(3, error.CurrentVersion);
        Assert.Contains(stored.Id.ToString(), error.Message, StringComparison.Ordinal);
        Assert.Contains("customer-7@0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_dataschema_naming_another_type_is_refused()
    {
        var error = Assert.Throws<UnknownSchemaVersionException>(() => Serializer().Deserialize(Stored("{}", "urn:cairn:schema:order.placed:1")));

        Assert.Contains("names the type 'order.placed'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_dataschema_of_another_producer_is_read_as_the_current_version()
    {
        var read = Serializer().Deserialize(Stored("""{"firstName":"Ada","lastName":"Lovelace","credit":{"amount":5,"currency":"GBP"}}""", "https://schemas.example.com/customer.json"));

        Assert.Equal(new CustomerRegistered("Ada", "Lovelace", new Money(5m, "GBP")), read);
    }

    [Fact]
    public void an_upcaster_that_throws_stops_the_read_naming_the_event_the_type_and_the_versions()
    {
        var types = new EventTypeRegistry().Register<CustomerRegistered>();
        var options = new SchemaOptions()
            .Upcast("customer.registered", 1, 2, _ => throw new InvalidOperationException("no name"))
            .Upcast("customer.registered", 2, 3, json => json);
        var serializer = new EventSerializer(types, null, UpcasterChains.Build(types, options.Upcasters));
        var stored = Stored("""{"creditCents":1}""", null);

        var error = Assert.Throws<UpcastingException>(() => serializer.Deserialize(stored));

        Assert.Equal("customer.registered", error.EventType);
        Assert.Equal(1, error.From);
        Assert.Equal(2, error.To);
        Assert.IsType<InvalidOperationException>(error.InnerException);
        Assert.Contains(stored.Id.ToString(), error.Message, StringComparison.Ordinal);
        Assert.Contains("no name", error.Message, StringComparison.Ordinal);
    }

    // A property named twice reads at the current version with its last value, as System.Text.Json's deserializer
    // reads it; through an upcaster it failed, blaming the upcaster ("An item with the same key has already been added").
    [Fact]
    public void a_property_named_twice_is_upcast_with_its_last_value_as_the_current_version_reads_it()
    {
        var serializer = Serializer();

        var current = (CustomerRegistered)serializer.Deserialize(Stored("""{"firstName":"Ada","lastName":"Lovelace","credit":{"amount":1,"currency":"EUR","amount":2}}""", "urn:cairn:schema:customer.registered:3"));
        var upcast = (CustomerRegistered)serializer.Deserialize(Stored("""{"name":"Ada Byron","name":"Ada Lovelace","creditCents":100,"creditCents":250}""", "urn:cairn:schema:customer.registered:1"));

        Assert.Equal(2m, current.Credit.Amount);
        Assert.Equal(new CustomerRegistered("Ada", "Lovelace", new Money(2.5m, "EUR")), upcast);
    }

    [Fact]
    public void data_that_is_not_a_json_object_fails_its_upcast_with_the_reason()
    {
        var error = Assert.Throws<UpcastingException>(() => Serializer().Deserialize(Stored("[1,2]", "urn:cairn:schema:customer.registered:2")));

        Assert.Equal(2, error.From);
        Assert.Contains("not a JSON object", error.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, int, int, string> BadChains => new()
    {
        // A missing link: 1 → 2 and 3 → 4 exist, 2 → 3 does not.
        { "missing", 2, 3, "has no link from 2 to 3" },
        { "cycle", 3, 2, "a chain that goes back is a cycle" },
        { "skip", 1, 3, "it skips versions" },
        { "beyond", 4, 5, "current version is 4" },
        { "twice", 1, 2, "two upcasters are declared for that step" },
        { "zero", 0, 1, "versions start at 1" },
    };

    [Theory]
    [MemberData(nameof(BadChains))]
    public void a_broken_chain_is_refused_naming_the_type_and_versions(string fault, int from, int to, string reason)
    {
        var types = new EventTypeRegistry().Register<CustomerRegistered>("customer.registered", version: 4);
        var options = new SchemaOptions();
        switch (fault)
        {
            case "missing":
                options.Upcast("customer.registered", 1, 2, j => j).Upcast("customer.registered", 3, 4, j => j);
                break;
            case "twice":
                options.Upcast("customer.registered", 1, 2, j => j).Upcast("customer.registered", 1, 2, j => j);
                break;
            default:
                options.Upcast("customer.registered", from, to, j => j);
                break;
        }

        var error = Assert.Throws<InvalidUpcasterException>(() => UpcasterChains.Build(types, options.Upcasters));

        Assert.Equal("customer.registered", error.EventType);
        Assert.Equal(from, error.From);
        Assert.Equal(to, error.To);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void an_upcaster_of_a_type_no_class_is_registered_for_is_refused()
    {
        var options = new SchemaOptions().Upcast("order.placed", 1, 2, j => j);

        var error = Assert.Throws<InvalidUpcasterException>(() => UpcasterChains.Build(new EventTypeRegistry(), options.Upcasters));

        Assert.Contains("no class is registered", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_typed_upcaster_between_two_event_types_is_refused_when_declared()
    {
        Assert.Throws<ArgumentException>(() => new SchemaOptions().Upcast<CustomerRegisteredV1, Cairn.Conformance.Support.AccountOpened>(_ => new("x")));
    }

    [Fact]
    public void two_classes_with_one_name_and_one_version_are_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => new EventTypeRegistry().Register<CustomerRegistered>("customer.registered", 3).Register<CustomerRegisteredV2>("customer.registered", 2));

        Assert.Contains("customer.registered", error.Message, StringComparison.Ordinal);
    }
}
