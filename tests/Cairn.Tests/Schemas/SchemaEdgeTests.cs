using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Schemas;

public sealed record ParcelNoted(string Id, string? Note);

public sealed record ParcelShipped(string Id, DateTime At, TimeOnly Window, Uri Track);

public sealed record CartCleared();

public sealed record CartClearedV2(string? Reason = null);

public sealed record ParcelAddress(string Street, string? Unit);

public sealed record ParcelAddressed(string Id, ParcelAddress To);

/// <summary>
/// Schemas as the registry reads, generates and enforces them: a document naming no draft, members the serializer leaves
/// out, classes without properties, and formats.
/// </summary>
public sealed class SchemaEdgeTests
{
    private readonly InMemorySchemaStore _registry = new();

    private static JsonObject Json(string text) => JsonNode.Parse(text)!.AsObject();

    private Task<IHost> StartAsync(Action<CairnOptions> configure) => SchemaHosts.StartAsync(_registry, configure);

    [Theory]
    [InlineData("""{"type": "object", "properties": {"id": {"type": "string"}}}""",
                """{"type": "object", "properties": {"id": {"type": "string"}}, "unevaluatedProperties": false}""",
                """{"id": "a", "note": "x"}""")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}""",
                """{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false, "dependentRequired": {"a": ["b"]}}""",
                """{"a": "x"}""")]
    public async Task a_registered_document_naming_no_draft_is_compared_as_the_2020_12_it_is_validated_as(string v1, string v2, string writtenByV1)
    {
        var registry = new SchemaRegistry(new InMemorySchemaStore());
        await registry.RegisterAsync("doc.changed", 1, Json(v1), CompatibilityMode.Backward);

        // Version 2 refuses what version 1 wrote: a breaking change, though only in 2020-12's keywords.
        Assert.Empty(JsonSchemaDocuments.Validate(JsonSchemaDocuments.Build(Json(v1)), Encoding.UTF8.GetBytes(writtenByV1)));
        Assert.NotEmpty(JsonSchemaDocuments.Validate(JsonSchemaDocuments.Build(Json(v2)), Encoding.UTF8.GetBytes(writtenByV1)));
        await Assert.ThrowsAsync<IncompatibleSchemaException>(() => registry.RegisterAsync("doc.changed", 2, Json(v2), CompatibilityMode.Backward));
    }

    /// <summary>A store that runs <c>between</c> after its first read of versions, as another process would meanwhile.</summary>
    private sealed class InterleavingStore(ISchemaStore inner, Func<Task> between) : ISchemaStore
    {
        private int _reads;

        public async Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default)
        {
            var versions = await inner.GetVersionsAsync(eventType, cancellationToken);
            if (Interlocked.Increment(ref _reads) == 1)
            {
                await between();
            }

            return versions;
        }

        public Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default) => inner.GetEventTypesAsync(cancellationToken);

        public Task AddVersionAsync(RegisteredSchema schema, CancellationToken cancellationToken = default) => inner.AddVersionAsync(schema, cancellationToken);

        public Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default) => inner.GetCompatibilityAsync(eventType, cancellationToken);

        public Task SetCompatibilityAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken = default) => inner.SetCompatibilityAsync(eventType, mode, cancellationToken);
    }

    [Fact]
    public async Task a_version_checked_against_an_empty_registry_is_checked_again_when_another_process_adds_the_first_meanwhile()
    {
        var shared = new InMemorySchemaStore();
        var v1 = Json("""{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": false}""");
        var v2 = Json("""{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {"id": {"type": "integer"}, "customer": {"type": "string"}}, "required": ["id", "customer"], "additionalProperties": false}""");
        var oldCode = new SchemaRegistry(shared);
        var newCode = new SchemaRegistry(new InterleavingStore(shared, () => oldCode.RegisterAsync("order.placed", 1, v1, CompatibilityMode.Backward)));

        // The new code read no versions; the old one adds version 1 before the new one adds version 2.
        await Assert.ThrowsAsync<IncompatibleSchemaException>(() => newCode.RegisterAsync("order.placed", 2, v2, CompatibilityMode.Backward));
        Assert.Equal([1], (await shared.GetVersionsAsync("order.placed")).Select(s => s.Version));
    }

    [Fact]
    public async Task under_reject_the_serializers_own_payload_is_taken_when_it_leaves_null_members_out()
    {
        using var host = await StartAsync(o =>
        {
            o.JsonOptions = new JsonSerializerOptions(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
            o.EventTypes.Register<ParcelNoted>("parcel.noted");
            o.Schemas.Validation("parcel.noted", SchemaValidationMode.Reject);
        });
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var store = host.Services.GetRequiredService<IEventStore>();

        await store.AppendToStreamAsync("parcel-1", ExpectedVersion.NoStream, [serializer.ToEventData(new ParcelNoted("p-1", null)), serializer.ToEventData(new ParcelNoted("p-1", "fragile"))]);

        Assert.Equal(2, await store.ReadStreamAsync("parcel-1").CountAsync());
        var schema = JsonSchemaDocuments.Generate(typeof(ParcelNoted), new JsonSerializerOptions(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull });
        Assert.Equal(["id"], schema["required"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public void nested_classes_are_closed_models_and_their_members_left_out_are_not_required()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
        var schema = JsonSchemaDocuments.Generate(typeof(ParcelAddressed), options);

        Assert.False(schema["properties"]!["to"]!["additionalProperties"]!.GetValue<bool>());
        var payload = JsonSerializer.SerializeToUtf8Bytes(new ParcelAddressed("p-1", new ParcelAddress("Main St", null)), options);
        Assert.Empty(JsonSchemaDocuments.Validate(JsonSchemaDocuments.Build(schema), payload));
    }

    [Fact]
    public async Task a_class_without_properties_is_a_closed_model_so_adding_an_optional_field_later_is_backward_compatible()
    {
        Assert.False(JsonSchemaDocuments.Generate(typeof(CartCleared), JsonSerializerOptions.Web)["additionalProperties"]!.GetValue<bool>());

        using (var v1 = await StartAsync(o => o.EventTypes.Register<CartCleared>("cart.cleared")))
        {
            await v1.StopAsync();
        }

        using var v2 = await StartAsync(o => o.EventTypes.Register<CartClearedV2>("cart.cleared", 2));
        Assert.Equal(2, (await _registry.GetVersionsAsync("cart.cleared")).Count);
    }

    [Fact]
    public async Task under_reject_the_serializers_own_dates_times_and_uris_are_taken_as_the_formats_are_not_enforced()
    {
        using var host = await StartAsync(o =>
        {
            o.EventTypes.Register<ParcelShipped>("parcel.shipped");
            o.Schemas.Validation("parcel.shipped", SchemaValidationMode.Reject);
        });
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        // A DateTime without an offset, a TimeOnly and a relative Uri are what System.Text.Json writes, and not what
        // the strict date-time, time and uri formats take.
        var shipped = new ParcelShipped("p-1", new DateTime(2026, 11, 30, 10, 0, 0, DateTimeKind.Unspecified), new TimeOnly(10, 1, 2), new Uri("/track/p-1", UriKind.Relative));
        await store.AppendToStreamAsync("parcel-1", ExpectedVersion.NoStream, [serializer.ToEventData(shipped)]);

        Assert.Equal(shipped, serializer.Deserialize(await store.ReadStreamAsync("parcel-1").SingleAsync()));
    }

    private static JsonObject Parsed(string json) => (JsonObject)JsonNode.Parse(json)!;

    /// <summary>
    /// A "pattern" or "patternProperties" key that is no regular expression makes a document that is no JSON Schema:
    /// refused with <see cref="InvalidSchemaException"/> on registration and check, where a raw
    /// <c>RegexParseException</c> came out.
    /// </summary>
    [Theory]
    [InlineData("""{"type":"object","properties":{"code":{"type":"string","pattern":"("}}}""")]
    [InlineData("""{"type":"object","patternProperties":{"(":{"type":"string"}}}""")]
    public async Task a_document_with_a_pattern_that_is_no_regular_expression_is_refused_with_a_typed_error(string document)
    {
        var registry = new SchemaRegistry(new InMemorySchemaStore());

        await Assert.ThrowsAsync<InvalidSchemaException>(() => registry.RegisterAsync("parcel.noted", 1, Parsed(document), CompatibilityMode.Backward));
        await Assert.ThrowsAsync<InvalidSchemaException>(() => registry.CheckAsync("parcel.noted", 1, Parsed(document), CompatibilityMode.Backward));
    }

    /// <summary>The host's start names such a document among its problems, where the raw exception stopped it.</summary>
    [Fact]
    public async Task a_host_given_a_document_with_a_bad_pattern_fails_naming_its_event_type()
    {
        var error = await Record.ExceptionAsync(async () =>
        {
            using var host = await SchemaHosts.StartAsync(new InMemorySchemaStore(), o =>
            {
                o.EventTypes.Register<ParcelNoted>("parcel.noted");
                o.Schemas.Document("parcel.noted", 1, """{"type":"object","properties":{"code":{"type":"string","pattern":"[a-"}}}""");
            });
        });

        var registration = Assert.IsType<SchemaRegistrationException>(error);
        Assert.Contains(registration.Problems, p => p.Contains("parcel.noted", StringComparison.Ordinal));
    }

    /// <summary>
    /// A snapshot listing an event type twice is no snapshot: <see cref="InvalidSchemaSnapshotException"/>, which the CLI
    /// reports in one line, where an <see cref="ArgumentException"/> came out of the listing.
    /// </summary>
    [Fact]
    public void a_snapshot_listing_an_event_type_twice_is_refused_as_no_snapshot()
    {
        const string json = """
            {"cairnSchemaSnapshot": 1, "eventTypes": {
              "order.placed": {"compatibility": "Backward", "versions": [{"version": 1, "schema": {"type": "object"}}]},
              "order.placed": {"compatibility": "Backward", "versions": [{"version": 1, "schema": {"type": "string"}}]}
            }}
            """;

        Assert.Throws<InvalidSchemaSnapshotException>(() => SchemaSnapshot.Parse(json));
    }

    /// <summary>
    /// A type name's <c>dataschema</c> asked for before its class was registered (a message read first) was kept as
    /// version 1 for good: the class registered later as version 2 was written as version 1, and its events upcast from
    /// version 1 when read back.
    /// </summary>
    [Fact]
    public void a_type_registered_after_its_dataschema_was_first_asked_for_is_written_with_its_own_version()
    {
        var types = new EventTypeRegistry();
        var serializer = new EventSerializer(types);
        _ = serializer.VersionOf("cart.cleared", "urn:cairn:schema:cart.cleared:1", "a message read before the class was registered");

        types.Register<CartClearedV2>("cart.cleared", version: 2);

        Assert.Equal("urn:cairn:schema:cart.cleared:2", serializer.ToEventData(new CartClearedV2()).DataSchema);
    }
    /// <summary>
    /// A schema of <paramref name="levels"/> objects, each holding the next under "n" (two JSON levels each: the object
    /// and its "properties"), the innermost a string: a payload matching it is <paramref name="levels"/> objects deep.
    /// </summary>
    private static string NestedSchema(int levels)
    {
        var text = """{"type":"string"}""";
        for (var i = 0; i < levels; i++)
        {
            text = $$"""{"type":"object","properties":{"n":{{text}}},"required":["n"]}""";
        }

        return text;
    }

    private static string NestedPayload(int levels, string innermost) =>
        string.Concat(Enumerable.Repeat("""{"n":""", levels)) + innermost + new string('}', levels);

    /// <summary>Parsed past System.Text.Json's default depth of 64, as a caller building a document in code could.</summary>
    private static JsonObject ParsedDeep(string json) =>
        (JsonObject)JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 1_000 })!;

    /// <summary>
    /// A schema of about 100 JSON levels is valid JSON Schema: System.Text.Json's default limit of 64 levels made its
    /// parse throw a raw <see cref="JsonException"/> on registration, and its snapshot could not be written.
    /// </summary>
    [Fact]
    public async Task a_schema_nested_a_hundred_levels_deep_registers_validates_and_round_trips_through_a_snapshot()
    {
        var text = NestedSchema(50);
        var schema = JsonSchemaDocuments.Parse("parcel.nested", 1, text);
        var registry = new SchemaRegistry(new InMemorySchemaStore());

        Assert.True((await registry.RegisterAsync("parcel.nested", 1, schema, CompatibilityMode.Backward)).Added);
        Assert.NotNull((await registry.CheckAsync("parcel.nested", 1, schema, CompatibilityMode.Backward)).Registered);

        var payloads = new PayloadSchemas();
        payloads.Load([("parcel.nested", 1, SchemaValidationMode.Reject, await registry.GetVersionsAsync("parcel.nested"))], Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        Assert.Equal("urn:cairn:schema:parcel.nested:1", payloads.Check("parcel.nested", null, Encoding.UTF8.GetBytes(NestedPayload(50, "\"x\"")), "event", Envelopes.MessageId.New()));
        var error = Assert.Throws<SchemaValidationException>(() => payloads.Check("parcel.nested", null, Encoding.UTF8.GetBytes(NestedPayload(50, "7")), "event", Envelopes.MessageId.New()));
        Assert.Contains(error.Violations, v => v.Path == "/" + string.Join("/", Enumerable.Repeat("n", 50)) && v.Rule == "type");

        var read = SchemaSnapshot.Parse((await registry.ExportAsync()).ToJson());
        Assert.True(JsonSchemaDocuments.SameDocument(schema, Assert.Single(read.VersionsOf("parcel.nested")).Schema));

        // A host given the document registers it as well.
        var store = new InMemorySchemaStore();
        using (await SchemaHosts.StartAsync(store, o =>
        {
            o.EventTypes.Register<ParcelNoted>("parcel.noted");
            o.Schemas.Document("parcel.noted", 1, text);
        }))
        {
            Assert.True(JsonSchemaDocuments.SameDocument(schema, Assert.Single(await store.GetVersionsAsync("parcel.noted")).Schema));
        }
    }

    /// <summary>
    /// A schema at the depth limit is checked and validated on a thread with a small stack (1 MB, Windows' default):
    /// the meta-schema check, the compatibility comparer and the validator each recurse once or more per level.
    /// </summary>
    [Fact]
    public void a_schema_at_the_depth_limit_is_registered_and_validated_without_exhausting_a_small_stack()
    {
        // "not" in "not", one JSON level each: the deepest recursion a document of this depth can ask of the validator.
        var text = """{"type":"string"}""";
        for (var i = 1; i < JsonSchemaDocuments.MaxDepth; i++)
        {
            text = $$"""{"not":{{text}}}""";
        }

        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                var schema = JsonSchemaDocuments.Parse("parcel.deep", 1, text);
                var registry = new SchemaRegistry(new InMemorySchemaStore());
                registry.RegisterAsync("parcel.deep", 1, schema, CompatibilityMode.Backward).GetAwaiter().GetResult();
                var built = JsonSchemaDocuments.Build(schema);

                // 255 "not"s around "string": an odd count, so a string fails and a number passes.
                Assert.NotEmpty(JsonSchemaDocuments.Validate(built, "\"x\""u8.ToArray()));
                Assert.Empty(JsonSchemaDocuments.Validate(built, "7"u8.ToArray()));
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        }, maxStackSize: 1024 * 1024);
        thread.Start();
        thread.Join();

        Assert.Null(failure);
    }

    /// <summary>
    /// Past the limit a schema is refused with the registry's typed errors, naming the limit, wherever it comes in: as
    /// text, as a document built in code, in a snapshot read or written.
    /// </summary>
    [Fact]
    public async Task a_schema_nested_past_the_depth_limit_is_refused_with_a_typed_error_naming_the_limit()
    {
        var text = NestedSchema(130);
        var limit = JsonSchemaDocuments.MaxDepth.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var parsed = Assert.Throws<InvalidSchemaException>(() => JsonSchemaDocuments.Parse("parcel.nested", 1, text));
        Assert.Contains(limit, parsed.Message, StringComparison.Ordinal);

        var registry = new SchemaRegistry(new InMemorySchemaStore());
        var registered = await Assert.ThrowsAsync<InvalidSchemaException>(() => registry.RegisterAsync("parcel.nested", 1, ParsedDeep(text), CompatibilityMode.Backward));
        Assert.Contains(limit, registered.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidSchemaException>(() => registry.CheckAsync("parcel.nested", 1, ParsedDeep(text), CompatibilityMode.Backward));
        Assert.Empty(await registry.GetEventTypesAsync());

        var snapshotText = """{"cairnSchemaSnapshot": 1, "eventTypes": {"parcel.nested": {"compatibility": "Backward", "versions": [{"version": 1, "schema": """ + text + "}]}}}";
        var read = Assert.Throws<InvalidSchemaSnapshotException>(() => SchemaSnapshot.Parse(snapshotText));
        Assert.Contains(limit, read.Message, StringComparison.Ordinal);

        var snapshot = new SchemaSnapshot([new SchemaSnapshot.TypeEntry("parcel.nested", CompatibilityMode.Backward, [new RegisteredSchema("parcel.nested", 1, ParsedDeep(text))])]);
        var written = Assert.Throws<InvalidSchemaException>(snapshot.ToJson);
        Assert.Contains(limit, written.Message, StringComparison.Ordinal);
    }

    // The host registers and validates the event types it has when it starts; one added afterwards would be written
    // naming a version the registry does not have, never checked. It is refused; one already registered may be repeated.
    [Fact]
    public async Task an_event_type_registered_after_the_host_started_is_refused()
    {
        var schemas = new InMemorySchemaStore();
        using var host = await SchemaHosts.StartAsync(schemas, o => o.EventTypes.Register<InvoiceIssuedV1>("invoice.issued"));
        var types = host.Services.GetRequiredService<EventTypeRegistry>();

        var refused = Assert.Throws<InvalidOperationException>(() => types.Register<LateRegistration>("invoice.late", 3));
        Assert.Contains("'invoice.late'", refused.Message, StringComparison.Ordinal);
        types.Register<InvoiceIssuedV1>("invoice.issued");

        Assert.False(types.TryGetType("invoice.late", out _));
        Assert.Empty(await schemas.GetVersionsAsync("invoice.late"));
        await host.StopAsync();
    }

    private sealed record LateRegistration(string Id);
}
