using System.Diagnostics;
using System.Text.Json.Nodes;
using Cairn.Schemas;
using static Cairn.Tests.Schemas.Compatibility.SchemaCompatibilityTests;

namespace Cairn.Tests.Schemas.Compatibility;

public sealed class ReferenceAndRecursionTests
{
    private const string Category = """
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["categories"],
         "properties": {"categories": {"type": "array", "items": {"$ref": "#/definitions/Category"}}},
         "definitions": {"Category": {"type": "object", "required": ["id"],
           "properties": {"id": {"type": "ID_TYPE"}, "children": {"type": "array", "items": {"$ref": "#/definitions/Category"}}}}}}
        """;

    [Fact]
    public void a_recursive_schema_compared_with_itself_has_no_change()
    {
        var schema = Category.Replace("ID_TYPE", "integer", StringComparison.Ordinal);

        Assert.Empty(SchemaCompatibility.Compare(J(schema), J(schema)));
    }

    [Fact]
    public void a_change_inside_a_recursion_is_found_where_it_is_first_reached()
    {
        var v1 = J(Category.Replace("ID_TYPE", "integer", StringComparison.Ordinal));
        var v2 = J(Category.Replace("ID_TYPE", "number", StringComparison.Ordinal));

        Assert.Equal(["TypeExtended /properties/categories/items/properties/id"], Named(SchemaCompatibility.Compare(v1, v2)));
        Assert.Equal(["!TypeNarrowed /properties/categories/items/properties/id"], Named(SchemaCompatibility.Compare(v2, v1)));
    }

    [Fact]
    public void a_breaking_change_behind_a_recursive_union_is_not_hidden_by_the_recursion()
    {
        // T0 -> T2 -> T0 is a cycle through single-branch oneOfs; the root is oneOf[T0, T1]. The type changes sit
        // behind the cycle, where a first pass assumes the pair being compared compatible.
        static JsonObject Schema(string t0Id, string t1Id) => J("""
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
             "properties": {"root": {"oneOf": [{"$ref": "#/definitions/T0"}, {"$ref": "#/definitions/T1"}]}},
             "definitions": {
               "T0": {"type": "object", "properties": {"id": {"type": "T0_ID"}, "ref": {"oneOf": [{"$ref": "#/definitions/T2"}]}}},
               "T1": {"type": "object", "properties": {"id": {"type": "T1_ID"}, "ref": {"oneOf": [{"$ref": "#/definitions/T2"}]}}},
               "T2": {"type": "object", "properties": {"id": {"type": "integer"}, "ref": {"oneOf": [{"$ref": "#/definitions/T0"}]}}}}}
            """.Replace("T0_ID", t0Id, StringComparison.Ordinal).Replace("T1_ID", t1Id, StringComparison.Ordinal));

        var changes = SchemaCompatibility.Compare(Schema("integer", "boolean"), Schema("boolean", "number"));

        Assert.Contains(changes, c => !c.IsCompatible);
        Assert.False(SchemaCompatibility.Check([Schema("integer", "boolean")], Schema("boolean", "number"), CompatibilityMode.Backward).IsCompatible);
        Assert.Empty(SchemaCompatibility.Compare(Schema("integer", "boolean"), Schema("integer", "boolean")));
    }

    [Fact]
    public void many_mutually_recursive_unions_compare_quickly()
    {
        string[] types = ["Asset", "Basket", "Swap", "Bond", "Option", "Future", "Forward", "Loan", "Repo", "Equity", "Index", "Leg"];
        string Union() => "{\"oneOf\": [" + string.Join(", ", types.Select(t => $"{{\"$ref\": \"#/definitions/{t}\"}}")) + "]}";
        JsonObject Schema(string idType) => J("{\"type\": \"object\", \"properties\": {\"product\": " + Union() + "}, \"definitions\": {"
            + string.Join(", ", types.Select(t => $"\"{t}\": {{\"type\": \"object\", \"properties\": {{\"id\": {{\"type\": \"{(t == "Asset" ? idType : "string")}\"}}, \"underlying\": {Union()}, \"reference\": {Union()}}}}}"))
            + "}}");

        var watch = Stopwatch.StartNew();
        Assert.Empty(SchemaCompatibility.Compare(Schema("string"), Schema("string")));
        Assert.Contains(SchemaCompatibility.Compare(Schema("string"), Schema("number")), c => !c.IsCompatible);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
    }

    [Fact]
    public void a_self_reference_through_the_root_terminates()
    {
        var v1 = J("""{"type": "object", "properties": {"name": {"type": "string"}, "parent": {"$ref": "#"}}}""");
        var v2 = J("""{"type": "object", "properties": {"name": {"type": "string", "maxLength": 50}, "parent": {"$ref": "#"}}}""");

        Assert.Equal(["!MaxLengthAdded /properties/name/maxLength"], Named(SchemaCompatibility.Compare(v1, v2)));
    }

    [Fact]
    public void references_into_definitions_and_defs_resolve_in_either_draft()
    {
        var draft7 = J("""{"properties": {"a": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"type": "string"}}}""");
        var draft2020 = J("""{"$schema": "https://json-schema.org/draft/2020-12/schema", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "string"}}}""");
        var escaped = J("""{"properties": {"a": {"$ref": "#/definitions/a~1b%20c"}}, "definitions": {"a/b c": {"type": "string"}}}""");

        Assert.Empty(SchemaCompatibility.Compare(draft7, draft2020));
        Assert.Empty(SchemaCompatibility.Compare(draft7, escaped));
    }

    [Fact]
    public void a_definition_referred_to_from_two_places_is_reported_at_both()
    {
        const string schema = """
            {"type": "object", "properties": {"billing": {"$ref": "#/definitions/address"}, "shipping": {"$ref": "#/definitions/address"}},
             "definitions": {"address": {"type": "object", "properties": {"zip": {"type": "ZIP"}}}}}
            """;

        var changes = SchemaCompatibility.Compare(
            J(schema.Replace("ZIP", "string", StringComparison.Ordinal)), J(schema.Replace("ZIP", "integer", StringComparison.Ordinal)));

        Assert.Equal(["!TypeChanged /properties/billing/properties/zip", "!TypeChanged /properties/shipping/properties/zip"], Named(changes));
    }
}
