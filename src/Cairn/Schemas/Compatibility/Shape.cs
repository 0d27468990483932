using System.Globalization;
using System.Text.Json.Nodes;

namespace Cairn.Schemas;

/// <summary>Short text for a schema or a keyword's value, for the report: "string (maxLength 10)", "object {id, amount}".</summary>
internal static class Shape
{
    private const int MaxLength = 120;
    private const int MaxNames = 6;

    public static string Of(SchemaNode node) => Cut(Describe(node, 0));

    public static string Keyword(string keyword, object value) => string.Create(CultureInfo.InvariantCulture, $"{keyword} {value}");

    public static string Text(string? value) => value is null ? "none" : Cut("\"" + value + "\"");

    public static string Json(JsonNode? value) => Cut(value is null ? "null" : JsonSchemaDocuments.ToText(value));

    public static string Names(IEnumerable<string> names) => "[" + string.Join(", ", names) + "]";

    public static string Additional(bool permits, SchemaNode? schema) =>
        schema is not null ? Of(schema) : permits ? "any undeclared value" : "false (nothing undeclared)";

    private static string Describe(SchemaNode node, int depth)
    {
        if (depth > 2)
        {
            return "…";
        }

        return node.Kind switch
        {
            NodeKind.Empty => "any value",
            NodeKind.False => "no value (false)",
            NodeKind.Boolean => "boolean",
            NodeKind.Null => "null",
            NodeKind.String => "string" + Constraints(
                ("minLength", node.String!.MinLength), ("maxLength", node.String.MaxLength), ("pattern", node.String.Pattern)),
            NodeKind.Number => (node.Number!.RequiresInteger ? "integer" : "number") + Constraints(
                ("minimum", node.Number.Minimum), ("maximum", node.Number.Maximum), ("exclusiveMinimum", node.Number.ExclusiveMinimum),
                ("exclusiveMaximum", node.Number.ExclusiveMaximum), ("multipleOf", node.Number.MultipleOf)),
            NodeKind.Object => DescribeObject(node.Object!),
            NodeKind.Array => DescribeArray(node.Array!, depth),
            NodeKind.Enum => "enum [" + string.Join(", ", node.EnumValues!.Select(v => v is null ? "null" : JsonSchemaDocuments.ToText(v))) + "]",
            NodeKind.Const => "const " + (node.ConstValue is null ? "null" : JsonSchemaDocuments.ToText(node.ConstValue)),
            NodeKind.Not => "not " + Describe(node.Not!, depth + 1),
            NodeKind.Conditional => "if/then/else",
            _ => DescribeCombined(node.Combined!, depth),
        };
    }

    private static string DescribeObject(ObjectFacet facet)
    {
        var names = facet.Properties.Select(p => facet.Required.Contains(p.Key) ? p.Key + "*" : p.Key).ToList();
        var text = "object";
        if (names.Count > 0)
        {
            text += " {" + string.Join(", ", names.Take(MaxNames)) + (names.Count > MaxNames ? ", …" : "") + "}";
        }

        if (!facet.PermitsAdditional)
        {
            text += " closed";
        }
        else if (facet.AdditionalSchema is not null || facet.PatternProperties.Count > 0)
        {
            text += " partially open";
        }

        return text;
    }

    private static string DescribeArray(ArrayFacet facet, int depth)
    {
        if (facet.Tuple is { } tuple)
        {
            return "tuple [" + string.Join(", ", tuple.Select(t => Describe(t, depth + 1)))
                + (facet.PermitsAdditional && facet.AdditionalSchema is null ? ", …" : "") + "]";
        }

        return facet.Items is null ? "array" : "array of " + Describe(facet.Items, depth + 1);
    }

    private static string DescribeCombined(CombinedFacet facet, int depth)
    {
        var branches = facet.Subschemas.Select(s => Describe(s, depth + 1));
        return facet.Synthetic
            ? string.Join(facet.Criterion == Criterion.AllOf ? " and " : " or ", branches)
            : facet.Keyword + " [" + string.Join(", ", branches) + "]";
    }

    private static string Constraints(params (string Keyword, object? Value)[] constraints)
    {
        var present = constraints.Where(c => c.Value is not null).Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Keyword} {c.Value}")).ToList();
        return present.Count == 0 ? "" : " (" + string.Join(", ", present) + ")";
    }

    private static string Cut(string text) => text.Length <= MaxLength ? text : text[..(MaxLength - 1)] + "…";
}
