using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Schemas;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Tests.Schemas;

public sealed class SchemaDocumentTests
{
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    [Fact]
    public void a_class_schema_is_generated_in_2020_12_with_its_constructor_parameters_required()
    {
        var schema = JsonSchemaDocuments.Generate(typeof(CustomerRegistered), Web);

        Assert.Equal(JsonSchemaDocuments.Draft202012, schema["$schema"]!.GetValue<string>());
        Assert.Equal("object", schema["type"]!.GetValue<string>());
        Assert.Equal(["firstName", "lastName", "credit"], schema["required"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal("string", schema["properties"]!["firstName"]!["type"]!.GetValue<string>());
        Assert.NotNull(schema["properties"]!["credit"]!["properties"]!["currency"]);
        JsonSchemaDocuments.Check("customer.registered", 3, schema);
    }

    [Fact]
    public void a_malformed_document_is_refused_with_where_it_broke()
    {
        var error = Assert.Throws<InvalidSchemaException>(() => JsonSchemaDocuments.Parse("order.placed", 2, """{"type": "object", "properties": {"""));

        Assert.Equal("order.placed", error.EventType);
        Assert.Equal(2, error.Version);
        Assert.Contains("not valid JSON", error.Message, StringComparison.Ordinal);
        Assert.StartsWith("line 1", error.Violations[0].Path, StringComparison.Ordinal);
    }

    [Fact]
    public void a_document_that_is_not_an_object_is_refused()
    {
        var error = Assert.Throws<InvalidSchemaException>(() => JsonSchemaDocuments.Parse("order.placed", 1, "[]"));

        Assert.Contains("must be a JSON object", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"type": "objekt"}""", "/type")]
    [InlineData("""{"type": "object", "properties": {"amount": {"minimum": "zero"}}}""", "/properties/amount/minimum")]
    [InlineData("""{"$schema": "http://json-schema.org/draft-07/schema#", "required": "id"}""", "/required")]
    [InlineData("""{"type": "object", "additionalProperties": 3}""", "/additionalProperties")]
    public void a_document_that_is_not_valid_json_schema_is_refused_naming_the_keyword_and_place(string document, string path)
    {
        var error = Assert.Throws<InvalidSchemaException>(() => JsonSchemaDocuments.Check("order.placed", 1, JsonSchemaDocuments.Parse("order.placed", 1, document)));

        Assert.Contains(error.Violations, v => v.Path == path);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void an_unknown_draft_is_refused_naming_the_ones_read()
    {
        var error = Assert.Throws<InvalidSchemaException>(() => JsonSchemaDocuments.Check("order.placed", 1, new JsonObject { ["$schema"] = "http://json-schema.org/draft-03/schema#" }));

        Assert.Contains("2020-12", error.Message, StringComparison.Ordinal);
        Assert.Contains("draft-07", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("#/$defs/missing", "/properties/line/$ref")]
    [InlineData("https://example.com/line.json", "/properties/line/$ref")]
    [InlineData("#nowhere", "/properties/line/$ref")]
    public void a_reference_that_does_not_resolve_inside_the_document_is_refused(string reference, string path)
    {
        var schema = new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { ["line"] = new JsonObject { ["$ref"] = reference } } };

        var error = Assert.Throws<InvalidSchemaException>(() => JsonSchemaDocuments.Check("order.placed", 1, schema));

        Assert.Equal(path, Assert.Single(error.Violations).Path);
        Assert.Contains(reference, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void local_references_resolve()
    {
        JsonSchemaDocuments.Check("order.placed", 1, JsonSchemaDocuments.Parse("order.placed", 1, """
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/line"}, "b": {"$ref": "#/$defs/a~1b"}, "c": {"$ref": "#"}},
             "$defs": {"line": {"type": "string"}, "a/b": {"type": "integer"}}}
            """));
    }

    [Fact]
    public void documents_equal_whatever_the_order_of_members_are_the_same()
    {
        Assert.True(JsonSchemaDocuments.SameDocument(JsonNode.Parse("""{"a":1,"b":[1,2]}"""), JsonNode.Parse("""{"b":[1,2],"a":1}""")));
        Assert.False(JsonSchemaDocuments.SameDocument(JsonNode.Parse("""{"b":[2,1]}"""), JsonNode.Parse("""{"b":[1,2]}""")));
    }

    private static readonly JsonObject OrderV1 = JsonSchemaDocuments.Parse("order.placed", 1, """
        {"type": "object", "properties": {"id": {"type": "string"}, "lines": {"type": "array", "items": {"type": "object",
         "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}}, "required": ["sku", "quantity"]}}},
         "required": ["id", "lines"]}
        """);

    private static PayloadSchemas Loaded(SchemaValidationMode mode, JsonObject? schema = null)
    {
        var payloads = new PayloadSchemas();
        payloads.Load([("order.placed", 1, mode, [new RegisteredSchema("order.placed", 1, schema ?? OrderV1)])], NullLogger.Instance);
        return payloads;
    }

    private static EventData Order(string json, string? dataSchema = null) =>
        new(MessageId.New(), "order.placed", Encoding.UTF8.GetBytes(json)) { DataSchema = dataSchema };

    [Fact]
    public async Task an_invalid_payload_is_refused_on_append_with_each_json_path_and_rule_and_nothing_is_written()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Reject) });
        var valid = Order("""{"id": "o-1", "lines": [{"sku": "apple", "quantity": 2}]}""");
        var invalid = Order("""{"id": 7, "lines": [{"sku": "apple", "quantity": 0}, {"quantity": 1}]}""");

        var error = await Assert.ThrowsAsync<SchemaValidationException>(() => store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [valid, invalid]));

        Assert.Equal("order.placed", error.EventType);
        Assert.Equal(1, error.Version);
        Assert.Contains(error.Violations, v => v.Path == "/id" && v.Rule == "type");
        Assert.Contains(error.Violations, v => v.Path == "/lines/0/quantity" && v.Rule == "minimum");
        Assert.Contains(error.Violations, v => v.Path == "/lines/1" && v.Rule == "required");
        Assert.Contains(invalid.Id.ToString(), error.Message, StringComparison.Ordinal);
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(CancellationToken.None));
    }

    [Fact]
    public async Task a_valid_payload_is_written_with_its_current_dataschema_when_it_had_none()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Reject) });

        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": "o-1", "lines": []}""")]);

        var stored = await EventStoreExtensions.ReadStreamAsync(store, "order-1").SingleAsync();
        Assert.Equal("urn:cairn:schema:order.placed:1", stored.DataSchema);
    }

    [Fact]
    public async Task under_warn_an_invalid_payload_is_written_and_counted()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Warn) });

        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": 7}""")]);

        Assert.Equal(1, await EventStoreExtensions.ReadStreamAsync(store, "order-1").CountAsync());
    }

    [Fact]
    public async Task a_dataschema_naming_a_version_the_registry_does_not_have_is_refused_even_with_validation_off()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Off) });

        var error = await Assert.ThrowsAsync<UnknownSchemaVersionException>(() =>
            store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": "o-1", "lines": []}""", "urn:cairn:schema:order.placed:9")]));

        Assert.Equal(9, error.Version);
        Assert.Contains("the registry has versions 1", error.Message, StringComparison.Ordinal);
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(CancellationToken.None));
    }

    [Fact]
    public void an_invalid_message_is_refused_before_it_is_sent()
    {
        var options = new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Reject) };
        var message = new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("""{"lines": "none"}"""));

        var error = Assert.Throws<SchemaValidationException>(() => PreparedMessage.Prepare(message, options));

        Assert.Contains(error.Violations, v => v.Path == "" && v.Rule == "required");
        Assert.Contains(error.Violations, v => v.Path == "/lines" && v.Rule == "type");
    }

    [Fact]
    public void a_payload_of_a_type_without_a_schema_passes_as_it_is_and_another_producers_dataschema_is_kept()
    {
        var payloads = Loaded(SchemaValidationMode.Reject);

        Assert.Null(payloads.Check("order.shipped", null, "[]"u8.ToArray(), "event", MessageId.New()));
        Assert.Equal("https://example.com/s.json", payloads.Check("order.placed", "https://example.com/s.json", """{"id": "o-1", "lines": []}"""u8.ToArray(), "event", MessageId.New()));
    }

    /// <summary>
    /// Readers read a payload under another producer's dataschema as the type's current version, so validation checks
    /// it against that version: under Reject it was written unchecked, and its readers then failed on it.
    /// </summary>
    [Fact]
    public async Task under_reject_a_payload_under_another_producers_dataschema_is_validated_as_the_current_version()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Reject) });

        var error = await Assert.ThrowsAsync<SchemaValidationException>(() =>
            store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": 7}""", "https://example.com/s.json")]));

        Assert.Equal(1, error.Version);
        Assert.Contains(error.Violations, v => v.Path == "/id" && v.Rule == "type");
        Assert.Contains(error.Violations, v => v.Path == "" && v.Rule == "required");
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(CancellationToken.None));
    }

    [Fact]
    public void under_reject_a_message_under_another_producers_dataschema_is_validated_before_it_is_sent()
    {
        var options = new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Reject) };
        var message = new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("""{"lines": "none"}""")) { DataSchema = "https://example.com/s.json" };

        var error = Assert.Throws<SchemaValidationException>(() => PreparedMessage.Prepare(message, options));

        Assert.Contains(error.Violations, v => v.Path == "/lines" && v.Rule == "type");
    }

    [Fact]
    public async Task under_warn_a_payload_under_another_producers_dataschema_that_does_not_match_is_written_with_its_dataschema()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Warn) });

        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": 7}""", "https://example.com/s.json")]);

        var stored = await EventStoreExtensions.ReadStreamAsync(store, "order-1").SingleAsync();
        Assert.Equal("https://example.com/s.json", stored.DataSchema);
    }
    /// <summary>
    /// A dataschema of Cairn's form names a version from 1 to <see cref="int.MaxValue"/>: one naming 0, a negative
    /// number or a number past that is refused as malformed. It was taken for another producer's URI and written
    /// unchecked, where readers then read it as the current version.
    /// </summary>
    [Theory]
    [InlineData("urn:cairn:schema:order.placed:0", "'0'")]
    [InlineData("urn:cairn:schema:order.placed:-1", "'-1'")]
    [InlineData("urn:cairn:schema:order.placed:2147483648", "'2147483648'")]
    public async Task a_cairn_dataschema_naming_no_version_from_1_to_int_max_is_refused_as_malformed(string dataSchema, string named)
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Off) });

        var error = await Assert.ThrowsAsync<UnknownSchemaVersionException>(() =>
            store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": "o-1", "lines": []}""", dataSchema)]));

        Assert.Equal(dataSchema, error.DataSchema);
        Assert.Contains(dataSchema, error.Message, StringComparison.Ordinal);
        Assert.Contains(named + " is no version", error.Message, StringComparison.Ordinal);
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(CancellationToken.None));
    }

    [Fact]
    public void a_cairn_dataschema_naming_no_version_is_refused_before_a_message_is_sent()
    {
        var options = new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Off) };
        var message = new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("""{"id": "o-1", "lines": []}""")) { DataSchema = "urn:cairn:schema:order.placed:0" };

        Assert.Throws<UnknownSchemaVersionException>(() => PreparedMessage.Prepare(message, options));
    }

    [Fact]
    public async Task a_cairn_dataschema_naming_a_registered_version_is_written_as_it_is()
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Reject) });

        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Order("""{"id": "o-1", "lines": []}""", "urn:cairn:schema:order.placed:1")]);

        var stored = await EventStoreExtensions.ReadStreamAsync(store, "order-1").SingleAsync();
        Assert.Equal("urn:cairn:schema:order.placed:1", stored.DataSchema);
    }

    // A type with no class here (a gateway appending another service's events as JSON) still has its dataschema of
    // Cairn's form checked: one naming no version, or another type, was written unchecked, and every reader with the
    // class refused the event for good.
    [Theory]
    [InlineData("urn:cairn:schema:audit.entry:0", "it has no class here")]
    [InlineData("urn:cairn:schema:order.placed:1", "names the type 'order.placed'")]
    public async Task a_malformed_cairn_dataschema_of_a_type_with_no_class_here_is_refused(string dataSchema, string said)
    {
        var store = new InMemoryEventStore(new EventStoreOptions { Schemas = Loaded(SchemaValidationMode.Off) });

        var error = await Assert.ThrowsAsync<UnknownSchemaVersionException>(() =>
            store.AppendToStreamAsync("audit-1", ExpectedVersion.NoStream, [new EventData("audit.entry", """{"a": 1}"""u8.ToArray()) { DataSchema = dataSchema }]));

        Assert.Contains(said, error.Message, StringComparison.Ordinal);
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(CancellationToken.None));
        await store.AppendToStreamAsync("audit-1", ExpectedVersion.NoStream, [new EventData("audit.entry", """{"a": 1}"""u8.ToArray()) { DataSchema = "urn:cairn:schema:audit.entry:3" }]);
    }
}
