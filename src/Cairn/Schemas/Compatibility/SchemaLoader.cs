using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Cairn.Schemas;

/// <summary>
/// Reads a JSON Schema document into the typed model Confluent's checker compares, as its loader (everit's) does:
/// <c>$ref</c> resolved (local pointers only), keywords grouped by kind, a schema with several kinds of keywords made an
/// <c>allOf</c> of one node per kind, a <c>type</c> array made an <c>anyOf</c>, keywords of a kind the <c>type</c> does
/// not name still read ("sniffed") as a schema of that kind. Draft-specific keywords are read into the same model.
/// </summary>
internal sealed class SchemaLoader
{
    private const int MaxDepth = JsonSchemaDocuments.MaxDepth;

    private static readonly string[] StringKeywords = ["minLength", "maxLength", "pattern", "format"];
    private static readonly string[] NumberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
    private static readonly string[] ObjectKeywords7 = ["properties", "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties", "dependencies", "propertyNames"];
    private static readonly string[] ObjectKeywords2019 = [.. ObjectKeywords7, "dependentRequired", "dependentSchemas", "unevaluatedProperties"];
    private static readonly string[] ArrayKeywords7 = ["items", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"];
    private static readonly string[] ArrayKeywords2019 = [.. ArrayKeywords7, "minContains", "maxContains", "unevaluatedItems"];
    private static readonly string[] ArrayKeywords2020 = [.. ArrayKeywords2019, "prefixItems"];
    private static readonly string[] OtherFacetKeywords = ["enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "type"];

    private readonly JsonObject _root;
    private readonly string _document;
    private readonly string? _paramName;
    private readonly Dictionary<JsonNode, SchemaNode> _nodes = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<JsonObject> _resolving = new(ReferenceEqualityComparer.Instance);
    private readonly string[] _objectKeywords;
    private readonly string[] _arrayKeywords;

    private SchemaLoader(JsonObject root, string document, string? paramName)
    {
        _root = root;
        _document = document;
        _paramName = paramName;
        Draft = DetectDraft();
        _objectKeywords = Draft == SchemaDraft.Draft7 ? ObjectKeywords7 : ObjectKeywords2019;
        _arrayKeywords = Draft switch
        {
            SchemaDraft.Draft7 => ArrayKeywords7,
            SchemaDraft.Draft2019 => ArrayKeywords2019,
            _ => ArrayKeywords2020,
        };
    }

    private SchemaDraft Draft { get; }

    /// <summary>Loads a whole document; <paramref name="document"/> names it in errors.</summary>
    public static LoadedSchema Load(JsonObject root, string document, string? paramName)
    {
        var loader = new SchemaLoader(root, document, paramName);
        try
        {
            return new LoadedSchema(loader.Load(root, "", 0), loader.Draft);
        }
        catch (InsufficientExecutionStackException)
        {
            throw loader.Invalid("", "the schema nests too deeply to be read");
        }
    }

    private SchemaDraft DetectDraft()
    {
        if (!_root.TryGetPropertyValue("$schema", out var value) || value is null)
        {
            return SchemaDraft.Draft7;
        }

        var uri = AsString(value, "/$schema");
        return uri.Contains("2020-12", StringComparison.Ordinal) ? SchemaDraft.Draft2020
            : uri.Contains("2019-09", StringComparison.Ordinal) ? SchemaDraft.Draft2019
            : SchemaDraft.Draft7;
    }

    private SchemaNode Load(JsonNode? json, string location, int depth)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        if (depth > MaxDepth)
        {
            throw Invalid(location, $"the schema nests deeper than {MaxDepth} levels");
        }

        if (json is null)
        {
            throw Invalid(location, "expected a JSON Schema (an object or a boolean), found null");
        }

        if (_nodes.TryGetValue(json, out var known))
        {
            return known;
        }

        switch (json)
        {
            case JsonValue value when value.GetValueKind() is JsonValueKind.True or JsonValueKind.False:
            {
                var node = new SchemaNode(location) { Kind = value.GetValueKind() == JsonValueKind.True ? NodeKind.Empty : NodeKind.False };
                _nodes[json] = node;
                return node;
            }

            case JsonObject obj when obj.TryGetPropertyValue("$ref", out var reference) && (Draft == SchemaDraft.Draft7 || !(HasFacetKeyword(obj) || HasAnnotation(obj))):
            {
                // A $ref alone (or, before 2019-09, with siblings, which it overrides) is the schema it refers to. From
                // 2019-09 on, one with a default, a title or a description beside it is a node of its own, holding them.
                var text = AsString(reference, location + "/$ref");
                if (!_resolving.Add(obj))
                {
                    throw Invalid(location, $"$ref '{text}' leads back here through $ref alone, so it never reaches a schema");
                }

                try
                {
                    var (target, targetLocation) = Resolve(text, location);
                    var node = Load(target, targetLocation, depth + 1);
                    _nodes[obj] = node;
                    return node;
                }
                finally
                {
                    _resolving.Remove(obj);
                }
            }

            case JsonObject obj:
            {
                var node = new SchemaNode(location);
                _nodes[obj] = node;
                Fill(node, obj, location, depth);
                return node;
            }

            default:
                throw Invalid(location, $"expected a JSON Schema (an object or a boolean), found {Describe(json)}");
        }
    }

    private static bool HasAnnotation(JsonObject obj) =>
        obj.ContainsKey("default") || obj.ContainsKey("title") || obj.ContainsKey("description");

    private bool HasFacetKeyword(JsonObject obj) =>
        OtherFacetKeywords.Any(obj.ContainsKey) || StringKeywords.Any(obj.ContainsKey) || NumberKeywords.Any(obj.ContainsKey)
        || _objectKeywords.Any(obj.ContainsKey) || _arrayKeywords.Any(obj.ContainsKey);

    private void Fill(SchemaNode node, JsonObject obj, string location, int depth)
    {
        var facets = new List<SchemaNode>();
        if (obj.TryGetPropertyValue("$ref", out var reference))
        {
            // 2019-09 and later: $ref applies beside the other keywords.
            var (target, targetLocation) = Resolve(AsString(reference, location + "/$ref"), location);
            facets.Add(Load(target, targetLocation, depth + 1));
        }

        if (obj.TryGetPropertyValue("enum", out var enumValue))
        {
            var values = AsArray(enumValue, location + "/enum");
            var distinct = new List<JsonNode?>();
            foreach (var value in values)
            {
                if (!distinct.Any(d => JsonNode.DeepEquals(d, value)))
                {
                    distinct.Add(value);
                }
            }

            facets.Add(new SchemaNode(location) { Kind = NodeKind.Enum, EnumValues = distinct });
        }

        var combinations = new List<SchemaNode>();
        foreach (var (keyword, criterion) in new[] { ("allOf", Criterion.AllOf), ("anyOf", Criterion.AnyOf), ("oneOf", Criterion.OneOf) })
        {
            if (obj.TryGetPropertyValue(keyword, out var branches))
            {
                combinations.Add(LoadCombination(keyword, criterion, branches, location, depth));
            }
        }

        if (combinations.Count == 1)
        {
            facets.Add(combinations[0]);
        }
        else if (combinations.Count > 1)
        {
            facets.Add(Synthetic(location, Criterion.AllOf, combinations));
        }

        if (obj.TryGetPropertyValue("not", out var not))
        {
            facets.Add(new SchemaNode(location) { Kind = NodeKind.Not, Not = Load(not, location + "/not", depth + 1) });
        }

        if (obj.TryGetPropertyValue("const", out var constValue))
        {
            facets.Add(new SchemaNode(location) { Kind = NodeKind.Const, ConstValue = constValue });
        }

        if (obj.ContainsKey("if"))
        {
            // Confluent's checker does not look inside if/then/else: two conditionals are equal to it.
            facets.Add(new SchemaNode(location) { Kind = NodeKind.Conditional });
        }

        var typed = new HashSet<NodeKind>();
        if (obj.TryGetPropertyValue("type", out var type))
        {
            facets.Add(LoadTyped(type, obj, location, depth, typed));
        }

        if (!typed.Contains(NodeKind.Array) && _arrayKeywords.Any(obj.ContainsKey))
        {
            facets.Add(Facet(NodeKind.Array, obj, location, depth, requiresInteger: false));
        }

        if (!typed.Contains(NodeKind.Object) && _objectKeywords.Any(obj.ContainsKey))
        {
            facets.Add(Facet(NodeKind.Object, obj, location, depth, requiresInteger: false));
        }

        if (!typed.Contains(NodeKind.Number) && NumberKeywords.Any(obj.ContainsKey))
        {
            facets.Add(Facet(NodeKind.Number, obj, location, depth, requiresInteger: false));
        }

        if (!typed.Contains(NodeKind.String) && StringKeywords.Any(obj.ContainsKey))
        {
            facets.Add(Facet(NodeKind.String, obj, location, depth, requiresInteger: false));
        }

        switch (facets.Count)
        {
            case 0:
                node.Kind = NodeKind.Empty;
                break;
            case 1:
                node.Become(facets[0]);
                break;
            default:
                node.Become(Synthetic(location, Criterion.AllOf, facets));
                break;
        }

        ReadAnnotations(node, obj, location);
    }

    private void ReadAnnotations(SchemaNode node, JsonObject obj, string location)
    {
        if (obj.TryGetPropertyValue("$id", out var id) || obj.TryGetPropertyValue("id", out id))
        {
            node.Id = id is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
        }

        if (obj.TryGetPropertyValue("title", out var title))
        {
            node.Title = AsString(title, location + "/title");
        }

        if (obj.TryGetPropertyValue("description", out var description))
        {
            node.Description = AsString(description, location + "/description");
        }

        if (obj.TryGetPropertyValue("default", out var defaultValue))
        {
            node.HasDefault = true;
            node.Default = defaultValue;
        }
    }

    private SchemaNode LoadCombination(string keyword, Criterion criterion, JsonNode? branches, string location, int depth)
    {
        var array = AsArray(branches, location + "/" + keyword);
        if (array.Count == 0)
        {
            throw Invalid(location + "/" + keyword, $"{keyword} must hold at least one schema");
        }

        var facet = new CombinedFacet(criterion, synthetic: false);
        for (var i = 0; i < array.Count; i++)
        {
            // Duplicates collapse, as in Confluent's checker, which compares the branches as a set.
            if (Enumerable.Range(0, i).Any(j => JsonNode.DeepEquals(array[j], array[i])))
            {
                continue;
            }

            facet.Subschemas.Add(Load(array[i], $"{location}/{keyword}/{i}", depth + 1));
            facet.Indices.Add(i);
        }

        return new SchemaNode(location) { Kind = NodeKind.Combined, Combined = facet };
    }

    private static SchemaNode Synthetic(string location, Criterion criterion, List<SchemaNode> subschemas)
    {
        var facet = new CombinedFacet(criterion, synthetic: true);
        for (var i = 0; i < subschemas.Count; i++)
        {
            facet.Subschemas.Add(subschemas[i]);
            facet.Indices.Add(i);
        }

        return new SchemaNode(location) { Kind = NodeKind.Combined, Combined = facet };
    }

    private SchemaNode LoadTyped(JsonNode? type, JsonObject obj, string location, int depth, HashSet<NodeKind> typed)
    {
        if (type is JsonArray names)
        {
            if (names.Count == 0)
            {
                throw Invalid(location + "/type", "a type array must name at least one type");
            }

            var facets = new List<SchemaNode>();
            for (var i = 0; i < names.Count; i++)
            {
                facets.Add(TypedFacet(AsString(names[i], $"{location}/type/{i}"), obj, location, depth, typed, $"{location}/type/{i}"));
            }

            return Synthetic(location, Criterion.AnyOf, facets);
        }

        return TypedFacet(AsString(type, location + "/type"), obj, location, depth, typed, location + "/type");
    }

    private SchemaNode TypedFacet(string name, JsonObject obj, string location, int depth, HashSet<NodeKind> typed, string at)
    {
        var kind = name switch
        {
            "string" => NodeKind.String,
            "number" or "integer" => NodeKind.Number,
            "boolean" => NodeKind.Boolean,
            "null" => NodeKind.Null,
            "object" => NodeKind.Object,
            "array" => NodeKind.Array,
            _ => throw Invalid(at, $"'{name}' is not a JSON Schema type (string, number, integer, boolean, null, object, array)"),
        };
        typed.Add(kind);
        return Facet(kind, obj, location, depth, requiresInteger: name == "integer");
    }

    private SchemaNode Facet(NodeKind kind, JsonObject obj, string location, int depth, bool requiresInteger)
    {
        var node = new SchemaNode(location) { Kind = kind };
        switch (kind)
        {
            case NodeKind.String:
                node.String = new StringFacet
                {
                    MinLength = Count(obj, "minLength", location),
                    MaxLength = Count(obj, "maxLength", location),
                    Pattern = obj.TryGetPropertyValue("pattern", out var pattern) ? AsString(pattern, location + "/pattern") : null,
                };
                break;
            case NodeKind.Number:
                node.Number = LoadNumber(obj, location, requiresInteger);
                break;
            case NodeKind.Object:
                node.Object = LoadObject(obj, location, depth);
                break;
            case NodeKind.Array:
                node.Array = LoadArray(obj, location, depth);
                break;
        }

        return node;
    }

    private NumberFacet LoadNumber(JsonObject obj, string location, bool requiresInteger)
    {
        var facet = new NumberFacet
        {
            RequiresInteger = requiresInteger,
            Minimum = Number(obj, "minimum", location),
            Maximum = Number(obj, "maximum", location),
            MultipleOf = Number(obj, "multipleOf", location),
        };

        if (facet.MultipleOf is { } multipleOf && multipleOf.Approximate <= 0)
        {
            throw Invalid(location + "/multipleOf", "multipleOf must be greater than 0");
        }

        // Draft-04 writes an exclusive bound as a flag on minimum/maximum; later drafts as a number of its own.
        if (obj.TryGetPropertyValue("exclusiveMinimum", out var exclusiveMinimum) && exclusiveMinimum?.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
        {
            if (exclusiveMinimum.GetValueKind() == JsonValueKind.True && facet.Minimum is { } minimum)
            {
                (facet.ExclusiveMinimum, facet.Minimum) = (minimum, null);
            }
        }
        else
        {
            facet.ExclusiveMinimum = Number(obj, "exclusiveMinimum", location);
        }

        if (obj.TryGetPropertyValue("exclusiveMaximum", out var exclusiveMaximum) && exclusiveMaximum?.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
        {
            if (exclusiveMaximum.GetValueKind() == JsonValueKind.True && facet.Maximum is { } maximum)
            {
                (facet.ExclusiveMaximum, facet.Maximum) = (maximum, null);
            }
        }
        else
        {
            facet.ExclusiveMaximum = Number(obj, "exclusiveMaximum", location);
        }

        return facet;
    }

    private ObjectFacet LoadObject(JsonObject obj, string location, int depth)
    {
        var facet = new ObjectFacet();
        if (obj.TryGetPropertyValue("properties", out var properties))
        {
            foreach (var (name, schema) in AsObject(properties, location + "/properties"))
            {
                var node = Load(schema, $"{location}/properties/{SchemaPaths.Escape(name)}", depth + 1);
                facet.Properties.Add(new(name, node));
                facet.PropertyMap[name] = node;
            }
        }

        if (obj.TryGetPropertyValue("required", out var required))
        {
            var names = AsArray(required, location + "/required");
            for (var i = 0; i < names.Count; i++)
            {
                facet.Required.Add(AsString(names[i], $"{location}/required/{i}"));
            }
        }

        if (obj.TryGetPropertyValue("additionalProperties", out var additional))
        {
            if (additional?.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
            {
                facet.PermitsAdditional = additional.GetValueKind() == JsonValueKind.True;
            }
            else
            {
                facet.AdditionalSchema = Load(additional, location + "/additionalProperties", depth + 1);
            }
        }

        if (obj.TryGetPropertyValue("patternProperties", out var patterns))
        {
            foreach (var (pattern, schema) in AsObject(patterns, location + "/patternProperties"))
            {
                var at = $"{location}/patternProperties/{SchemaPaths.Escape(pattern)}";
                Regex regex;
                try
                {
                    regex = PatternRegex(pattern);
                }
                catch (ArgumentException e)
                {
                    throw Invalid(at, $"'{pattern}' is not a regular expression ({e.Message.TrimEnd('.')})");
                }

                facet.PatternProperties.Add((pattern, regex, Load(schema, at, depth + 1)));
            }
        }

        facet.MinProperties = Count(obj, "minProperties", location);
        facet.MaxProperties = Count(obj, "maxProperties", location);

        if (obj.TryGetPropertyValue("dependencies", out var dependencies))
        {
            foreach (var (name, value) in AsObject(dependencies, location + "/dependencies"))
            {
                var at = $"{location}/dependencies/{SchemaPaths.Escape(name)}";
                if (value is JsonArray names)
                {
                    facet.PropertyDependencies.Add(new("dependencies", name, Strings(names, at)));
                }
                else
                {
                    facet.SchemaDependencies.Add(new("dependencies", name, Load(value, at, depth + 1)));
                }
            }
        }

        if (Draft != SchemaDraft.Draft7)
        {
            if (obj.TryGetPropertyValue("dependentRequired", out var dependentRequired))
            {
                foreach (var (name, value) in AsObject(dependentRequired, location + "/dependentRequired"))
                {
                    var at = $"{location}/dependentRequired/{SchemaPaths.Escape(name)}";
                    facet.PropertyDependencies.Add(new("dependentRequired", name, Strings(AsArray(value, at), at)));
                }
            }

            if (obj.TryGetPropertyValue("dependentSchemas", out var dependentSchemas))
            {
                foreach (var (name, value) in AsObject(dependentSchemas, location + "/dependentSchemas"))
                {
                    facet.SchemaDependencies.Add(new("dependentSchemas", name, Load(value, $"{location}/dependentSchemas/{SchemaPaths.Escape(name)}", depth + 1)));
                }
            }

            if (obj.TryGetPropertyValue("unevaluatedProperties", out var unevaluated))
            {
                facet.Unevaluated = Load(unevaluated, location + "/unevaluatedProperties", depth + 1);
            }
        }

        return facet;
    }

    private ArrayFacet LoadArray(JsonObject obj, string location, int depth)
    {
        var facet = new ArrayFacet();
        if (Draft == SchemaDraft.Draft2020)
        {
            var hasPrefix = obj.TryGetPropertyValue("prefixItems", out var prefix);
            if (hasPrefix)
            {
                facet.Tuple = LoadTuple(prefix, location + "/prefixItems", depth);
            }

            if (obj.TryGetPropertyValue("items", out var items))
            {
                // With prefixItems, items governs the rest; a boolean items governs every item either way.
                if (items?.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
                {
                    facet.PermitsAdditional = items.GetValueKind() == JsonValueKind.True;
                }
                else if (hasPrefix)
                {
                    facet.AdditionalSchema = Load(items, location + "/items", depth + 1);
                }
                else
                {
                    facet.Items = Load(items, location + "/items", depth + 1);
                }
            }
        }
        else
        {
            if (obj.TryGetPropertyValue("items", out var items))
            {
                if (items is JsonArray)
                {
                    facet.Tuple = LoadTuple(items, location + "/items", depth);
                }
                else
                {
                    facet.Items = Load(items, location + "/items", depth + 1);
                }
            }

            if (obj.TryGetPropertyValue("additionalItems", out var additional))
            {
                if (additional?.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
                {
                    facet.PermitsAdditional = additional.GetValueKind() == JsonValueKind.True;
                }
                else
                {
                    facet.AdditionalSchema = Load(additional, location + "/additionalItems", depth + 1);
                }
            }
        }

        facet.MinItems = Count(obj, "minItems", location);
        facet.MaxItems = Count(obj, "maxItems", location);
        if (obj.TryGetPropertyValue("uniqueItems", out var unique))
        {
            facet.UniqueItems = unique?.GetValueKind() switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Invalid(location + "/uniqueItems", $"uniqueItems must be a boolean, found {Describe(unique)}"),
            };
        }

        if (Draft != SchemaDraft.Draft7)
        {
            facet.MinContains = Count(obj, "minContains", location);
            facet.MaxContains = Count(obj, "maxContains", location);
            if (obj.TryGetPropertyValue("unevaluatedItems", out var unevaluated))
            {
                facet.Unevaluated = Load(unevaluated, location + "/unevaluatedItems", depth + 1);
            }
        }

        return facet;
    }

    private List<SchemaNode> LoadTuple(JsonNode? items, string location, int depth)
    {
        var array = AsArray(items, location);
        var tuple = new List<SchemaNode>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            tuple.Add(Load(array[i], $"{location}/{i}", depth + 1));
        }

        return tuple;
    }

    private (JsonNode? Target, string Location) Resolve(string reference, string location)
    {
        var at = location + "/$ref";
        if (!reference.StartsWith('#'))
        {
            throw Invalid(at, $"$ref '{reference}' is not a reference inside the document (only '#...' references are resolved)");
        }

        var fragment = Uri.UnescapeDataString(reference[1..]);
        if (fragment.Length == 0)
        {
            return (_root, "");
        }

        if (!fragment.StartsWith('/'))
        {
            throw Invalid(at, $"$ref '{reference}' names an anchor; only JSON Pointer references ('#/...') are resolved");
        }

        JsonNode? current = _root;
        var walked = "";
        foreach (var token in fragment[1..].Split('/'))
        {
            var name = token.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            walked += "/" + token;
            current = current switch
            {
                JsonObject obj when obj.TryGetPropertyValue(name, out var child) => child,
                JsonArray array when int.TryParse(name, out var index) && index >= 0 && index < array.Count => array[index],
                _ => throw Invalid(at, $"$ref '{reference}' does not resolve: the document has nothing at {walked}"),
            };
        }

        return (current, fragment);
    }

    private SchemaNumber? Number(JsonObject obj, string keyword, string location)
    {
        if (!obj.TryGetPropertyValue(keyword, out var value))
        {
            return null;
        }

        return value is JsonValue number && number.GetValueKind() == JsonValueKind.Number
            ? SchemaNumber.From(number)
            : throw Invalid($"{location}/{keyword}", $"{keyword} must be a number, found {Describe(value)}");
    }

    private int? Count(JsonObject obj, string keyword, string location)
    {
        if (!obj.TryGetPropertyValue(keyword, out var value))
        {
            return null;
        }

        if (value is JsonValue number && number.GetValueKind() == JsonValueKind.Number && SchemaNumber.From(number).Exact is { } count
            && count >= 0 && count <= int.MaxValue && decimal.Truncate(count) == count)
        {
            return (int)count;
        }

        throw Invalid($"{location}/{keyword}", $"{keyword} must be a non-negative integer, found {Describe(value)}");
    }

    private string AsString(JsonNode? value, string location) =>
        value is JsonValue text && text.GetValueKind() == JsonValueKind.String
            ? text.GetValue<string>()
            : throw Invalid(location, $"expected a string, found {Describe(value)}");

    private JsonArray AsArray(JsonNode? value, string location) =>
        value as JsonArray ?? throw Invalid(location, $"expected an array, found {Describe(value)}");

    private JsonObject AsObject(JsonNode? value, string location) =>
        value as JsonObject ?? throw Invalid(location, $"expected an object, found {Describe(value)}");

    private string[] Strings(JsonArray names, string location)
    {
        var strings = new string[names.Count];
        for (var i = 0; i < names.Count; i++)
        {
            strings[i] = AsString(names[i], $"{location}/{i}");
        }

        return strings;
    }

    private static string Describe(JsonNode? value) => value?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "null",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        _ => "a boolean",
    };

    /// <summary>
    /// A <c>patternProperties</c> expression, matched against property names: without backtracking where .NET can (in
    /// time linear in the name, so a nested quantifier cannot stall a check), with it and a one-second limit for what
    /// needs it (backreferences, lookarounds), whose <see cref="RegexMatchTimeoutException"/> the comparison reports.
    /// </summary>
    private static Regex PatternRegex(string pattern)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.NonBacktracking);
        }
        catch (NotSupportedException)
        {
            return new Regex(pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
    }

    private SchemaDocumentException Invalid(string location, string reason) =>
        new(_document, SchemaPaths.Display(location), reason, _paramName);
}

/// <summary>A loaded document: its root node and its draft (which names the keywords in paths).</summary>
internal sealed record LoadedSchema(SchemaNode Root, SchemaDraft Draft);

internal static class SchemaPaths
{
    /// <summary>Escapes a name as a JSON Pointer token.</summary>
    public static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    /// <summary>The root pointer "" shown as "/".</summary>
    public static string Display(string location) => location.Length == 0 ? "/" : location;
}
