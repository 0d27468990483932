using System.Text;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Schemas;

/// <summary>
/// The registry as running applications use it: a class's own payloads pass its generated schema (nullable elements
/// included), versions and schemas another host registers after this one started are read again when met, and a
/// broken stored document is blamed on its own version.
/// </summary>
public sealed class SchemaRegistryLifeTests
{
    public sealed record TaggedOrder(string Id, IReadOnlyList<string?> Tags);

    public sealed record AttributedOrder(string Id, Dictionary<string, string?> Attributes);

    public sealed record ItemV1(string Id);

    public sealed record ItemV2(string Id, string? Note = null);

    public sealed record Remote(string Id);

    public sealed record NestedOrder(string Id, IReadOnlyList<string> Plain, List<IReadOnlyList<string?>> Lines, string?[] Notes);

    [Fact]
    public async Task a_list_of_nullable_strings_written_by_its_own_class_passes_reject()
    {
        using var host = await SchemaHosts.StartAsync(new InMemorySchemaStore(), o =>
        {
            o.EventTypes.Register<TaggedOrder>("life.tagged");
            o.Schemas.Validation("life.tagged", SchemaValidationMode.Reject);
        });
        var data = host.Services.GetRequiredService<EventSerializer>().ToEventData(new TaggedOrder("o-1", ["gift", null]));

        var appended = await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [data]);
        Assert.Equal(0, appended.NextExpectedVersion);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_dictionary_with_nullable_values_written_by_its_own_class_passes_reject()
    {
        using var host = await SchemaHosts.StartAsync(new InMemorySchemaStore(), o =>
        {
            o.EventTypes.Register<AttributedOrder>("life.attributed");
            o.Schemas.Validation("life.attributed", SchemaValidationMode.Reject);
        });
        var data = host.Services.GetRequiredService<EventSerializer>().ToEventData(new AttributedOrder("o-1", new() { ["coupon"] = null }));

        var appended = await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [data]);
        Assert.Equal(0, appended.NextExpectedVersion);
        await host.StopAsync();
    }

    [Fact]
    public void a_collections_nullable_elements_may_be_null_in_its_generated_schema_and_others_may_not()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web);

        Assert.Equal("""["string","null"]""", JsonSchemaDocuments.Generate(typeof(TaggedOrder), options)["properties"]!["tags"]!["items"]!["type"]!.ToJsonString());
        Assert.Equal("""["string","null"]""", JsonSchemaDocuments.Generate(typeof(AttributedOrder), options)["properties"]!["attributes"]!["additionalProperties"]!["type"]!.ToJsonString());
        var nested = JsonSchemaDocuments.Generate(typeof(NestedOrder), options)["properties"]!;
        Assert.Equal("\"string\"", nested["plain"]!["items"]!["type"]!.ToJsonString());
        Assert.Equal("""["string","null"]""", nested["lines"]!["items"]!["items"]!["type"]!.ToJsonString());
        Assert.Equal("""["string","null"]""", nested["notes"]!["items"]!["type"]!.ToJsonString());
    }

    [Fact]
    public async Task a_version_registered_by_another_host_after_this_one_started_is_not_refused_as_unknown()
    {
        var registry = new InMemorySchemaStore();
        using var older = await SchemaHosts.StartAsync(registry, o => o.EventTypes.Register<ItemV1>("life.item", 1));
        using var newer = await SchemaHosts.StartAsync(registry, o => o.EventTypes.Register<ItemV2>("life.item", 2));
        Assert.Equal([1, 2], (await registry.GetVersionsAsync("life.item")).Select(v => v.Version));

        // What the newer deployment writes (and the older one's route would publish from a shared log).
        var written = newer.Services.GetRequiredService<EventSerializer>().ToEventData(new ItemV2("i-1", "n"));
        Assert.Equal("urn:cairn:schema:life.item:2", written.DataSchema);

        var appended = await older.Services.GetRequiredService<IEventStore>().AppendToStreamAsync("item-1", ExpectedVersion.NoStream, [written]);
        Assert.Equal(0, appended.NextExpectedVersion);

        // A version no host registered is still refused, after the versions are read again.
        var unknown = written with { Id = Envelopes.MessageId.New(), DataSchema = "urn:cairn:schema:life.item:3" };
        var refused = await Assert.ThrowsAsync<UnknownSchemaVersionException>(() => older.Services.GetRequiredService<IEventStore>().AppendToStreamAsync("item-2", ExpectedVersion.NoStream, [unknown]));
        Assert.Contains("the registry has versions 1, 2", refused.Message, StringComparison.Ordinal);
        await older.StopAsync();
        await newer.StopAsync();
    }

    [Fact]
    public async Task a_gateway_type_is_validated_once_its_owner_registers_a_schema()
    {
        var registry = new InMemorySchemaStore();

        // The gateway starts first: no schema yet, so it logs that the type is "not validated until a schema is registered for it".
        using var gateway = await SchemaHosts.StartAsync(registry, o => o.Schemas.Validation("life.remote", SchemaValidationMode.Reject));
        using var owner = await SchemaHosts.StartAsync(registry, o => o.EventTypes.Register<Remote>("life.remote"));
        Assert.Single(await registry.GetVersionsAsync("life.remote"));

        // The payload breaks the registered schema (no "id", an undeclared member).
        await Assert.ThrowsAsync<SchemaValidationException>(() => gateway.Services.GetRequiredService<IEventStore>().AppendToStreamAsync("remote-1", ExpectedVersion.NoStream,
            [new EventData("life.remote", Encoding.UTF8.GetBytes("""{"unexpected":1}"""))]));
        await gateway.StopAsync();
        await owner.StopAsync();
    }

    [Fact]
    public async Task a_document_supplied_for_a_version_no_class_is_at_stops_the_start_and_fails_the_check()
    {
        var refused = await Assert.ThrowsAsync<SchemaRegistrationException>(() => SchemaHosts.StartAsync(new InMemorySchemaStore(), o =>
        {
            o.EventTypes.Register<ItemV2>("life.item", 2);
            o.Schemas.Document("life.item", 1, """{"type": "object"}""");
            o.Schemas.Document("life.ghost", 1, """{"type": "object"}""");
        }));

        Assert.Equal(
            [
                "A schema document is supplied for 'life.ghost' version 1, but no class is registered for the type: it would never be used. Supply it for the version the class is at.",
                "A schema document is supplied for 'life.item' version 1, but its class is at version 2: it would never be used. Supply it for the version the class is at.",
            ],
            refused.Problems);

        var options = new SchemaOptions().Document("life.item", 1, """{"type": "object"}""");
        var report = SchemaCheck.Run(new EventTypeRegistry().Register<ItemV2>("life.item", 2), options, new JsonSerializerOptions(JsonSerializerDefaults.Web), new SchemaSnapshot([]));
        Assert.Contains(refused.Problems[1], report.Problems);
    }

    [Fact]
    public async Task a_version_checked_against_versions_read_before_another_host_added_its_predecessor_is_checked_again_and_registered()
    {
        static System.Text.Json.Nodes.JsonObject Closed(string properties) =>
            System.Text.Json.Nodes.JsonNode.Parse("""{"type": "object", "additionalProperties": false, "properties": """ + properties + "}")!.AsObject();

        var store = new InMemorySchemaStore();
        var registry = new SchemaRegistry(store);
        await registry.RegisterAsync("life.item", 1, Closed("""{"id": {"type": "string"}}"""), CompatibilityMode.Backward);
        var first = await store.GetVersionsAsync("life.item");
        await registry.RegisterAsync("life.item", 2, Closed("""{"id": {"type": "string"}, "note": {"type": "string"}}"""), CompatibilityMode.Backward);

        // This host read the versions before the other host's version 2 was added.
        var registration = await new SchemaRegistry(new StaleOnce(store, first)).RegisterAsync(
            "life.item", 3, Closed("""{"id": {"type": "string"}, "note": {"type": "string"}, "size": {"type": "integer"}}"""), CompatibilityMode.Backward);

        Assert.True(registration.Added);
        Assert.Equal([1, 2, 3], (await store.GetVersionsAsync("life.item")).Select(v => v.Version));
    }

    /// <summary>A registry whose first read of versions is one taken before another host's registration.</summary>
    private sealed class StaleOnce(ISchemaStore inner, IReadOnlyList<RegisteredSchema> stale) : ISchemaStore
    {
        private int _reads;

        public Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default) =>
            Interlocked.Increment(ref _reads) == 1 ? Task.FromResult(stale) : inner.GetVersionsAsync(eventType, cancellationToken);

        public Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default) => inner.GetEventTypesAsync(cancellationToken);

        public Task AddVersionAsync(RegisteredSchema schema, CancellationToken cancellationToken = default) => inner.AddVersionAsync(schema, cancellationToken);

        public Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default) => inner.GetCompatibilityAsync(eventType, cancellationToken);

        public Task SetCompatibilityAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken = default) => inner.SetCompatibilityAsync(eventType, mode, cancellationToken);
    }

    [Fact]
    public void an_invalid_document_in_the_snapshot_is_blamed_on_its_own_version_not_on_the_class()
    {
        var types = new EventTypeRegistry().Register<ItemV2>("life.item", 2);
        var snapshot = SchemaSnapshot.Parse("""
            {"cairnSchemaSnapshot": 1, "eventTypes": {"life.item": {"compatibility": "Backward", "versions": [
              {"version": 1, "schema": {"type": 5}}]}}}
            """);

        var report = SchemaCheck.Run(types, new SchemaOptions(), new JsonSerializerOptions(JsonSerializerDefaults.Web), snapshot);

        var problem = Assert.Single(report.Problems);
        // Version 2, the class's generated schema, is valid: the broken document is the snapshot's version 1.
        Assert.DoesNotContain("'life.item' version 2 is not a valid JSON Schema document", problem, StringComparison.Ordinal);
        Assert.Contains("version 1", problem, StringComparison.Ordinal);
    }
}
