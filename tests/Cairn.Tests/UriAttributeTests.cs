using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Routing;

namespace Cairn.Tests;

/// <summary>
/// CloudEvents' <c>source</c> is a URI reference and its <c>dataschema</c> an absolute URI: an event or message given
/// another form is refused where it is given, since a consumer's CloudEvents SDK would refuse it on arrival.
/// </summary>
public sealed class UriAttributeTests
{
    [Theory]
    [InlineData("https://example.com/orders", true)]
    [InlineData("urn:cairn:orders", true)]
    [InlineData("/orders", true)]
    [InlineData("orders", true)]
    [InlineData("order service", false)]
    [InlineData("orders\t", false)]
    [InlineData("", false)]
    [InlineData("https://example.com/orders/{id}", false)]
    [InlineData("/orders/<eu>", false)]
    [InlineData("orders|eu", false)]
    [InlineData("orders\\eu", false)]
    [InlineData("/orders/100%", false)]
    [InlineData("/orders/100%25", true)]
    [InlineData("/orders/\"eu\"", false)]
    [InlineData("/bestellungen/größe", true)]
    [InlineData("orders\u00A0eu", false)]
    public void a_source_is_a_uri_reference(string source, bool valid)
    {
        Assert.Equal(valid, UriText.IsReference(source));
    }

    [Theory]
    [InlineData("https://example.com/schemas/order.json", true)]
    [InlineData("urn:cairn:schema:order.placed:2", true)]
    [InlineData("/schemas/order.json", false)]
    [InlineData("order-v1", false)]
    [InlineData("1http://example.com", false)]
    [InlineData(":no-scheme", false)]
    [InlineData("https://example.com/a b", false)]
    [InlineData("https://example.com/schemas/{type}.json", false)]
    [InlineData("https://example.com/schemas/order^2.json", false)]
    [InlineData("urn:example:order`2", false)]
    [InlineData("https://example.com/%zz", false)]
    public void a_dataschema_is_an_absolute_uri(string dataSchema, bool valid)
    {
        Assert.Equal(valid, UriText.IsAbsolute(dataSchema));
    }

    // Cairn's own form names the type as it is, and a type name may hold what a URI may not: the registry checks it.
    [Fact]
    public async Task cairns_own_dataschema_of_a_type_name_no_uri_holds_is_taken()
    {
        var store = new InMemoryEventStore();

        await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [new EventData("order.{placed}", "{}"u8.ToArray()) { DataSchema = "urn:cairn:schema:order.{placed}:2" }]);

        Assert.Equal("urn:cairn:schema:order.{placed}:2", Assert.Single(await store.ReadStreamAsync("order-1").ToListAsync()).DataSchema);
        Assert.False(UriText.IsDataSchema("urn:example:order.{placed}:2"));
    }

    [Fact]
    public async Task an_event_with_a_relative_dataschema_is_refused_naming_it_and_a_relative_source_is_taken()
    {
        var store = new InMemoryEventStore();

        var refused = await Assert.ThrowsAsync<InvalidEventException>(() =>
            store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [new EventData("order.placed", "{}"u8.ToArray()) { DataSchema = "/schemas/order.json" }]));

        Assert.Contains("DataSchema '/schemas/order.json'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("absolute URI", refused.Message, StringComparison.Ordinal);
        await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [new EventData("order.placed", "{}"u8.ToArray()) { Source = "/orders" }]);
        var stored = Assert.Single(await store.ReadStreamAsync("order-1").ToListAsync());
        Assert.Equal("/orders", stored.Source);
    }

    // An event stored before these forms were checked is still routed as it was stored, not a send refused for ever.
    [Fact]
    public void a_stored_event_with_attributes_in_another_form_is_still_routed()
    {
        var recorded = new RecordedEvent(MessageId.New(), "order-1", 0, new GlobalPosition(1), "order.placed", "order service", DateTimeOffset.UnixEpoch, EventData.JsonContentType, "{}"u8.ToArray())
        {
            DataSchema = "order-v1",
        };

        var prepared = PreparedMessage.Prepare(EventMessages.ToMessage(recorded), new EventStoreOptions());

        Assert.Equal("order service", prepared.Source);
        Assert.Equal("order-v1", prepared.DataSchema);
        Assert.Throws<InvalidMessageException>(() => PreparedMessage.Prepare(new OutgoingMessage("order.placed", "{}"u8.ToArray()) { DataSchema = "order-v1" }, new EventStoreOptions()));
    }
}
