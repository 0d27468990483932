using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Schema;
using System.Text.Json.Serialization.Metadata;
using Cairn.EventStore;
using Json.Schema;

namespace Cairn.Schemas;

/// <summary>
/// JSON Schema documents as the registry takes them: parsed, checked against their draft's meta-schema, generated
/// from a class, compared, and built for validating payloads. Draft-07 and 2020-12 are accepted; a document without
/// <c>$schema</c> is read as 2020-12.
/// </summary>
public static class JsonSchemaDocuments
{
    /// <summary>The <c>$schema</c> of draft 2020-12, written on generated documents.</summary>
    public const string Draft202012 = "https://json-schema.org/draft/2020-12/schema";

    /// <summary>The <c>$schema</c> of draft-07.</summary>
    public const string Draft07 = "http://json-schema.org/draft-07/schema#";

    /// <summary>
    /// The deepest nesting of JSON objects and arrays a schema document may have: 256 levels. Every parse and write of a
    /// schema (registration, check, the stores, snapshots, the host's start) uses it, so a document taken once can
    /// always be read back; a deeper one is refused with <see cref="InvalidSchemaException"/>.
    /// </summary>
    public const int MaxDepth = 256;

    /// <summary>Reads schema documents up to <see cref="MaxDepth"/> levels (System.Text.Json reads 64 by default).</summary>
    internal static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = MaxDepth };

    // Writes up to MaxDepth levels, where a JsonNode's ToJsonString() without options stops at 64.
    private static readonly JsonSerializerOptions TextOptions = new() { MaxDepth = MaxDepth };

    // Formats stay annotations, as 2020-12 has them: System.Text.Json writes values their strict forms refuse (a DateTime
    // without an offset, a TimeOnly, a relative Uri), so enforcing them would refuse the serializer's own payloads.
    private static readonly EvaluationOptions ListErrors = new() { OutputFormat = OutputFormat.List };

    private static readonly EvaluationOptions FlagOnly = new() { OutputFormat = OutputFormat.Flag };

    /// <summary>Parses a schema document's text.</summary>
    /// <exception cref="InvalidSchemaException">The text is not JSON, or not a JSON object.</exception>
    public static JsonObject Parse(string eventType, int version, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        try
        {
            return JsonNode.Parse(text, documentOptions: DocumentOptions) as JsonObject
                ?? throw new InvalidSchemaException(eventType, version, [new SchemaViolation("", "type", "a schema document must be a JSON object")]);
        }
        catch (JsonException) when (NestsDeeperThan(text, MaxDepth))
        {
            throw TooDeep(eventType, version);
        }
        catch (JsonException ex)
        {
            throw new InvalidSchemaException(eventType, version, [new SchemaViolation(
                ex.LineNumber is { } line ? string.Create(CultureInfo.InvariantCulture, $"line {line + 1}, byte {ex.BytePositionInLine + 1}") : "",
                "json",
                "the document is not valid JSON: " + ex.Message)]);
        }
    }

    /// <summary>
    /// Checks a document against the meta-schema of its draft, and that it can be built for validation (every
    /// <c>$ref</c> resolves).
    /// </summary>
    /// <exception cref="InvalidSchemaException">It names an unknown draft, or breaks its meta-schema; each fault is listed.</exception>
    public static void Check(string eventType, int version, JsonObject schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (NestsDeeperThan(schema, MaxDepth))
        {
            // A document built in code has no depth limit of its own; every later read of its text would fail.
            throw TooDeep(eventType, version);
        }

        WithStackFor([schema], () =>
        {
            CheckWithinDepth(eventType, version, schema);
            return true;
        });
    }

    private static void CheckWithinDepth(string eventType, int version, JsonObject schema)
    {
        var draft = schema["$schema"] is JsonValue value && value.TryGetValue<string>(out var named) ? named : null;
        var meta = draft switch
        {
            null => MetaSchemas.Draft202012,
            _ when IsDraft(draft, "json-schema.org/draft/2020-12/schema") => MetaSchemas.Draft202012,
            _ when IsDraft(draft, "json-schema.org/draft-07/schema") => MetaSchemas.Draft7,
            _ => throw new InvalidSchemaException(eventType, version, [new SchemaViolation("/$schema", "$schema",
                $"'{draft}' is not a draft Cairn reads; use {Draft202012} or {Draft07}")]),
        };

        using var document = JsonDocument.Parse(ToText(schema), DocumentOptions);
        var results = meta.Evaluate(document.RootElement, ListErrors);
        if (!results.IsValid)
        {
            throw new InvalidSchemaException(eventType, version, Violations(results));
        }

        var unresolved = new List<SchemaViolation>();
        CheckReferences(schema, schema, "", unresolved);
        if (unresolved.Count > 0)
        {
            throw new InvalidSchemaException(eventType, version, unresolved);
        }

        try
        {
            Build(schema);
        }
        catch (Exception ex) when (ex is JsonSchemaException or ArgumentException)
        {
            // ArgumentException: a "pattern" or "patternProperties" key that is no regular expression (RegexParseException).
            throw new InvalidSchemaException(eventType, version, [new SchemaViolation("", "schema", ex.Message)]);
        }
    }

    /// <summary>
    /// Every <c>$ref</c> must be a JSON Pointer into the document (after <c>#</c>): the registry fetches nothing, so a
    /// version means the same whatever is reachable when it is read, and the compatibility rules can follow it.
    /// </summary>
    private static void CheckReferences(JsonObject root, JsonNode? node, string path, List<SchemaViolation> faults, bool names = false)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, value) in obj)
                {
                    var at = path + "/" + key.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
                    if (!names && key == "$ref" && value is JsonValue reference && reference.TryGetValue<string>(out var target) && !Resolves(root, target))
                    {
                        faults.Add(new SchemaViolation(at, "$ref", $"'{target}' does not resolve inside the document; references must be JSON Pointers into the document (#/$defs/…, #/definitions/…)"));
                    }
                    else if (names || !DataKeywords.Contains(key))
                    {
                        // The keys of a map of subschemas (properties, $defs …) are names, not keywords.
                        CheckReferences(root, value, at, faults, names: !names && SchemaMaps.Contains(key));
                    }
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    CheckReferences(root, array[i], path + "/" + i.ToString(CultureInfo.InvariantCulture), faults);
                }

                break;
        }
    }

    /// <summary>Keywords whose values are instance data, where a <c>$ref</c> member is data too, not a reference.</summary>
    internal static readonly HashSet<string> DataKeywords = new(StringComparer.Ordinal) { "const", "enum", "default", "examples" };

    /// <summary>
    /// Keywords whose values map names (of properties, definitions) to subschemas; draft-07's <c>dependencies</c> maps
    /// names to a subschema or to an array of names, which holds no reference.
    /// </summary>
    internal static readonly HashSet<string> SchemaMaps = new(StringComparer.Ordinal) { "properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies" };

    private static bool Resolves(JsonObject root, string reference)
    {
        if (!reference.StartsWith('#'))
        {
            return false;
        }

        var fragment = Uri.UnescapeDataString(reference[1..]);
        if (fragment.Length == 0)
        {
            return true;
        }

        if (!fragment.StartsWith('/'))
        {
            // An anchor: the compatibility rules follow JSON Pointers only.
            return false;
        }

        JsonNode? current = root;
        foreach (var raw in fragment[1..].Split('/'))
        {
            var token = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            current = current switch
            {
                JsonObject obj when obj.TryGetPropertyValue(token, out var next) => next,
                JsonArray array when int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index < array.Count => array[index],
                _ => null,
            };
            if (current is null)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The JSON Schema (2020-12) of a class as System.Text.Json writes it with <paramref name="options"/>, through
    /// <see cref="JsonSchemaExporter"/>: properties, their types, and the constructor parameters without a default as
    /// <c>required</c>. Each object is a closed content model (<c>"additionalProperties": false</c>, unless its class
    /// has a <c>[JsonExtensionData]</c> member): a class says exactly which fields it has, so adding an optional field
    /// is backward compatible and removing one is not, as Confluent's rules read closed models.
    /// </summary>
    public static JsonObject Generate(Type type, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(options);
        if (options.TypeInfoResolver is null)
        {
            options = new JsonSerializerOptions(options) { TypeInfoResolver = new DefaultJsonTypeInfoResolver() };
        }

        options.MakeReadOnly();
        var node = JsonSchemaExporter.GetJsonSchemaAsNode(options, type, new JsonSchemaExporterOptions
        {
            TreatNullObliviousAsNonNullable = true,
            TransformSchemaNode = static (context, schema) =>
            {
                if (context.TypeInfo.Kind == JsonTypeInfoKind.Object && schema is JsonObject obj)
                {
                    // Closed, also a class with no properties (a marker event): it says exactly which fields it has.
                    // Not a reference (a recursive class's "#") nor a polymorphic base's choice of subtypes: in draft
                    // 2020-12 "additionalProperties" sees only the "properties" beside it, so there it would refuse
                    // every member; each subtype's own node is closed instead.
                    if (!obj.ContainsKey("additionalProperties") && !obj.ContainsKey("$ref") && !obj.ContainsKey("anyOf") && !obj.ContainsKey("oneOf")
                        && !context.TypeInfo.Properties.Any(p => p.IsExtensionData))
                    {
                        obj["additionalProperties"] = false;
                    }

                    // A member the options may leave out of the JSON (a null under WhenWritingNull, a default under
                    // WhenWritingDefault) is not required, unless the class says so itself.
                    if (obj["required"] is JsonArray required)
                    {
                        foreach (var property in context.TypeInfo.Properties.Where(p => !p.IsRequired && MayBeLeftOut(p)))
                        {
                            var name = required.FirstOrDefault(n => n?.GetValue<string>() == property.Name);
                            if (name is not null)
                            {
                                required.Remove(name);
                            }
                        }

                        if (required.Count == 0)
                        {
                            obj.Remove("required");
                        }
                    }
                }

                if (context.PropertyInfo is { AttributeProvider: MemberInfo member } exported && schema is JsonObject propertySchema)
                {
                    AllowNullElements(propertySchema, exported.PropertyType, Nullability(member), exported.Options);
                }

                return schema;
            },
        });
        var schema = node as JsonObject ?? new JsonObject { ["not"] = new JsonObject() };
        var ordered = new JsonObject { ["$schema"] = Draft202012 };
        foreach (var (key, value) in schema)
        {
            if (key != "$schema")
            {
                ordered[key] = value?.DeepClone();
            }
        }

        return ordered;
    }

    /// <summary>
    /// The nullability a member's declaration gives its type and its type's arguments, or null for a member without
    /// one (a constructor's parameter stands in through its property).
    /// </summary>
    private static NullabilityInfo? Nullability(MemberInfo member)
    {
        var context = new NullabilityInfoContext();
        return member switch
        {
            PropertyInfo p => context.Create(p),
            FieldInfo f => context.Create(f),
            _ => null,
        };
    }

    /// <summary>
    /// Lets a collection's or a dictionary's elements be null where the member declares them so (<c>List&lt;string?&gt;</c>,
    /// <c>Dictionary&lt;string, Note?&gt;</c>), at every level: the exporter reads no annotation on a type argument, so
    /// under <c>TreatNullObliviousAsNonNullable</c> it would refuse the nulls the serializer writes for them.
    /// </summary>
    private static void AllowNullElements(JsonObject schema, Type type, NullabilityInfo? nullability, JsonSerializerOptions options)
    {
        if (nullability is null)
        {
            return;
        }

        var typeInfo = options.GetTypeInfo(type);
        if (typeInfo.Kind is not (JsonTypeInfoKind.Enumerable or JsonTypeInfoKind.Dictionary) || typeInfo.ElementType is not { } elementType)
        {
            return;
        }

        var arguments = nullability.GenericTypeArguments;
        var element = nullability.ElementType
            ?? (typeInfo.Kind == JsonTypeInfoKind.Dictionary && arguments.Length == 2 ? arguments[1]
                : typeInfo.Kind == JsonTypeInfoKind.Enumerable && arguments.Length == 1 ? arguments[0]
                : null);
        if (element is null || element.Type != elementType || schema[typeInfo.Kind == JsonTypeInfoKind.Dictionary ? "additionalProperties" : "items"] is not JsonObject elementSchema)
        {
            return;
        }

        if (!elementType.IsValueType && element.ReadState == NullabilityState.Nullable)
        {
            switch (elementSchema["type"])
            {
                case JsonValue single when single.GetValue<string>() != "null":
                    elementSchema["type"] = new JsonArray(single.GetValue<string>(), "null");
                    break;
                case JsonArray several when !several.Any(t => t?.GetValue<string>() == "null"):
                    several.Add("null");
                    break;
            }
        }

        AllowNullElements(elementSchema, elementType, element, options);
    }

    /// <summary>
    /// Whether the serializer may write an object without the member: by its own condition, or the options' default one
    /// (a member annotated as nullable under <see cref="JsonIgnoreCondition.WhenWritingNull"/>, any under
    /// <see cref="JsonIgnoreCondition.WhenWritingDefault"/>).
    /// </summary>
    private static bool MayBeLeftOut(JsonPropertyInfo property) =>
        property.ShouldSerialize is not null
        || property.Options.DefaultIgnoreCondition == JsonIgnoreCondition.WhenWritingDefault
        || (property.Options.DefaultIgnoreCondition == JsonIgnoreCondition.WhenWritingNull
            && (property.PropertyType.IsValueType ? Nullable.GetUnderlyingType(property.PropertyType) is not null : property.IsGetNullable));

    /// <summary>Whether two documents say the same: equal JSON, whatever the order of object members.</summary>
    public static bool SameDocument(JsonNode? a, JsonNode? b) => JsonNode.DeepEquals(a, b);

    /// <summary>Builds a document for validating payloads, in a registry of its own so <c>$id</c>s never clash.</summary>
    internal static JsonSchema Build(JsonObject schema)
    {
        var deep = NestsDeeperThan(schema, ShallowDepth);
        var built = WithStackFor([schema], () =>
            JsonSchema.FromText(ToText(schema), new BuildOptions { SchemaRegistry = new Json.Schema.SchemaRegistry() }, null, DocumentOptions));
        if (deep)
        {
            DeepSchemas.AddOrUpdate(built, built);
        }

        return built;
    }

    /// <summary>
    /// The depth up to which a document is checked, compared and validated on the caller's thread: System.Text.Json's
    /// default limit, which every document met before the limit was raised to <see cref="MaxDepth"/>.
    /// </summary>
    private const int ShallowDepth = 64;

    /// <summary>
    /// The stack of the thread that checks, compares and validates deeper documents. JsonSchema.Net and the comparer
    /// recurse several calls per level: a 2020-12 meta-schema check of a document <see cref="MaxDepth"/> levels deep
    /// overflows a 1 MB stack (Windows' default), which would end the process. 16 MB leaves room many times over.
    /// </summary>
    private const int DeepStackSize = 16 * 1024 * 1024;

    // The built schemas of deeper documents, whose validation needs the deep stack too; weak, so they go with their schema.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<JsonSchema, JsonSchema> DeepSchemas = [];

    /// <summary>
    /// Runs work over documents: on the caller's thread when none nests deeper than 64 levels, or else on a thread of
    /// its own with a stack deep enough for <see cref="MaxDepth"/> levels, waiting for it. Exceptions pass through.
    /// </summary>
    internal static T WithStackFor<T>(IEnumerable<JsonNode?> documents, Func<T> work) =>
        documents.Any(d => NestsDeeperThan(d, ShallowDepth)) ? OnDeepStack(work) : work();

    private static T OnDeepStack<T>(Func<T> work)
    {
        T result = default!;
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = work();
            }
            catch (Exception ex)
            {
                failure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex);
            }
        }, DeepStackSize)
        {
            IsBackground = true,
            Name = "Cairn deep schema",
        };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }

    /// <summary>A schema document's compact JSON text, written up to <see cref="MaxDepth"/> levels.</summary>
    internal static string ToText(JsonNode schema) => schema.ToJsonString(TextOptions);

    /// <summary>The refusal of a document nested deeper than <see cref="MaxDepth"/>.</summary>
    internal static InvalidSchemaException TooDeep(string eventType, int version) =>
        new(eventType, version, [new SchemaViolation("", "depth", TooDeepReason)]);

    /// <summary>Why a document nested deeper than <see cref="MaxDepth"/> is refused.</summary>
    internal static string TooDeepReason =>
        string.Create(CultureInfo.InvariantCulture, $"the document nests objects and arrays deeper than {MaxDepth} levels, the most a schema may have");

    /// <summary>Whether a document nests objects and arrays deeper than <paramref name="limit"/> levels.</summary>
    internal static bool NestsDeeperThan(JsonNode? node, int limit)
    {
        // A stack of its own rather than recursion: a document built in code may be deeper than the thread's stack.
        var pending = new Stack<(JsonNode Node, int Depth)>();
        if (node is JsonObject or JsonArray)
        {
            pending.Push((node, 1));
        }

        while (pending.TryPop(out var item))
        {
            if (item.Depth > limit)
            {
                return true;
            }

            IEnumerable<JsonNode?> children = item.Node is JsonObject obj ? obj.Select(p => p.Value) : (JsonArray)item.Node;
            foreach (var child in children)
            {
                if (child is JsonObject or JsonArray)
                {
                    pending.Push((child, item.Depth + 1));
                }
            }
        }

        return false;
    }

    /// <summary>
    /// Whether JSON text nests objects and arrays deeper than <paramref name="limit"/> levels, before any fault of
    /// another kind in it: so a parse that failed can say it was the depth.
    /// </summary>
    internal static bool NestsDeeperThan(string text, int limit)
    {
        // The reader keeps its depth in a bit stack, not the call stack, so it may go as deep as the text does.
        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(text), new JsonReaderOptions { MaxDepth = int.MaxValue });
        try
        {
            while (reader.Read())
            {
                // CurrentDepth counts the containers around the token: the (limit + 1)th container has limit around it.
                if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray && reader.CurrentDepth >= limit)
                {
                    return true;
                }
            }
        }
        catch (JsonException)
        {
            // Malformed before it got too deep: the parse's own error says where.
        }

        return false;
    }

    /// <summary>
    /// Payloads are read as the schema evaluator reads them, but refusing a property named twice: the evaluator judges
    /// its first value, the serializer (and so every reader) takes its last, so either verdict could be wrong.
    /// </summary>
    private static readonly JsonDocumentOptions PayloadOptions = new() { AllowDuplicateProperties = false };

    /// <summary>Validates one payload; the list is empty when it matches.</summary>
    internal static IReadOnlyList<SchemaViolation> Validate(JsonSchema schema, ReadOnlyMemory<byte> payload)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(payload, PayloadOptions);
        }
        catch (JsonException ex)
        {
            return [new SchemaViolation("", "json", (NamesAPropertyTwice(payload) ? "the payload names a property twice, whose last value readers take and the schema cannot judge: " : "the payload is not valid JSON: ") + ex.Message)];
        }

        using (document)
        {
            if (DeepSchemas.TryGetValue(schema, out _))
            {
                var root = document.RootElement;
                return OnDeepStack(() => Evaluate(schema, root));
            }

            return Evaluate(schema, document.RootElement);
        }
    }

    /// <summary>Whether JSON refused for a property named twice is otherwise well formed.</summary>
    private static bool NamesAPropertyTwice(ReadOnlyMemory<byte> payload)
    {
        try
        {
            using var _ = JsonDocument.Parse(payload);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static IReadOnlyList<SchemaViolation> Evaluate(JsonSchema schema, JsonElement payload)
    {
        try
        {
            // A yes or no first, which builds far less (measured in S1): the list of what failed is built only
            // for a payload that fails.
            if (schema.Evaluate(payload, FlagOnly).IsValid)
            {
                return [];
            }

            return Violations(schema.Evaluate(payload, ListErrors));
        }
        catch (JsonSchemaException ex)
        {
            // A registered document is checked for this; one supplied around the registry may still fail here.
            return [new SchemaViolation("", "$ref", ex.Message)];
        }
    }

    private static string LastKeyword(string evaluationPath)
    {
        foreach (var segment in evaluationPath.Split('/', StringSplitOptions.RemoveEmptyEntries).Reverse())
        {
            if (segment.Length > 0 && !char.IsDigit(segment[0]))
            {
                return segment;
            }
        }

        return "schema";
    }

    private static bool IsDraft(string named, string id) =>
        named.TrimEnd('#').EndsWith(id, StringComparison.Ordinal);

    private static List<SchemaViolation> Violations(EvaluationResults results)
    {
        var violations = new List<SchemaViolation>();
        foreach (var detail in results.Details ?? [results])
        {
            if (detail.Errors is not { Count: > 0 } errors)
            {
                continue;
            }

            foreach (var (keyword, message) in errors)
            {
                // A false schema (additionalProperties: false, say) reports no keyword of its own: the rule is the
                // keyword that led to it.
                var rule = keyword.Length > 0 ? keyword : LastKeyword(detail.EvaluationPath.ToString());
                violations.Add(new SchemaViolation(detail.InstanceLocation.ToString(), rule, message));
            }
        }

        if (violations.Count == 0)
        {
            violations.Add(new SchemaViolation("", "schema", "the document does not match its schema"));
        }

        return violations;
    }
}

/// <summary>One rule a JSON document broke: where (a JSON Pointer into the document), which keyword, and why.</summary>
/// <param name="Path">The JSON Pointer of the value that broke the rule; empty for the whole document.</param>
/// <param name="Rule">The JSON Schema keyword, such as <c>required</c> or <c>minimum</c>.</param>
/// <param name="Message">What was wrong.</param>
public sealed record SchemaViolation(string Path, string Rule, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"{(Path.Length == 0 ? "(root)" : Path)}: {Rule}: {Message}";
}

/// <summary>A schema document is refused: not JSON, not an object, an unknown draft, or not valid JSON Schema.</summary>
public sealed class InvalidSchemaException(string eventType, int version, IReadOnlyList<SchemaViolation> violations)
    : CairnException(string.Create(CultureInfo.InvariantCulture, $"The schema of '{eventType}' version {version} is not a valid JSON Schema document: {string.Join("; ", violations)}."))
{
    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version.</summary>
    public int Version { get; } = version;

    /// <summary>Each fault, with its place in the document.</summary>
    public IReadOnlyList<SchemaViolation> Violations { get; } = violations;
}

/// <summary>A payload did not match its type's schema under the <see cref="SchemaValidationMode.Reject"/> mode; nothing was written.</summary>
public sealed class SchemaValidationException(string what, string eventType, int version, IReadOnlyList<SchemaViolation> violations)
    : CairnException(string.Create(CultureInfo.InvariantCulture, $"The data of {what} does not match the schema of '{eventType}' version {version}: {string.Join("; ", violations)}."))
{
    /// <summary>The event or message refused.</summary>
    public string Subject { get; } = what;

    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version whose schema it broke.</summary>
    public int Version { get; } = version;

    /// <summary>Each rule broken, with the JSON path of the value.</summary>
    public IReadOnlyList<SchemaViolation> Violations { get; } = violations;
}
