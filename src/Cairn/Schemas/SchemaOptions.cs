using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Schemas;

/// <summary>
/// How event types are versioned, checked and upcast: <c>services.AddCairn(o =&gt; o.Schemas…)</c>. The compatibility
/// and validation modes apply per type, with a default for all; documents supplied here replace the schema generated
/// from a class; upcasters turn a version's JSON into the next version's.
/// </summary>
public sealed class SchemaOptions
{
    private readonly Dictionary<string, CompatibilityMode> _compatibility = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SchemaValidationMode> _validation = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Type, int Version), JsonObject> _documents = [];
    private readonly List<Upcaster> _upcasters = [];

    /// <summary>The compatibility mode of a type that sets none: <see cref="CompatibilityMode.Backward"/>, as in Confluent's registry.</summary>
    public CompatibilityMode DefaultCompatibility { get; set; } = CompatibilityMode.Backward;

    /// <summary>The validation mode of a type that sets none: <see cref="SchemaValidationMode.Off"/>.</summary>
    public SchemaValidationMode DefaultValidation { get; set; } = SchemaValidationMode.Off;

    /// <summary>
    /// Whether the host registers the current version of every event type when it starts (true by default): a new
    /// version is checked against the earlier ones and recorded; a changed shape under a registered version stops the
    /// start.
    /// </summary>
    public bool RegisterOnStart { get; set; } = true;

    /// <summary>The upcasters added, in the order they were.</summary>
    public IReadOnlyList<Upcaster> Upcasters => _upcasters;

    /// <summary>Sets a type's compatibility mode.</summary>
    public SchemaOptions Compatibility(string eventType, CompatibilityMode mode)
    {
        ValidateName(eventType);
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, $"The compatibility mode of '{eventType}' must be one of {string.Join(", ", Enum.GetNames<CompatibilityMode>())}.");
        }

        _compatibility[eventType] = mode;
        return this;
    }

    /// <summary>Sets a type's validation mode on append and send.</summary>
    public SchemaOptions Validation(string eventType, SchemaValidationMode mode)
    {
        ValidateName(eventType);
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, $"The validation mode of '{eventType}' must be one of {string.Join(", ", Enum.GetNames<SchemaValidationMode>())}.");
        }

        _validation[eventType] = mode;
        return this;
    }

    /// <summary>Supplies the JSON Schema of a type's version instead of generating it from the class.</summary>
    /// <exception cref="InvalidSchemaException">The text is not a JSON object.</exception>
    public SchemaOptions Document(string eventType, int version, string schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return Document(eventType, version, JsonSchemaDocuments.Parse(eventType, version, schema));
    }

    /// <summary>Supplies the JSON Schema of a type's version instead of generating it from the class.</summary>
    public SchemaOptions Document(string eventType, int version, JsonObject schema)
    {
        ValidateName(eventType);
        ArgumentOutOfRangeException.ThrowIfLessThan(version, 1);
        ArgumentNullException.ThrowIfNull(schema);
        _documents[(eventType, version)] = (JsonObject)schema.DeepClone();
        return this;
    }

    /// <summary>
    /// Adds an upcaster of a type's JSON from version <paramref name="from"/> to <paramref name="to"/> (which must be
    /// <paramref name="from"/> + 1). It gets the event's data as a JSON object it may change, and returns the next
    /// version's (the same object or a new one).
    /// </summary>
    public SchemaOptions Upcast(string eventType, int from, int to, Func<JsonObject, JsonObject> upcast)
    {
        ValidateName(eventType);
        ArgumentNullException.ThrowIfNull(upcast);
        _upcasters.Add(new Upcaster(eventType, from, to, (json, _) => upcast(json)));
        return this;
    }

    /// <summary>
    /// Adds a typed upcaster between two classes that carry <see cref="EventTypeAttribute"/> with the same name and
    /// consecutive versions: the earlier version's JSON is read into <typeparamref name="TFrom"/>, and the result
    /// written as the next version's JSON.
    /// </summary>
    public SchemaOptions Upcast<TFrom, TTo>(Func<TFrom, TTo> upcast)
    {
        ArgumentNullException.ThrowIfNull(upcast);
        var from = typeof(TFrom).GetCustomAttribute<EventTypeAttribute>()
            ?? throw new ArgumentException($"{typeof(TFrom).FullName} has no [EventType] attribute naming its type and version.", nameof(upcast));
        var to = typeof(TTo).GetCustomAttribute<EventTypeAttribute>()
            ?? throw new ArgumentException($"{typeof(TTo).FullName} has no [EventType] attribute naming its type and version.", nameof(upcast));
        if (!string.Equals(from.Name, to.Name, StringComparison.Ordinal))
        {
            throw new ArgumentException($"{typeof(TFrom).Name} is '{from.Name}' and {typeof(TTo).Name} is '{to.Name}': a typed upcaster stays within one event type.", nameof(upcast));
        }

        _upcasters.Add(new Upcaster(from.Name, from.Version, to.Version, (json, options) =>
        {
            var before = json.Deserialize<TFrom>(options)
                ?? throw new JsonException($"The data of '{from.Name}' version {from.Version} is JSON null.");
            var after = upcast(before);
            return JsonSerializer.SerializeToNode(after, options) as JsonObject
                ?? throw new JsonException($"{typeof(TTo).Name} did not serialize to a JSON object.");
        }));
        return this;
    }

    /// <summary>A type's compatibility mode.</summary>
    public CompatibilityMode CompatibilityOf(string eventType) =>
        _compatibility.TryGetValue(eventType, out var mode) ? mode : DefaultCompatibility;

    /// <summary>A type's validation mode.</summary>
    public SchemaValidationMode ValidationOf(string eventType) =>
        _validation.TryGetValue(eventType, out var mode) ? mode : DefaultValidation;

    /// <summary>The document supplied for a type's version, or null when the class's schema is generated.</summary>
    public JsonObject? DocumentOf(string eventType, int version) =>
        _documents.TryGetValue((eventType, version), out var document) ? (JsonObject)document.DeepClone() : null;

    /// <summary>Every type with a validation mode set.</summary>
    internal IEnumerable<string> TypesWithValidation => _validation.Keys;

    /// <summary>
    /// Why each document supplied for a version no registered class is at would never be used (a version number left
    /// behind when the class moved on, a type with no class here), in order: a host's start and the build's check
    /// refuse them rather than go on without the schema meant.
    /// </summary>
    internal IEnumerable<string> UnusedDocuments(Serialization.EventTypeRegistry types) =>
        _documents.Keys
            .Where(d => !types.TryGetType(d.Type, out _) || types.GetVersion(d.Type) != d.Version)
            .OrderBy(d => d.Type, StringComparer.Ordinal).ThenBy(d => d.Version)
            .Select(d => string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"A schema document is supplied for '{d.Type}' version {d.Version}, but {(types.TryGetType(d.Type, out _) ? $"its class is at version {types.GetVersion(d.Type)}" : "no class is registered for the type")}: it would never be used. Supply it for the version the class is at."));

    /// <summary>
    /// A fault for each compatibility mode set for a type with no class here: no version of it is registered from this
    /// service, so the mode would never be used (a misspelt name leaves the real type at the default mode, unnoticed).
    /// </summary>
    internal IEnumerable<string> UnusedCompatibilities(Serialization.EventTypeRegistry types) =>
        _compatibility
            .Where(c => !types.TryGetType(c.Key, out _))
            .OrderBy(c => c.Key, StringComparer.Ordinal)
            .Select(c => $"A compatibility mode ({c.Value}) is set for '{c.Key}', but no class is registered for the type: it would never be used. Set it for a type this service registers.");

    private static void ValidateName(string eventType)
    {
        if (EventTypeNames.Validate(eventType) is { } fault)
        {
            throw new ArgumentException($"'{eventType}' is not a valid event type name: {fault}.", nameof(eventType));
        }
    }
}

/// <summary>
/// Turns the JSON of one version of an event type into the next version's.
/// </summary>
/// <param name="EventType">The event type.</param>
/// <param name="From">The version it reads.</param>
/// <param name="To">The version it writes: <paramref name="From"/> + 1.</param>
/// <param name="Apply">The conversion, given the data and the JSON options of the serializer.</param>
public sealed record Upcaster(string EventType, int From, int To, Func<JsonObject, JsonSerializerOptions, JsonObject> Apply);
