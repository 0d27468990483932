using System.Text;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Schemas;

/// <summary>
/// Snapshots that read back as written, modes named exactly, payloads naming a property twice under validation, data
/// keywords holding a "$ref" member, and null elements refused by name.
/// </summary>
public sealed class SnapshotAndValidationEdgeTests
{
    private static JsonObject Closed() => new() { ["type"] = "object", ["additionalProperties"] = false };

    private static string SnapshotWithMode(string mode) => new JsonObject
    {
        ["cairnSchemaSnapshot"] = 1,
        ["eventTypes"] = new JsonObject
        {
            ["order.placed"] = new JsonObject
            {
                ["compatibility"] = mode,
                ["versions"] = new JsonArray(new JsonObject { ["version"] = 1, ["schema"] = new JsonObject { ["type"] = "object" } }),
            },
        },
    }.ToJsonString();

    // docs/schemas.md "The snapshot file": compatibility is one of CompatibilityMode's names; SchemaSnapshot.Parse promises
    // InvalidSchemaSnapshotException for a text that is no such snapshot. Enum.TryParse reads a comma-separated list as
    // the OR of flags: BackwardTransitive (1) | Forward (2) = ForwardTransitive (3), so a mode nobody wrote is checked.
    [Theory]
    [InlineData("BackwardTransitive, Forward")]
    [InlineData("Forward,BackwardTransitive")]
    [InlineData("Backward, Backward")]
    public void a_snapshot_compatibility_that_lists_several_modes_is_refused_not_read_as_another_mode(string mode)
    {
        var error = Record.Exception(() => SchemaSnapshot.Parse(SnapshotWithMode(mode)));

        Assert.IsType<InvalidSchemaSnapshotException>(error);
    }

    // docs/schemas.md: the snapshot is "written in ordinal order of type and version" and ToJson says "types and versions
    // in order". A snapshot built with its versions in another order (a caller's list, the public constructor) is
    // written in that order, and Parse then refuses the very text ToJson wrote.
    [Fact]
    public void a_snapshot_whose_versions_were_given_out_of_order_is_written_in_order_and_reads_back()
    {
        var snapshot = new SchemaSnapshot([new SchemaSnapshot.TypeEntry("order.placed", CompatibilityMode.Backward,
            [new RegisteredSchema("order.placed", 2, Closed()), new RegisteredSchema("order.placed", 1, Closed())])]);

        var text = snapshot.ToJson();
        var read = Record.Exception(() => SchemaSnapshot.Parse(text));

        Assert.Null(read);
        Assert.Equal([1, 2], SchemaSnapshot.Parse(text).VersionsOf("order.placed").Select(v => v.Version));
    }

    // Versions are contiguous (docs/schemas.md "Versions are contiguous"; Parse refuses a gap). The constructor accepts
    // versions 1 and 3, ToJson writes them, and Parse refuses its own output: the snapshot does not round-trip, and the
    // bad input is only found when the file is read again (by the pipeline's next run), not when it is made.
    [Fact]
    public void a_snapshot_with_a_gap_in_its_versions_is_refused_when_made_rather_than_written_unreadable()
    {
        var made = Record.Exception(() =>
        {
            var snapshot = new SchemaSnapshot([new SchemaSnapshot.TypeEntry("order.placed", CompatibilityMode.Backward,
                [new RegisteredSchema("order.placed", 1, Closed()), new RegisteredSchema("order.placed", 3, Closed())])]);
            SchemaSnapshot.Parse(snapshot.ToJson());
        });

        var refused = Assert.IsType<ArgumentException>(made);
        Assert.Contains("must be contiguous from 1 or more; they are 1, 3", refused.Message, StringComparison.Ordinal);
    }

    // ToJson wrote the number of a mode outside the enumeration, which Parse then refused.
    [Fact]
    public void a_snapshot_entry_with_a_mode_outside_the_enumeration_is_refused_when_made()
    {
        var error = Assert.Throws<ArgumentException>(() => new SchemaSnapshot([new SchemaSnapshot.TypeEntry("order.placed", (CompatibilityMode)99,
            [new RegisteredSchema("order.placed", 1, Closed())])]));

        Assert.Contains("is 99, not one of", error.Message, StringComparison.Ordinal);
    }

    // A snapshot must round-trip: a version filed under another type's entry keeps its own EventType in memory, and
    // comes back under the entry's name after ToJson/Parse (the snapshot is not what was written).
    [Fact]
    public void a_snapshot_entry_holding_another_types_version_is_refused_when_made()
    {
        var error = Record.Exception(() => new SchemaSnapshot([new SchemaSnapshot.TypeEntry("order.placed", CompatibilityMode.Backward,
            [new RegisteredSchema("order.shipped", 1, Closed())])]));

        Assert.IsType<ArgumentException>(error, exactMatch: false);
    }

    // docs/schemas.md: under Reject "a payload that does not match its version's schema is refused", and "a property named
    // twice in the stored JSON reaches the first upcaster with its last value, as the serializer reads it". Validation
    // (JsonSchemaDocuments.Validate through JsonSchema.Net) judges a property named twice by its FIRST value, so
    // {"note":"x","note":null} passes Reject and every reader then gets null in a non-nullable string.
    [Fact]
    public async Task reject_judges_a_property_named_twice_by_the_value_readers_get()
    {
        using var host = await SchemaHosts.StartAsync(new InMemorySchemaStore(), o =>
        {
            o.EventTypes.Register<EdgeNoted>();
            o.Schemas.Validation("edge-snapshot.noted", SchemaValidationMode.Reject);
        });
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        var error = await Record.ExceptionAsync(() => store.AppendToStreamAsync("note-1", ExpectedVersion.NoStream,
            [new EventData("edge-snapshot.noted", Encoding.UTF8.GetBytes("""{"id":"n-1","note":"x","note":null}"""))]));

        if (error is null)
        {
            // What a reader gets from the payload Reject let through: null where the schema (and the class) say string.
            var read = (EdgeNoted)serializer.Deserialize(await EventStoreExtensions.ReadStreamAsync(store, "note-1").SingleAsync());
            Assert.Fail($"the payload was written; a reader gets Note = {(read.Note is null ? "null" : read.Note)}");
        }

        var refused = Assert.IsType<SchemaValidationException>(error);
        Assert.Contains(refused.Violations, v => v.Message.Contains("names a property twice", StringComparison.Ordinal) && v.Message.Contains("'note'", StringComparison.Ordinal));

        // The other way round, the value readers take is valid, but which one a reader takes is no payload's to leave open.
        await Assert.ThrowsAsync<SchemaValidationException>(() => store.AppendToStreamAsync("note-2", ExpectedVersion.NoStream,
            [new EventData("edge-snapshot.noted", Encoding.UTF8.GetBytes("""{"id":"n-2","note":null,"note":"x"}"""))]));
        await host.StopAsync();
    }

    // A "$ref" member inside instance data (const, enum, default, examples) is a value, not a reference; the same
    // member name under "properties" is rightly accepted. JsonSchemaDocuments.Check walks into these values and refuses
    // a valid document ("... does not resolve inside the document").
    [Theory]
    [InlineData("""{"type": "object", "properties": {"link": {"const": {"$ref": "https://example.com/x"}}}}""")]
    [InlineData("""{"type": "object", "properties": {"link": {"enum": [{"$ref": "https://example.com/x"}]}}}""")]
    [InlineData("""{"type": "object", "properties": {"link": {"default": {"$ref": "https://example.com/x"}}}}""")]
    [InlineData("""{"type": "object", "properties": {"link": {"examples": [{"$ref": "https://example.com/x"}]}}}""")]
    public async Task a_ref_member_inside_a_value_keyword_is_data_and_the_document_is_registered(string document)
    {
        var registry = new SchemaRegistry(new InMemorySchemaStore());

        var error = await Record.ExceptionAsync(() => registry.RegisterAsync("edge-snapshot.linked", 1, (JsonObject)JsonNode.Parse(document)!, CompatibilityMode.Backward));

        Assert.Null(error);
    }

    // A property named like a data keyword is a schema: a reference in it is still checked.
    [Fact]
    public async Task a_reference_in_a_property_named_like_a_data_keyword_is_still_checked()
    {
        var registry = new SchemaRegistry(new InMemorySchemaStore());
        var document = (JsonObject)JsonNode.Parse("""{"type": "object", "properties": {"const": {"$ref": "https://example.com/x"}}}""")!;

        var refused = await Assert.ThrowsAsync<InvalidSchemaException>(() => registry.RegisterAsync("edge-snapshot.const", 1, document, CompatibilityMode.Backward));

        Assert.Contains(refused.Violations, v => v.Path == "/properties/const/$ref");
    }

    // draft-07's dependencies maps property names to schemas: one for a property named like a data keyword is a
    // schema too, its reference checked (an array of names there holds none).
    [Fact]
    public async Task a_reference_in_a_draft07_dependency_is_checked_whatever_the_property_is_named()
    {
        var registry = new SchemaRegistry(new InMemorySchemaStore());
        var document = (JsonObject)JsonNode.Parse("""
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
             "dependencies": {"default": {"properties": {"limit": {"$ref": "#/definitions/missing"}}}, "limit": ["default"]}}
            """)!;

        var refused = await Assert.ThrowsAsync<InvalidSchemaException>(() => registry.RegisterAsync("edge-snapshot.depends", 1, document, CompatibilityMode.Backward));

        Assert.Contains(refused.Violations, v => v.Path == "/dependencies/default/properties/limit/$ref");
    }

    // Bad input is refused with a clear typed exception: UpcasterChains.Build checks its arguments for null, but a null
    // upcaster in the list is dereferenced (upcaster.EventType) and escapes as a NullReferenceException.
    [Fact]
    public void a_null_upcaster_is_refused_with_an_argument_exception()
    {
        var types = new EventTypeRegistry().Register<EdgeSnapshotOrderPlaced>();

        var error = Record.Exception(() => UpcasterChains.Build(types, [null!]));

        Assert.IsType<ArgumentException>(error, exactMatch: false);
    }

    // The same for a snapshot: a null entry escapes as a NullReferenceException from the public constructor.
    [Fact]
    public void a_null_snapshot_entry_is_refused_with_an_argument_exception()
    {
        var error = Record.Exception(() => new SchemaSnapshot([null!]));

        Assert.IsType<ArgumentException>(error, exactMatch: false);
    }
}

[EventType("edge-snapshot.order.placed", Version = 2)]
public sealed record EdgeSnapshotOrderPlaced(string Id);

[EventType("edge-snapshot.noted")]
public sealed record EdgeNoted(string Id, string Note);
