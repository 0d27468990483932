using System.Text;
using Cairn.DependencyInjection;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Cairn.Tests.Schemas;

// One event type through four deployments of its service.
public sealed record InvoiceIssuedV1(string Id, decimal Total);

public sealed record InvoiceIssuedV2(string Id, decimal Total, string? Note = null);

public sealed record InvoiceIssuedV2Changed(string Id, string Total, string? Note = null);

public sealed record InvoiceIssuedV3(string Id, decimal Total, string Customer, string? Note = null);

public sealed class SchemaRegistryHostTests
{
    private readonly InMemorySchemaStore _registry = new();

    private Task<IHost> StartAsync(Action<CairnOptions> configure) => SchemaHosts.StartAsync(_registry, configure);

    [Fact]
    public async Task the_host_registers_each_event_type_when_it_starts_and_writes_its_version_in_each_dataschema()
    {
        using var host = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued"));

        var versions = await host.Services.GetRequiredService<SchemaRegistry>().GetVersionsAsync("invoice.issued");
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var store = host.Services.GetRequiredService<IEventStore>();
        await store.AppendToStreamAsync("invoice-1", ExpectedVersion.NoStream, [serializer.ToEventData(new InvoiceIssuedV1("i-1", 10m))]);

        var schema = Assert.Single(versions);
        Assert.Equal(1, schema.Version);
        Assert.Equal(CompatibilityMode.Backward, await _registry.GetCompatibilityAsync("invoice.issued"));
        Assert.Equal("urn:cairn:schema:invoice.issued:1", (await EventStoreExtensions.ReadStreamAsync(store, "invoice-1").SingleAsync()).DataSchema);
        await host.StopAsync();
    }

    [Fact]
    public async Task cairns_own_types_are_left_out_of_the_applications_registry()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued");
            Cairn.Workflows.WorkflowEventTypes.Register(o.EventTypes);
        });

        Assert.Contains(host.Services.GetRequiredService<EventTypeRegistry>().Registrations.Keys, name => name.StartsWith("cairn.workflow.", StringComparison.Ordinal));
        Assert.Equal(["invoice.issued"], await _registry.GetEventTypesAsync());
        await host.StopAsync();
    }

    // With start-up registration off nothing is registered, checked or validated, but an event built by hand still
    // names its class's version: it was written without a dataschema, and read back as version 1 through the upcasters.
    [Fact]
    public async Task with_registration_off_an_event_built_by_hand_is_stamped_with_its_classs_version()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2);
            o.Schemas.RegisterOnStart = false;
        });
        var store = host.Services.GetRequiredService<IEventStore>();

        await store.AppendToStreamAsync("invoice-1", ExpectedVersion.NoStream, [new EventData("invoice.issued", """{"id":"i-1","total":10}"""u8.ToArray())]);
        var malformed = new EventData("invoice.issued", """{"id":"i-2","total":10}"""u8.ToArray()) { DataSchema = "urn:cairn:schema:invoice.issued:0" };

        Assert.Equal("urn:cairn:schema:invoice.issued:2", (await EventStoreExtensions.ReadStreamAsync(store, "invoice-1").SingleAsync()).DataSchema);
        await Assert.ThrowsAsync<UnknownSchemaVersionException>(() => store.AppendToStreamAsync("invoice-2", ExpectedVersion.NoStream, [malformed]));
        Assert.Empty(await _registry.GetEventTypesAsync());
        await host.StopAsync();
    }

    [Fact]
    public async Task a_restart_with_the_same_classes_registers_nothing_new_and_a_compatible_new_version_is_added()
    {
        using (var first = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued")))
        {
            await first.StopAsync();
        }

        using (var again = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued")))
        {
            await again.StopAsync();
        }

        Assert.Single(await _registry.GetVersionsAsync("invoice.issued"));

        // An optional field added to a closed content model: backward compatible, so version 2 is registered, and
        // version 1's events read as they are.
        using var second = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2));
        var versions = await _registry.GetVersionsAsync("invoice.issued");
        Assert.Equal([1, 2], versions.Select(v => v.Version));

        var serializer = second.Services.GetRequiredService<EventSerializer>();
        var v1 = new RecordedEvent(MessageId.New(), "invoice-1", 0, new GlobalPosition(1), "invoice.issued", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, Encoding.UTF8.GetBytes("""{"id":"i-1","total":10}"""))
        {
            DataSchema = "urn:cairn:schema:invoice.issued:1",
        };
        Assert.Equal(new InvoiceIssuedV2("i-1", 10m), serializer.Deserialize(v1));
        await second.StopAsync();
    }

    [Fact]
    public async Task a_changed_shape_under_a_registered_version_stops_the_start_naming_the_type_the_version_and_the_change()
    {
        using (var first = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2)))
        {
            await first.StopAsync();
        }

        var error = await Assert.ThrowsAsync<SchemaRegistrationException>(() => StartAsync(o => o.EventTypes.Register<InvoiceIssuedV2Changed>("invoice.issued", 2)));

        var problem = Assert.Single(error.Problems);
        Assert.Contains("'invoice.issued' version 2 is registered with another document", problem, StringComparison.Ordinal);
        Assert.Contains("register the new shape as version 3", problem, StringComparison.Ordinal);
        Assert.Contains("total", problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_new_required_field_breaks_backward_compatibility_and_stops_the_start_with_the_field_named()
    {
        using (var first = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2)))
        {
            await first.StopAsync();
        }

        var error = await Assert.ThrowsAsync<SchemaRegistrationException>(() => StartAsync(o => o.EventTypes.Register<InvoiceIssuedV3>("invoice.issued", 3)));

        var problem = Assert.Single(error.Problems);
        Assert.Contains("'invoice.issued' version 3 breaks the Backward compatibility", problem, StringComparison.Ordinal);
        Assert.Contains("customer", problem, StringComparison.Ordinal);
        Assert.Equal([2], (await _registry.GetVersionsAsync("invoice.issued")).Select(v => v.Version));
    }

    [Fact]
    public async Task without_compatibility_a_breaking_version_needs_an_upcaster_for_the_old_events_to_stay_readable()
    {
        using (var first = await StartAsync(o => o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2)))
        {
            await first.StopAsync();
        }

        var error = await Assert.ThrowsAsync<SchemaRegistrationException>(() => StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV3>("invoice.issued", 3);
            o.Schemas.Compatibility("invoice.issued", CompatibilityMode.None);
        }));
        Assert.Contains("events of version 2 could not be read as version 3: there is no upcaster from 2 to 3", Assert.Single(error.Problems), StringComparison.Ordinal);

        using var upcasting = await StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV3>("invoice.issued", 3);
            o.Schemas.Compatibility("invoice.issued", CompatibilityMode.None)
                .Upcast("invoice.issued", 2, 3, json =>
                {
                    json["customer"] = "unknown";
                    return json;
                });
        });
        Assert.Equal([2, 3], (await _registry.GetVersionsAsync("invoice.issued")).Select(v => v.Version));
        await upcasting.StopAsync();
    }

    [Fact]
    public async Task a_backend_without_a_schema_store_starts_unchecked_and_still_writes_each_dataschema()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UseBackend("bare", (_, options) => new Cairn.EventStore.InMemory.InMemoryEventStore(options), _ => new Cairn.Subscriptions.InMemoryCheckpointStore());
            o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2);
            o.Schemas.DefaultValidation = SchemaValidationMode.Reject;
        });
        using var host = builder.Build();
        await host.StartAsync();
        var store = host.Services.GetRequiredService<IEventStore>();

        // Nothing to validate against: the payload is written as it is, with the dataschema its class gives.
        await store.AppendToStreamAsync("invoice-1", ExpectedVersion.NoStream, [host.Services.GetRequiredService<EventSerializer>().ToEventData(new InvoiceIssuedV2("i-1", 1m))]);
        await store.AppendToStreamAsync("invoice-2", ExpectedVersion.NoStream, [new EventData("invoice.issued", Encoding.UTF8.GetBytes("""{"id": 1}"""))]);

        Assert.Equal("urn:cairn:schema:invoice.issued:2", (await EventStoreExtensions.ReadStreamAsync(store, "invoice-1").SingleAsync()).DataSchema);
        Assert.Null((await EventStoreExtensions.ReadStreamAsync(store, "invoice-2").SingleAsync()).DataSchema);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_broken_upcaster_chain_stops_the_start()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV3>("invoice.issued", 3);
            o.Schemas.Upcast("invoice.issued", 2, 1, json => json);
        }));

        Assert.Contains("The upcaster of 'invoice.issued' from version 2 to 1 is refused", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task under_reject_an_invalid_event_is_refused_on_append_and_nothing_is_written()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued");
            o.Schemas.Validation("invoice.issued", SchemaValidationMode.Reject);
        });
        var store = host.Services.GetRequiredService<IEventStore>();

        var error = await Assert.ThrowsAsync<SchemaValidationException>(() => store.AppendToStreamAsync("invoice-1", ExpectedVersion.NoStream,
            [new EventData("invoice.issued", Encoding.UTF8.GetBytes("""{"id":"i-1","total":"ten","extra":1}"""))]));

        Assert.Contains(error.Violations, v => v.Path == "/total");
        Assert.Contains(error.Violations, v => v.Rule == "additionalProperties");
        Assert.Equal(0, await EventStoreExtensions.ReadStreamAsync(store, "invoice-1").CountAsync());
        await host.StopAsync();
    }

    [Fact]
    public async Task a_supplied_document_replaces_the_generated_one_and_a_bad_one_stops_the_start()
    {
        using (var host = await StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued");
            o.Schemas.Document("invoice.issued", 1, """{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["id"]}""");
        }))
        {
            var registered = Assert.Single(await _registry.GetVersionsAsync("invoice.issued"));
            Assert.Equal("http://json-schema.org/draft-07/schema#", registered.Schema["$schema"]!.GetValue<string>());
            await host.StopAsync();
        }

        var error = await Assert.ThrowsAsync<SchemaRegistrationException>(() => StartAsync(o =>
        {
            o.EventTypes.Register<InvoiceIssuedV2>("invoice.issued", 2);
            o.Schemas.Document("invoice.issued", 2, """{"type": "objekt"}""");
        }));
        Assert.Contains("is not a valid JSON Schema document", Assert.Single(error.Problems), StringComparison.Ordinal);
    }
}
