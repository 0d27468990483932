using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.Schemas;
using Cairn.Serialization;

namespace Cairn.Tests.Schemas;

// One event type, "check.opened", as successive builds of a service compile it.
public sealed record CheckOpenedV1(string Id, decimal Amount);

public sealed record CheckOpenedV2(string Id, decimal Amount, string? Note = null);

public sealed record CheckOpenedV2WithCustomer(string Id, decimal Amount, string Customer);

public sealed record CheckOpenedV1Retyped(string Id, string Amount);

public sealed record CheckClosedV1(string Id);

public sealed class SchemaCheckTests
{
    private const string Type = "check.opened";

    private static readonly JsonSerializerOptions Json = new EventSerializer(new EventTypeRegistry()).Options;

    /// <summary>The snapshot a first build saves: the types as given, each at the version given, in an empty registry.</summary>
    private static SchemaSnapshot Saved(Action<EventTypeRegistry> register, SchemaOptions? options = null)
    {
        var types = new EventTypeRegistry();
        register(types);
        var report = SchemaCheck.Run(types, options ?? new SchemaOptions(), Json, new SchemaSnapshot([]));
        Assert.True(report.Passed, report.ToString());
        return report.Updated;
    }

    private static SchemaCheckReport Check(SchemaSnapshot snapshot, Action<EventTypeRegistry> register, SchemaOptions? options = null)
    {
        var types = new EventTypeRegistry();
        register(types);
        return SchemaCheck.Run(types, options ?? new SchemaOptions(), Json, snapshot);
    }

    // --- The snapshot as a file ---

    [Fact]
    public void a_snapshot_written_and_read_back_holds_the_same_documents_and_writes_the_same_bytes()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type).Register<CheckClosedV1>("check.closed"));
        snapshot = Check(snapshot, t => t.Register<CheckOpenedV2>(Type, 2).Register<CheckClosedV1>("check.closed")).Updated;

        var json = snapshot.ToJson();
        var read = SchemaSnapshot.Parse(json);

        Assert.Equal(["check.closed", "check.opened"], read.Types.Select(t => t.EventType));
        Assert.Equal([1, 2], read.VersionsOf(Type).Select(v => v.Version));
        foreach (var type in snapshot.Types)
        {
            Assert.Equal(type.Compatibility, read.CompatibilityOf(type.EventType));
            Assert.Equal(type.Versions.Count, read.VersionsOf(type.EventType).Count);
            foreach (var (written, again) in type.Versions.Zip(read.VersionsOf(type.EventType)))
            {
                Assert.True(JsonNode.DeepEquals(written.Schema, again.Schema), $"{type.EventType} v{written.Version} changed in the round trip.");
            }
        }

        Assert.Equal(Encoding.UTF8.GetBytes(json), Encoding.UTF8.GetBytes(read.ToJson()));
        Assert.EndsWith("}\n", json, StringComparison.Ordinal);
        Assert.DoesNotContain("\r", json, StringComparison.Ordinal);
    }

    [Fact]
    public void a_snapshot_writes_its_types_in_ordinal_order_whatever_order_they_were_given_in()
    {
        var a = Saved(t => t.Register<CheckClosedV1>("check.closed").Register<CheckOpenedV1>(Type));
        var b = new SchemaSnapshot(a.Types.Reverse());

        Assert.Equal(a.ToJson(), b.ToJson());
        Assert.True(a.ToJson().IndexOf("\"check.closed\"", StringComparison.Ordinal) < a.ToJson().IndexOf("\"check.opened\"", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("{", "the document is not valid JSON")]
    [InlineData("[1, 2]", "the document is not a JSON object")]
    [InlineData("""{"eventTypes": {}}""", "'cairnSchemaSnapshot' must be 1")]
    [InlineData("""{"cairnSchemaSnapshot": 2, "eventTypes": {}}""", "'cairnSchemaSnapshot' must be 1")]
    [InlineData("""{"cairnSchemaSnapshot": "1", "eventTypes": {}}""", "'cairnSchemaSnapshot' must be 1")]
    [InlineData("""{"cairnSchemaSnapshot": 1}""", "'eventTypes' must be an object")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"versions": []}}}""", "'a.b' needs a 'compatibility' (one of Backward, BackwardTransitive, Forward")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Backward"}}}""", "'a.b' needs a 'compatibility'")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Sideways", "versions": []}}}""", "'a.b' needs a 'compatibility'")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Backward", "versions": [{"version": 1}]}}}""", "each version of 'a.b' needs a 'version' (1 or more) and a 'schema' object")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Backward", "versions": [{"schema": {}}]}}}""", "each version of 'a.b' needs a 'version'")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Backward", "versions": [{"version": 0, "schema": {}}]}}}""", "each version of 'a.b' needs a 'version' (1 or more)")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a b": {"compatibility": "Backward", "versions": []}}}""", "'a b' is not a valid event type name: the type name contains white space")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"": {"compatibility": "Backward", "versions": []}}}""", "'' is not a valid event type name: the type name is empty")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Backward", "versions": [{"version": 1, "schema": {}}, {"version": 3, "schema": {}}]}}}""", "the versions of 'a.b' must be contiguous and in order; 3 follows 1")]
    [InlineData("""{"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "Backward", "versions": [{"version": 2, "schema": {}}, {"version": 1, "schema": {}}]}}}""", "the versions of 'a.b' must be contiguous and in order; 1 follows 2")]
    public void a_text_that_is_not_a_snapshot_is_refused_saying_where(string text, string reason)
    {
        var error = Assert.Throws<InvalidSchemaSnapshotException>(() => SchemaSnapshot.Parse(text));

        Assert.StartsWith("The schema snapshot cannot be read: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_snapshot_reads_its_mode_in_any_case_and_a_type_may_start_above_version_one()
    {
        var snapshot = SchemaSnapshot.Parse("""
            {"cairnSchemaSnapshot": 1, "eventTypes": {"a.b": {"compatibility": "fulltransitive", "versions": [{"version": 3, "schema": {"type": "object"}}]}}}
            """);

        Assert.Equal(CompatibilityMode.FullTransitive, snapshot.CompatibilityOf("a.b"));
        Assert.Equal(3, Assert.Single(snapshot.VersionsOf("a.b")).Version);
        Assert.Empty(snapshot.VersionsOf("x.y"));
        Assert.Null(snapshot.CompatibilityOf("x.y"));
    }

    // --- The check ---

    [Fact]
    public void the_same_classes_against_their_own_snapshot_pass_unchanged_and_add_nothing()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type).Register<CheckClosedV1>("check.closed"));

        var report = Check(snapshot, t => t.Register<CheckOpenedV1>(Type).Register<CheckClosedV1>("check.closed"));

        Assert.True(report.Passed);
        Assert.Empty(report.Problems);
        Assert.All(report.Results, r => Assert.NotNull(r.Registered));
        Assert.DoesNotContain(report.Results, r => r.IsNew);
        Assert.Equal(snapshot.ToJson(), report.Updated.ToJson());
        Assert.Contains("unchanged check.opened v1", report.ToString(), StringComparison.Ordinal);
        Assert.Contains("The event types are compatible with the registry.", report.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void a_new_compatible_version_passes_and_the_updated_snapshot_holds_it_beside_the_old_one()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));

        var report = Check(snapshot, t => t.Register<CheckOpenedV2>(Type, 2));

        Assert.True(report.Passed, report.ToString());
        var result = Assert.Single(report.Results);
        Assert.True(result.IsNew);
        Assert.Equal(2, result.Version);
        Assert.Equal([1, 2], report.Updated.VersionsOf(Type).Select(v => v.Version));
        Assert.True(JsonNode.DeepEquals(snapshot.VersionsOf(Type)[0].Schema, report.Updated.VersionsOf(Type)[0].Schema));
        Assert.Contains("note", report.Updated.VersionsOf(Type)[1].Schema["properties"]!.AsObject().Select(p => p.Key));
        Assert.Equal([1], snapshot.VersionsOf(Type).Select(v => v.Version));
        Assert.Contains("new       check.opened v2", report.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void a_type_new_to_the_snapshot_is_added_with_its_mode()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));
        var options = new SchemaOptions().Compatibility("check.closed", CompatibilityMode.Full);

        var report = Check(snapshot, t => t.Register<CheckOpenedV1>(Type).Register<CheckClosedV1>("check.closed"), options);

        Assert.True(report.Passed, report.ToString());
        Assert.True(Assert.Single(report.Results, r => r.EventType == "check.closed").IsNew);
        Assert.Equal(CompatibilityMode.Full, report.Updated.CompatibilityOf("check.closed"));
    }

    [Fact]
    public void a_breaking_new_version_fails_naming_the_type_the_version_the_field_and_the_rule_and_adds_nothing()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));

        var report = Check(snapshot, t => t.Register<CheckOpenedV2WithCustomer>(Type, 2));

        Assert.False(report.Passed);
        var result = Assert.Single(report.Results);
        Assert.True(result.IsRefused);
        var problem = Assert.Single(report.Problems);
        Assert.Contains("'check.opened' version 2 breaks the Backward compatibility of the type", problem, StringComparison.Ordinal);
        Assert.Contains("backward against version 1", problem, StringComparison.Ordinal);
        Assert.Contains("/properties/customer", problem, StringComparison.Ordinal);
        Assert.Contains(nameof(SchemaChangeKind.RequiredPropertyAddedToUnopenContentModel), problem, StringComparison.Ordinal);
        Assert.Equal([1], report.Updated.VersionsOf(Type).Select(v => v.Version));
        Assert.Contains("BREAKS    check.opened v2", report.ToString(), StringComparison.Ordinal);
        Assert.Contains("1 problem(s):", report.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void a_changed_class_under_a_registered_version_fails_and_asks_for_the_next_version()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));

        var report = Check(snapshot, t => t.Register<CheckOpenedV1Retyped>(Type));

        var problem = Assert.Single(report.Problems);
        Assert.Contains("'check.opened' version 1 is registered with another document", problem, StringComparison.Ordinal);
        Assert.Contains("register the new shape as version 2", problem, StringComparison.Ordinal);
        Assert.Contains("/properties/amount", problem, StringComparison.Ordinal);
        Assert.Equal(snapshot.ToJson(), report.Updated.ToJson());
    }

    [Fact]
    public void a_version_that_skips_fails_naming_the_next_one()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));

        var report = Check(snapshot, t => t.Register<CheckOpenedV2>(Type, 3));

        var problem = Assert.Single(report.Problems);
        Assert.Equal("'check.opened' version 3 cannot be registered: the latest is 1, so the next must be 2.", problem);
        Assert.True(Assert.Single(report.Results).IsRefused);
    }

    [Fact]
    public void without_compatibility_a_breaking_version_fails_because_the_old_events_could_not_be_read()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));
        var options = new SchemaOptions().Compatibility(Type, CompatibilityMode.None);

        var report = Check(snapshot, t => t.Register<CheckOpenedV2WithCustomer>(Type, 2), options);

        // The mode lets version 2 in; the events already stored at version 1 are what cannot follow.
        Assert.True(Assert.Single(report.Results).IsNew);
        var problem = Assert.Single(report.Problems);
        Assert.Contains("'check.opened' events of version 1 could not be read as version 2: there is no upcaster from 1 to 2", problem, StringComparison.Ordinal);
        Assert.Contains("/properties/customer", problem, StringComparison.Ordinal);
        Assert.False(report.Passed);
    }

    [Fact]
    public void the_same_breaking_version_passes_with_an_upcaster_from_the_old_one()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type));
        var options = new SchemaOptions()
            .Compatibility(Type, CompatibilityMode.None)
            .Upcast(Type, 1, 2, json =>
            {
                json["customer"] = "unknown";
                return json;
            });

        var report = Check(snapshot, t => t.Register<CheckOpenedV2WithCustomer>(Type, 2), options);

        Assert.True(report.Passed, report.ToString());
        Assert.Equal([1, 2], report.Updated.VersionsOf(Type).Select(v => v.Version));
        Assert.Equal(CompatibilityMode.None, report.Updated.CompatibilityOf(Type));
    }

    [Fact]
    public void an_invalid_supplied_document_fails_naming_the_type_and_version_and_the_other_types_are_still_checked()
    {
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type).Register<CheckClosedV1>("check.closed"));
        var options = new SchemaOptions().Document(Type, 1, """{"type": "objekt"}""");

        var report = Check(snapshot, t => t.Register<CheckOpenedV1>(Type).Register<CheckClosedV1>("check.closed"), options);

        var problem = Assert.Single(report.Problems);
        Assert.Contains("check.opened", problem, StringComparison.Ordinal);
        Assert.Contains("is not a valid JSON Schema document", problem, StringComparison.Ordinal);
        Assert.Equal("check.closed", Assert.Single(report.Results).EventType);
        Assert.False(report.Passed);
    }

    [Fact]
    public void a_supplied_document_is_checked_instead_of_the_class()
    {
        var document = """{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": false}""";
        var snapshot = Saved(t => t.Register<CheckOpenedV1>(Type), new SchemaOptions().Document(Type, 1, document));

        Assert.Equal("http://json-schema.org/draft-07/schema#", snapshot.VersionsOf(Type)[0].Schema["$schema"]!.GetValue<string>());
        Assert.True(Check(snapshot, t => t.Register<CheckOpenedV1>(Type), new SchemaOptions().Document(Type, 1, document)).Passed);
        Assert.False(Check(snapshot, t => t.Register<CheckOpenedV1>(Type)).Passed);
    }

    [Fact]
    public async Task the_check_against_a_live_registry_reads_its_versions_writes_nothing_and_says_what_the_snapshot_check_says()
    {
        var store = new InMemorySchemaStore();
        var registry = new SchemaRegistry(store);
        var v1 = Saved(t => t.Register<CheckOpenedV1>(Type)).VersionsOf(Type)[0];
        await registry.RegisterAsync(Type, 1, v1.Schema, CompatibilityMode.Backward);
        var types = new EventTypeRegistry().Register<CheckOpenedV2WithCustomer>(Type, 2);

        var live = await SchemaCheck.RunAsync(types, new SchemaOptions(), Json, registry);
        var saved = SchemaCheck.Run(types, new SchemaOptions(), Json, await registry.ExportAsync());

        Assert.False(live.Passed);
        Assert.Equal(saved.Problems, live.Problems);
        Assert.Single(await registry.GetVersionsAsync(Type));

        var compatible = await SchemaCheck.RunAsync(new EventTypeRegistry().Register<CheckOpenedV2>(Type, 2), new SchemaOptions(), Json, registry);
        Assert.True(compatible.Passed, compatible.ToString());
        Assert.Equal([1, 2], compatible.Updated.VersionsOf(Type).Select(v => v.Version));
        Assert.Single(await registry.GetVersionsAsync(Type));
    }
}
