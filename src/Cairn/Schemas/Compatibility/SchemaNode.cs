using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Cairn.Serialization;

namespace Cairn.Schemas;

/// <summary>The JSON Schema drafts whose keywords differ for the checker.</summary>
internal enum SchemaDraft
{
    /// <summary>Draft-04 to draft-07, and documents without <c>$schema</c>.</summary>
    Draft7,

    /// <summary>2019-09: <c>$defs</c>, <c>dependentRequired</c>/<c>dependentSchemas</c>, <c>unevaluated*</c>; tuples still by an <c>items</c> array.</summary>
    Draft2019,

    /// <summary>2020-12: as 2019-09, and tuples by <c>prefixItems</c> with <c>items</c> for the rest.</summary>
    Draft2020,
}

/// <summary>
/// What a schema is, in the typed model Confluent's checker compares (the everit library's): one kind per node; a
/// schema holding keywords of several kinds (<c>type</c> with <c>enum</c>, say) is an <c>allOf</c> of one node per kind.
/// </summary>
internal enum NodeKind
{
    Empty,
    False,
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
    Enum,
    Const,
    Combined,
    Not,
    Conditional,
}

internal enum Criterion
{
    AllOf,
    AnyOf,
    OneOf,
}

/// <summary>A JSON number kept exact where it can be (decimal) and as a double otherwise.</summary>
internal readonly record struct SchemaNumber(decimal? Exact, double Approximate, string Text) : IComparable<SchemaNumber>
{
    /// <summary>
    /// Reads a JSON number by its text, so a value built in code (an int, a double) reads as a parsed one does; exact
    /// only where a decimal does not round it (<see cref="JsonNumbers.TryReadExactly(string, out decimal)"/>: 1e-30 is not 0).
    /// </summary>
    public static SchemaNumber From(JsonValue value)
    {
        var text = value.ToJsonString();
        decimal? exact = JsonNumbers.TryReadExactly(text, out var m) ? m : null;
        var approximate = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : (double)(exact ?? 0m);
        return new SchemaNumber(exact, approximate, text);
    }

    public int CompareTo(SchemaNumber other) => Exact is { } a && other.Exact is { } b ? a.CompareTo(b) : Approximate.CompareTo(other.Approximate);

    public bool Same(SchemaNumber other) => CompareTo(other) == 0;

    /// <summary>Whether this is a whole multiple of <paramref name="divisor"/>.</summary>
    public bool IsMultipleOf(SchemaNumber divisor)
    {
        if (Exact is { } a && divisor.Exact is { } b && b != 0m)
        {
            return a % b == 0m;
        }

        if (divisor.Approximate == 0d)
        {
            return false;
        }

        // A quotient within a billionth of a whole number is one, but a nonzero number is never a zero multiple (1e-30
        // of 1 is within a billionth of 0).
        var quotient = Approximate / divisor.Approximate;
        var whole = Math.Round(quotient);
        return whole == 0d ? Approximate == 0d : Math.Abs(quotient - whole) <= 1e-9 * Math.Abs(whole);
    }

    public override string ToString() => Text;
}

internal sealed class ObjectFacet
{
    public List<KeyValuePair<string, SchemaNode>> Properties { get; } = [];
    public Dictionary<string, SchemaNode> PropertyMap { get; } = new(StringComparer.Ordinal);
    public HashSet<string> Required { get; } = new(StringComparer.Ordinal);
    public bool PermitsAdditional { get; set; } = true;
    public SchemaNode? AdditionalSchema { get; set; }
    public List<(string Pattern, Regex Regex, SchemaNode Schema)> PatternProperties { get; } = [];
    public List<PropertyDependency> PropertyDependencies { get; } = [];
    public List<SchemaDependency> SchemaDependencies { get; } = [];
    public int? MinProperties { get; set; }
    public int? MaxProperties { get; set; }
    public SchemaNode? Unevaluated { get; set; }

    public SchemaNode? Property(string name) => PropertyMap.GetValueOrDefault(name);
}

/// <summary>A property dependency (draft-07 <c>dependencies</c> array, or <c>dependentRequired</c>), with the keyword it came from.</summary>
internal sealed record PropertyDependency(string Keyword, string Name, IReadOnlyList<string> Requires);

/// <summary>A schema dependency (draft-07 <c>dependencies</c> schema, or <c>dependentSchemas</c>), with the keyword it came from.</summary>
internal sealed record SchemaDependency(string Keyword, string Name, SchemaNode Schema);

internal sealed class ArrayFacet
{
    public SchemaNode? Items { get; set; }
    public List<SchemaNode>? Tuple { get; set; }
    public bool PermitsAdditional { get; set; } = true;
    public SchemaNode? AdditionalSchema { get; set; }
    public int? MinItems { get; set; }
    public int? MaxItems { get; set; }
    public bool UniqueItems { get; set; }
    public int? MinContains { get; set; }
    public int? MaxContains { get; set; }
    public SchemaNode? Unevaluated { get; set; }
}

internal sealed class StringFacet
{
    public int? MinLength { get; set; }
    public int? MaxLength { get; set; }
    public string? Pattern { get; set; }
}

internal sealed class NumberFacet
{
    public bool RequiresInteger { get; set; }
    public SchemaNumber? Minimum { get; set; }
    public SchemaNumber? Maximum { get; set; }
    public SchemaNumber? ExclusiveMinimum { get; set; }
    public SchemaNumber? ExclusiveMaximum { get; set; }
    public SchemaNumber? MultipleOf { get; set; }
}

internal sealed class CombinedFacet(Criterion criterion, bool synthetic)
{
    public Criterion Criterion { get; } = criterion;

    /// <summary>Made by the loader, not written in the document (type with enum, a type array): no path segment of its own.</summary>
    public bool Synthetic { get; } = synthetic;

    public List<SchemaNode> Subschemas { get; } = [];

    /// <summary>Each subschema's index in the document's array (duplicates are dropped, as Confluent drops them).</summary>
    public List<int> Indices { get; } = [];

    public string Keyword => Criterion switch
    {
        Criterion.AllOf => "allOf",
        Criterion.AnyOf => "anyOf",
        _ => "oneOf",
    };
}

/// <summary>
/// One schema of the typed model. A node is made once per place in the document, so a <c>$ref</c> to a definition
/// leads to the same node wherever it is written, which is what lets the comparison stop on recursive schemas.
/// </summary>
internal sealed class SchemaNode(string location)
{
    public string Location { get; } = location;
    public NodeKind Kind { get; set; }
    public string? Id { get; set; }
    public string? Title { get; set; }
    public string? Description { get; set; }
    public bool HasDefault { get; set; }
    public JsonNode? Default { get; set; }

    public ObjectFacet? Object { get; set; }
    public ArrayFacet? Array { get; set; }
    public StringFacet? String { get; set; }
    public NumberFacet? Number { get; set; }
    public CombinedFacet? Combined { get; set; }
    public SchemaNode? Not { get; set; }
    public List<JsonNode?>? EnumValues { get; set; }
    public JsonNode? ConstValue { get; set; }

    public bool IsCombined => Kind == NodeKind.Combined;

    /// <summary>Takes the kind and the facet of <paramref name="facet"/> (annotations stay this node's own).</summary>
    public void Become(SchemaNode facet)
    {
        Kind = facet.Kind;
        Object = facet.Object;
        Array = facet.Array;
        String = facet.String;
        Number = facet.Number;
        Combined = facet.Combined;
        Not = facet.Not;
        EnumValues = facet.EnumValues;
        ConstValue = facet.ConstValue;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Kind} at {Location}");
}
