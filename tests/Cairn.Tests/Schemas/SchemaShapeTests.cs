using System.Text;
using System.Text.Json.Serialization;
using Cairn.DependencyInjection;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Routing;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Cairn.Tests.Schemas;

// A payment method as System.Text.Json's own polymorphism writes it: {"$type": "card", "last4": "1234"}.
[JsonPolymorphic]
[JsonDerivedType(typeof(EdgeCardPayment), "card")]
[JsonDerivedType(typeof(EdgeCashPayment), "cash")]
public abstract record EdgePaymentMethod;

public sealed record EdgeCardPayment(string Last4) : EdgePaymentMethod;

public sealed record EdgeCashPayment(decimal Tendered) : EdgePaymentMethod;

public sealed record EdgeOrderPaid(string OrderId, EdgePaymentMethod Method);

// A recursive class: a category tree, a comment thread, an org chart.
public sealed record EdgeCategory(string Name, IReadOnlyList<EdgeCategory> Children);

public sealed record EdgeInvoiceIssued(string Id, decimal Total);

// Version 2 of 'edge.customer-registered': version 1 had one "name".
public sealed record EdgeCustomerRegistered(string FirstName, string LastName);

/// <summary>Schemas generated for polymorphic and recursive classes, validation of types without a class, and routed events written before the registry.</summary>
public sealed class SchemaShapeTests
{
    private readonly InMemorySchemaStore _registry = new();

    private Task<IHost> StartAsync(Action<CairnOptions> configure) => SchemaHosts.StartAsync(_registry, configure);

    // Under Reject, an event the serializer wrote whose member is a polymorphic class ([JsonPolymorphic]) is taken: the
    // schema generated from the same class and options closes each subtype, not the base's choice of them (in 2020-12,
    // "additionalProperties" beside an "anyOf" would refuse "$type" and every member).
    [Fact]
    public async Task under_reject_the_serializers_own_payload_with_a_polymorphic_member_is_taken()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<EdgeOrderPaid>("edge.order-paid");
            o.Schemas.Validation("edge.order-paid", SchemaValidationMode.Reject);
        });
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var store = host.Services.GetRequiredService<IEventStore>();
        var paid = new EdgeOrderPaid("o-1", new EdgeCardPayment("1234"));

        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [serializer.ToEventData(paid)]);

        Assert.Equal(paid, serializer.Deserialize(await store.ReadStreamAsync("order-1").SingleAsync()));
        await host.StopAsync();
    }

    // The same for a recursive class, whose recursion the schema writes as {"$ref": "#"}: nothing is added beside the
    // reference, where it would refuse every member of every child.
    [Fact]
    public async Task under_reject_the_serializers_own_payload_of_a_recursive_class_is_taken()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<EdgeCategory>("edge.category-tree");
            o.Schemas.Validation("edge.category-tree", SchemaValidationMode.Reject);
        });
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var store = host.Services.GetRequiredService<IEventStore>();
        var tree = new EdgeCategory("root", [new EdgeCategory("leaf", [])]);

        await store.AppendToStreamAsync("tree-1", ExpectedVersion.NoStream, [serializer.ToEventData(tree)]);

        Assert.Equal(1, await store.ReadStreamAsync("tree-1").CountAsync());
        await host.StopAsync();
    }

    // A gateway appends 'edge.invoice-issued' events built by hand (no class of its own) whose schema its owner
    // registered, and sets Validation(type, Reject): an invalid payload is refused against the registered schema.
    [Fact]
    public async Task reject_validation_of_a_type_without_a_class_here_checks_the_registered_schema()
    {
        using (var owner = await StartAsync(o => o.EventTypes.Register<EdgeInvoiceIssued>("edge.invoice-issued")))
        {
            await owner.StopAsync();
        }

        Assert.Single(await _registry.GetVersionsAsync("edge.invoice-issued"));
        Exception? refused = null;
        try
        {
            using var gateway = await StartAsync(o => o.Schemas.Validation("edge.invoice-issued", SchemaValidationMode.Reject));
            var store = gateway.Services.GetRequiredService<IEventStore>();
            await store.AppendToStreamAsync("invoice-1", ExpectedVersion.NoStream,
                [new EventData("edge.invoice-issued", Encoding.UTF8.GetBytes("""{"id": 42, "total": "lots", "extra": true}"""))]);
            await gateway.StopAsync();
        }
        catch (Exception ex) when (ex is SchemaValidationException or SchemaRegistrationException or OptionsValidationException)
        {
            refused = ex;
        }

        Assert.True(refused is SchemaValidationException, $"an event that breaks the registered schema of its type was stored although its type's validation mode is Reject ({refused?.GetType().Name})");
    }

    // An event stored before the registry (no dataschema) reads as version 1 and is upcast; routed to a topic, its
    // message names version 1 too, so its consumer upcasts it as the store does, rather than the send stamping it as
    // the current version and the consumer reading version 1's JSON as version 2.
    [Fact]
    public async Task an_event_written_before_the_registry_is_routed_as_version_1_and_its_consumer_upcasts_it()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<EdgeCustomerRegistered>("edge.customer-registered", 2);
            o.Schemas.Compatibility("edge.customer-registered", CompatibilityMode.None);
            o.Schemas.Upcast("edge.customer-registered", 1, 2, json =>
            {
                var name = json["name"]!.GetValue<string>();
                json.Remove("name");
                json["firstName"] = name[..name.IndexOf(' ', StringComparison.Ordinal)];
                json["lastName"] = name[(name.IndexOf(' ', StringComparison.Ordinal) + 1)..];
                return json;
            });
        });
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var recorded = new RecordedEvent(MessageId.New(), new StreamName("customer-1"), 0, new GlobalPosition(1), "edge.customer-registered",
            "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes("""{"name":"Ada Lovelace"}"""));
        var asEvent = serializer.Deserialize(recorded);
        Assert.Equal(new EdgeCustomerRegistered("Ada", "Lovelace"), asEvent);

        // What the route's publish does with the message before it is written to the topic.
        var prepared = PreparedMessage.Prepare(EventMessages.ToMessage(recorded), host.Services.GetRequiredService<EventStoreOptions>());
        var delivered = new Message(recorded.Id, recorded.Type, recorded.Source, recorded.Time, recorded.ContentType, recorded.Data) { DataSchema = prepared.DataSchema };

        Assert.Equal(asEvent, serializer.Deserialize<EdgeCustomerRegistered>(delivered));
        await host.StopAsync();
    }
}
