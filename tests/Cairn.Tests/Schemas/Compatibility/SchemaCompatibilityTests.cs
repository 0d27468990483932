using System.Text.Json.Nodes;
using Cairn.Schemas;

namespace Cairn.Tests.Schemas.Compatibility;

public sealed class SchemaCompatibilityTests
{
    internal static JsonObject J(string json) => JsonNode.Parse(json)!.AsObject();

    internal static string[] Named(IEnumerable<SchemaChange> changes) =>
        [.. changes.Select(c => (c.IsCompatible ? "" : "!") + c.Kind + " " + c.Path)];

    [Theory]
    [MemberData(nameof(CompatibilityRules.Cases), MemberType = typeof(CompatibilityRules))]
    public void compare_names_every_change_with_its_kind_path_and_verdict(RuleCase rule)
    {
        Assert.Equal(rule.Backward, Named(SchemaCompatibility.Compare(J(rule.V1), J(rule.V2))));
        Assert.Equal(rule.Forward, Named(SchemaCompatibility.Compare(J(rule.V2), J(rule.V1))));
    }

    [Theory]
    [MemberData(nameof(CompatibilityRules.Cases), MemberType = typeof(CompatibilityRules))]
    public void each_rule_is_applied_under_backward_forward_and_full(RuleCase rule)
    {
        string[] Breaking(string[] changes) => [.. changes.Where(c => c.StartsWith('!'))];
        string[] Reported(CompatibilityReport report, CompatibilityDirection direction) =>
            [.. report.BreakingChanges.Where(b => b.Direction == direction).Select(b => "!" + b.Change.Kind + " " + b.Change.Path)];

        var backward = SchemaCompatibility.Check([J(rule.V1)], J(rule.V2), CompatibilityMode.Backward);
        Assert.Equal(Breaking(rule.Backward), Reported(backward, CompatibilityDirection.Backward));
        Assert.Empty(Reported(backward, CompatibilityDirection.Forward));
        Assert.Equal(Breaking(rule.Backward).Length == 0, backward.IsCompatible);

        var forward = SchemaCompatibility.Check([J(rule.V1)], J(rule.V2), CompatibilityMode.Forward);
        Assert.Equal(Breaking(rule.Forward), Reported(forward, CompatibilityDirection.Forward));
        Assert.Empty(Reported(forward, CompatibilityDirection.Backward));
        Assert.Equal(Breaking(rule.Forward).Length == 0, forward.IsCompatible);

        var full = SchemaCompatibility.Check([J(rule.V1)], J(rule.V2), CompatibilityMode.Full);
        Assert.Equal(Breaking(rule.Backward), Reported(full, CompatibilityDirection.Backward));
        Assert.Equal(Breaking(rule.Forward), Reported(full, CompatibilityDirection.Forward));
        Assert.Equal(Breaking(rule.Backward).Length + Breaking(rule.Forward).Length == 0, full.IsCompatible);
        Assert.All(full.BreakingChanges, b => Assert.Equal(1, b.AgainstVersion));

        Assert.True(SchemaCompatibility.Check([J(rule.V1)], J(rule.V2), CompatibilityMode.None).IsCompatible);
    }

    [Fact]
    public void every_change_carries_both_shapes_and_its_rule()
    {
        var change = Assert.Single(SchemaCompatibility.Compare(
            J("""{"type": "object", "properties": {"amount": {"type": "string", "maxLength": 10}}}"""),
            J("""{"type": "object", "properties": {"amount": {"type": "number"}}}""")));

        Assert.Equal(new SchemaChange("/properties/amount", SchemaChangeKind.TypeChanged, "string (maxLength 10)", "number", false,
            "the reader expects another type than the writer wrote"), change);
        Assert.Equal("TypeChanged at /properties/amount: string (maxLength 10) -> number (breaking: the reader expects another type than the writer wrote)",
            change.ToString());
    }

    [Fact]
    public void identical_documents_have_no_change()
    {
        const string schema = """
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false,
             "required": ["id"], "properties": {"id": {"type": "string", "format": "uuid"},
             "lines": {"type": "array", "items": {"$ref": "#/definitions/line"}, "minItems": 1},
             "status": {"type": "string", "enum": ["placed", "paid"]},
             "total": {"oneOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}},
             "definitions": {"line": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}}}
            """;

        Assert.Empty(SchemaCompatibility.Compare(J(schema), J(schema)));
        Assert.True(SchemaCompatibility.Check([J(schema), J(schema)], J(schema), CompatibilityMode.FullTransitive).IsCompatible);
    }

    [Fact]
    public void no_earlier_version_means_compatible_under_every_mode()
    {
        foreach (var mode in Enum.GetValues<CompatibilityMode>())
        {
            var report = SchemaCompatibility.Check([], J("""{"type": "string"}"""), mode);
            Assert.True(report.IsCompatible);
            Assert.Empty(report.CheckedVersions);
        }
    }

    [Fact]
    public void the_report_reads_one_line_per_breaking_change()
    {
        var v1 = J("""{"type": "object", "properties": {"id": {"type": "string"}, "amount": {"type": "integer"}}, "additionalProperties": false}""");
        var v2 = J("""{"type": "object", "properties": {"id": {"type": "string"}, "amount": {"type": "number"}, "note": {"type": "string"}}, "required": ["note"], "additionalProperties": false}""");

        var report = SchemaCompatibility.Check([v1], v2, CompatibilityMode.Full);

        Assert.False(report.IsCompatible);
        Assert.Equal(
            """
            backward against version 1: RequiredPropertyAddedToUnopenContentModel at /properties/note (version 1 writes absent, closed content model; the candidate reads required string): the writer never wrote this property and the reader requires it without a default
            forward against version 1: TypeNarrowed at /properties/amount (the candidate writes number; version 1 reads integer): the writer may have written a fractional number the reader's integer refuses
            forward against version 1: PropertyRemovedFromClosedContentModel at /properties/note (the candidate writes string; version 1 reads absent, closed content model): the writer may have written the property and the reader's closed content model refuses it
            """.ReplaceLineEndings("\n"),
            report.ToString());
    }

    [Fact]
    public void a_compatible_report_says_so_in_one_line()
    {
        var report = SchemaCompatibility.Check([J("""{"type": "integer"}"""), J("""{"type": "integer"}""")], J("""{"type": "number"}"""), CompatibilityMode.BackwardTransitive);

        Assert.True(report.IsCompatible);
        Assert.Equal([2, 1], report.CheckedVersions);
        Assert.Equal("compatible under BackwardTransitive with version(s) 2, 1", report.ToString());
    }

    [Fact]
    public void an_unknown_mode_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SchemaCompatibility.Check([J("{}")], J("{}"), (CompatibilityMode)42));
    }

    [Fact]
    public void draft_04_exclusive_flags_are_read_as_exclusive_bounds()
    {
        var v1 = J("""{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 10, "exclusiveMaximum": true}""");
        var v2 = J("""{"type": "number", "exclusiveMaximum": 20}""");

        Assert.Equal(["ExclusiveMaximumIncreased /exclusiveMaximum"], Named(SchemaCompatibility.Compare(v1, v2)));
    }

    [Fact]
    public void an_enum_added_to_a_typed_string_changes_its_type_for_confluent()
    {
        Assert.Equal(["!TypeChanged /"], Named(SchemaCompatibility.Compare(J("""{"type": "string"}"""), J("""{"type": "string", "enum": ["a"]}"""))));
    }

    [Fact]
    public void a_schema_built_in_code_reads_as_the_same_schema_parsed()
    {
        var built = new JsonObject
        {
            ["type"] = "object",
            ["additionalProperties"] = false,
            ["properties"] = new JsonObject
            {
                ["name"] = new JsonObject { ["type"] = "string", ["maxLength"] = 40, ["minLength"] = 1L },
                ["price"] = new JsonObject { ["type"] = "number", ["multipleOf"] = 0.01, ["minimum"] = 0m },
                ["tags"] = new JsonObject { ["type"] = "array", ["maxItems"] = (short)5, ["uniqueItems"] = true },
            },
        };
        var parsed = J("""
            {"type": "object", "additionalProperties": false, "properties": {
              "name": {"type": "string", "maxLength": 40, "minLength": 1},
              "price": {"type": "number", "multipleOf": 0.01, "minimum": 0},
              "tags": {"type": "array", "maxItems": 5, "uniqueItems": true}}}
            """);

        Assert.Empty(SchemaCompatibility.Compare(built, parsed));
        Assert.Empty(SchemaCompatibility.Compare(parsed, built));
    }
}
