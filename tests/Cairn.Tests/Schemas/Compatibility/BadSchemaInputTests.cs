using Cairn.Schemas;
using static Cairn.Tests.Schemas.Compatibility.SchemaCompatibilityTests;

namespace Cairn.Tests.Schemas.Compatibility;

public sealed class BadSchemaInputTests
{
    private const string Good = """{"type": "string"}""";

    [Theory]
    [InlineData("""{"properties": {"a": 5}}""", "/properties/a", "expected a JSON Schema (an object or a boolean), found a number")]
    [InlineData("""{"properties": [1]}""", "/properties", "expected an object, found an array")]
    [InlineData("""{"items": "string"}""", "/items", "expected a JSON Schema (an object or a boolean), found a string")]
    [InlineData("""{"oneOf": []}""", "/oneOf", "oneOf must hold at least one schema")]
    [InlineData("""{"allOf": [{"type": "string"}, null]}""", "/allOf/1", "expected a JSON Schema (an object or a boolean), found null")]
    [InlineData("""{"type": "text"}""", "/type", "'text' is not a JSON Schema type (string, number, integer, boolean, null, object, array)")]
    [InlineData("""{"type": ["string", 3]}""", "/type/1", "expected a string, found a number")]
    [InlineData("""{"required": "id"}""", "/required", "expected an array, found a string")]
    [InlineData("""{"maxLength": -1}""", "/maxLength", "maxLength must be a non-negative integer, found a number")]
    [InlineData("""{"minItems": 1.5}""", "/minItems", "minItems must be a non-negative integer, found a number")]
    [InlineData("""{"maximum": "10"}""", "/maximum", "maximum must be a number, found a string")]
    [InlineData("""{"multipleOf": 0}""", "/multipleOf", "multipleOf must be greater than 0")]
    [InlineData("""{"enum": "a"}""", "/enum", "expected an array, found a string")]
    [InlineData("""{"patternProperties": {"[": {}}}""", "/patternProperties/[", "'[' is not a regular expression")]
    [InlineData("""{"properties": {"a": {"$ref": "#/definitions/missing"}}}""", "/properties/a/$ref", "$ref '#/definitions/missing' does not resolve: the document has nothing at /definitions")]
    [InlineData("""{"properties": {"a": {"$ref": "https://example.com/a.json"}}}""", "/properties/a/$ref", "$ref 'https://example.com/a.json' is not a reference inside the document (only '#...' references are resolved)")]
    [InlineData("""{"properties": {"a": {"$ref": "#anchor"}}}""", "/properties/a/$ref", "$ref '#anchor' names an anchor; only JSON Pointer references ('#/...') are resolved")]
    [InlineData("""{"properties": {"a": {"$ref": 7}}}""", "/properties/a/$ref", "expected a string, found a number")]
    [InlineData("""{"properties": {"a": {"$ref": "#/definitions/b"}}, "definitions": {"b": {"$ref": "#/definitions/c"}, "c": {"$ref": "#/definitions/b"}}}""", "/definitions/b", "$ref '#/definitions/c' leads back here through $ref alone, so it never reaches a schema")]
    [InlineData("""{"$ref": "#"}""", "/", "$ref '#' leads back here through $ref alone, so it never reaches a schema")]
    [InlineData("""{"$schema": 7}""", "/$schema", "expected a string, found a number")]
    public void a_document_that_is_not_json_schema_is_refused_naming_the_place(string bad, string location, string reason)
    {
        var asUpdate = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Compare(J(Good), J(bad)));
        Assert.Equal(("update", location), (asUpdate.Document, asUpdate.Location));
        Assert.StartsWith(reason, asUpdate.Reason, StringComparison.Ordinal);
        Assert.Equal("update", asUpdate.ParamName);
        Assert.StartsWith($"The update schema is not valid at {location}: {reason}", asUpdate.Message, StringComparison.Ordinal);

        var asOriginal = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Compare(J(bad), J(Good)));
        Assert.Equal(("original", location), (asOriginal.Document, asOriginal.Location));

        var asEarlier = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Check([J(Good), J(bad)], J(Good), CompatibilityMode.Backward));
        Assert.Equal(("earlier version 2", location, "earlierVersionsOldestFirst"), (asEarlier.Document, asEarlier.Location, asEarlier.ParamName));

        var asCandidate = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Check([J(Good)], J(bad), CompatibilityMode.Forward));
        Assert.Equal(("candidate", location, "candidate"), (asCandidate.Document, asCandidate.Location, asCandidate.ParamName));
    }

    [Fact]
    public void a_nested_quantifier_in_pattern_properties_is_matched_without_backtracking()
    {
        var name = new string('a', 64) + "!";
        var v1 = J("""{"type": "object", "additionalProperties": false, "patternProperties": {"^(a+)+$": {"type": "string"}}}""");
        var v2 = J("""{"type": "object", "additionalProperties": false, "patternProperties": {"^(a+)+$": {"type": "string"}}, "properties": {"NAME": {"type": "string"}}}""".Replace("NAME", name, StringComparison.Ordinal));

        Assert.Equal([$"OptionalPropertyAddedToUnopenContentModel /properties/{name}"], Named(SchemaCompatibility.Compare(v1, v2)));
        Assert.True(SchemaCompatibility.Check([v1], v2, CompatibilityMode.Backward).IsCompatible);
    }

    [Fact]
    public void a_pattern_properties_expression_that_backtracks_past_its_time_is_refused_naming_it_and_the_name()
    {
        // A lookahead needs the backtracking engine, which has a second per name.
        var name = new string('a', 64) + "!";
        var v1 = J("""{"type": "object", "additionalProperties": false, "patternProperties": {"^(?=a)(a+)+$": {"type": "string"}}}""");
        var v2 = J("""{"type": "object", "additionalProperties": false, "patternProperties": {"^(?=a)(a+)+$": {"type": "string"}}, "properties": {"NAME": {"type": "string"}}}""".Replace("NAME", name, StringComparison.Ordinal));

        var error = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Check([v1], v2, CompatibilityMode.Backward));

        Assert.Contains("candidate", error.Document, StringComparison.Ordinal);
        Assert.Contains("'^(?=a)(a+)+$'", error.Reason, StringComparison.Ordinal);
        Assert.Contains($"'{name}'", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void a_bad_earlier_version_not_checked_by_the_mode_is_not_read()
    {
        // Backward reads only the latest earlier version; the transitive mode reads them all.
        var history = new[] { J("""{"type": "nope"}"""), J(Good) };

        Assert.True(SchemaCompatibility.Check(history, J(Good), CompatibilityMode.Backward).IsCompatible);
        var error = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Check(history, J(Good), CompatibilityMode.BackwardTransitive));
        Assert.Equal("earlier version 1", error.Document);
    }

    [Fact]
    public void null_arguments_are_refused()
    {
        Assert.Throws<ArgumentNullException>(() => SchemaCompatibility.Compare(null!, J(Good)));
        Assert.Throws<ArgumentNullException>(() => SchemaCompatibility.Compare(J(Good), null!));
        Assert.Throws<ArgumentNullException>(() => SchemaCompatibility.Check(null!, J(Good), CompatibilityMode.Backward));
        Assert.Throws<ArgumentNullException>(() => SchemaCompatibility.Check([], null!, CompatibilityMode.Backward));
        var nullVersion = Assert.Throws<ArgumentException>(() => SchemaCompatibility.Check([J(Good), null!], J(Good), CompatibilityMode.Backward));
        Assert.Contains("Earlier version 2 is null", nullVersion.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_document_nested_too_deeply_is_refused_not_overflowed()
    {
        var deep = string.Concat(Enumerable.Repeat("{\"not\": ", 300)) + "{}" + new string('}', 300);
        var node = System.Text.Json.Nodes.JsonNode.Parse(deep, documentOptions: new System.Text.Json.JsonDocumentOptions { MaxDepth = 1000 })!.AsObject();

        var error = Assert.Throws<SchemaDocumentException>(() => SchemaCompatibility.Compare(node, J(Good)));
        Assert.Equal("the schema nests deeper than 256 levels", error.Reason);
    }
}
