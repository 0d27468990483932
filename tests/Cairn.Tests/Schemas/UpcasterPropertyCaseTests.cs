using Cairn.Envelopes;
using System.Text;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;

namespace Cairn.Tests.Schemas;

/// <summary>Upcasters that rename a property to another case of its name.</summary>
public sealed class UpcasterPropertyCaseTests
{
    // Version 1 was written with PascalCase names; the upcaster renames "Name" to "name" before splitting it. The
    // names reach it as stored, matched with case, so setting "name" and removing "Name" are two properties.
    private static readonly Func<JsonObject, JsonObject> CamelCaseThenSplit = json =>
    {
        if (json["Name"] is { } legacy)
        {
            json["name"] = legacy.GetValue<string>();
            json.Remove("Name");
        }

        var name = json["name"]!.GetValue<string>();
        var space = name.IndexOf(' ', StringComparison.Ordinal);
        json.Remove("name");
        json["firstName"] = name[..space];
        json["lastName"] = name[(space + 1)..];
        return json;
    };

    [Fact]
    public void An_upcaster_renaming_a_property_to_another_case_keeps_its_value()
    {
        var types = new EventTypeRegistry().Register<CustomerRegistered>();
        var options = new SchemaOptions()
            .Upcast("customer.registered", 1, 2, CamelCaseThenSplit)
            .Upcast<CustomerRegisteredV2, CustomerRegistered>(v2 => new CustomerRegistered(v2.FirstName, v2.LastName, new Money(v2.CreditCents / 100m, "EUR")));
        var serializer = new EventSerializer(types, null, UpcasterChains.Build(types, options.Upcasters));
        var stored = new RecordedEvent(MessageId.New(), "customer-7", 0, new GlobalPosition(1), "customer.registered", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes("""{"Name":"Grace Hopper","CreditCents":1250}"""))
        {
            DataSchema = "urn:cairn:schema:customer.registered:1",
        };

        Assert.Equal(new CustomerRegistered("Grace", "Hopper", new Money(12.5m, "EUR")), serializer.Deserialize(stored));
    }
}
