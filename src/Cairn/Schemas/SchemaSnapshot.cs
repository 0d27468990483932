using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.EventStore;

namespace Cairn.Schemas;

/// <summary>
/// The schema registry saved as one JSON document, to keep in a repository: every type's compatibility mode and
/// versions. A build pipeline checks the event types compiled into an assembly against it
/// (<see cref="SchemaCheck"/>) without a database.
/// </summary>
public sealed class SchemaSnapshot
{
    // The levels around a version's schema: the root, "eventTypes", the type, "versions" and the version. With them, a
    // snapshot holds schemas of exactly JsonSchemaDocuments.MaxDepth levels, no deeper.
    private const int MaxDepth = JsonSchemaDocuments.MaxDepth + 5;

    private readonly Dictionary<string, TypeEntry> _types;

    /// <summary>Creates a snapshot of the given types; each type's versions are kept oldest first.</summary>
    /// <exception cref="ArgumentException">
    /// A type is null or listed twice, its mode is not a <see cref="CompatibilityMode"/>, or its versions are missing,
    /// belong to another type, or are not contiguous from 1 or more: what <see cref="ToJson"/> would write could not be
    /// read back.
    /// </exception>
    public SchemaSnapshot(IEnumerable<TypeEntry> types)
    {
        ArgumentNullException.ThrowIfNull(types);
        _types = new Dictionary<string, TypeEntry>(StringComparer.Ordinal);
        foreach (var type in types)
        {
            var entry = Checked(type);
            if (!_types.TryAdd(entry.EventType, entry))
            {
                throw new ArgumentException($"The snapshot lists the event type '{entry.EventType}' twice.", nameof(types));
            }
        }
    }

    /// <summary>The entry with its versions oldest first, once they are known to read back as they are.</summary>
    private static TypeEntry Checked(TypeEntry? type)
    {
        if (type is null || type.EventType is null || type.Versions is null)
        {
            throw new ArgumentException("A snapshot's type entry, its name and its versions must not be null.", "types");
        }

        if (!Enum.IsDefined(type.Compatibility))
        {
            throw new ArgumentException($"The compatibility of '{type.EventType}' in the snapshot is {(int)type.Compatibility}, not one of {string.Join(", ", Enum.GetNames<CompatibilityMode>())}.", "types");
        }

        var versions = type.Versions.OrderBy(v => v?.Version ?? 0).ToList();
        for (var i = 0; i < versions.Count; i++)
        {
            var version = versions[i];
            if (version is null || version.Schema is null)
            {
                throw new ArgumentException($"A version of '{type.EventType}' in the snapshot is null or has no schema.", "types");
            }

            if (!string.Equals(version.EventType, type.EventType, StringComparison.Ordinal))
            {
                throw new ArgumentException($"The snapshot files version {version.Version} of '{version.EventType}' under '{type.EventType}'.", "types");
            }

            if (version.Version < 1 || (i > 0 && version.Version != versions[i - 1].Version + 1))
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The versions of '{type.EventType}' in the snapshot must be contiguous from 1 or more; they are {string.Join(", ", versions.Select(v => v!.Version))}."), "types");
            }
        }

        return type with { Versions = versions };
    }

    /// <summary>The types, in ordinal order of name.</summary>
    public IReadOnlyList<TypeEntry> Types => [.. _types.Values.OrderBy(t => t.EventType, StringComparer.Ordinal)];

    /// <summary>A type's versions, oldest first; empty when the snapshot has none.</summary>
    public IReadOnlyList<RegisteredSchema> VersionsOf(string eventType) =>
        _types.TryGetValue(eventType, out var entry) ? entry.Versions : [];

    /// <summary>A type's recorded compatibility mode, or null.</summary>
    public CompatibilityMode? CompatibilityOf(string eventType) =>
        _types.TryGetValue(eventType, out var entry) ? entry.Compatibility : null;

    /// <summary>The snapshot with one more version of a type (or a first one), and its mode.</summary>
    public SchemaSnapshot With(RegisteredSchema schema, CompatibilityMode mode)
    {
        ArgumentNullException.ThrowIfNull(schema);
        var types = new Dictionary<string, TypeEntry>(_types, StringComparer.Ordinal);
        var versions = VersionsOf(schema.EventType).Where(v => v.Version != schema.Version).Append(schema).OrderBy(v => v.Version).ToList();
        types[schema.EventType] = new TypeEntry(schema.EventType, mode, versions);
        return new SchemaSnapshot(types.Values);
    }

    /// <summary>The snapshot with a type's recorded mode changed; itself when the type has no versions in it.</summary>
    internal SchemaSnapshot WithMode(string eventType, CompatibilityMode mode)
    {
        if (!_types.TryGetValue(eventType, out var entry) || entry.Compatibility == mode)
        {
            return this;
        }

        var types = new Dictionary<string, TypeEntry>(_types, StringComparer.Ordinal) { [eventType] = entry with { Compatibility = mode } };
        return new SchemaSnapshot(types.Values);
    }

    /// <summary>Writes the snapshot as indented JSON, types and versions in order, so a change reads well in a diff.</summary>
    /// <exception cref="InvalidSchemaException">A version's document nests deeper than <see cref="JsonSchemaDocuments.MaxDepth"/>.</exception>
    public string ToJson()
    {
        var types = new JsonObject();
        foreach (var type in Types)
        {
            var versions = new JsonArray();
            foreach (var version in type.Versions)
            {
                if (JsonSchemaDocuments.NestsDeeperThan(version.Schema, JsonSchemaDocuments.MaxDepth))
                {
                    throw JsonSchemaDocuments.TooDeep(type.EventType, version.Version);
                }

                versions.Add(new JsonObject
                {
                    ["version"] = version.Version,
                    ["schema"] = version.Schema.DeepClone(),
                });
            }

            types[type.EventType] = new JsonObject
            {
                ["compatibility"] = type.Compatibility.ToString(),
                ["versions"] = versions,
            };
        }

        var root = new JsonObject { ["cairnSchemaSnapshot"] = 1, ["eventTypes"] = types };
        // Relaxed escaping: the file is read by people in diffs, never put into HTML, so a pattern's '+' stays '+'.
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, NewLine = "\n", Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = MaxDepth }) + "\n";
    }

    /// <summary>Reads a snapshot written by <see cref="ToJson"/>.</summary>
    /// <exception cref="InvalidSchemaSnapshotException">The text is not such a snapshot; the message says where.</exception>
    public static SchemaSnapshot Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonObject root;
        try
        {
            // A member twice (an event type listed twice) is refused while parsing, not met later as an ArgumentException.
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = MaxDepth }) as JsonObject
                ?? throw new InvalidSchemaSnapshotException("the document is not a JSON object");
        }
        catch (JsonException) when (JsonSchemaDocuments.NestsDeeperThan(json, MaxDepth))
        {
            throw new InvalidSchemaSnapshotException(string.Create(CultureInfo.InvariantCulture,
                $"the document nests objects and arrays deeper than {MaxDepth} levels; its schemas may nest at most {JsonSchemaDocuments.MaxDepth}"));
        }
        catch (JsonException ex)
        {
            throw new InvalidSchemaSnapshotException("the document is not valid JSON: " + ex.Message);
        }

        if (root["cairnSchemaSnapshot"] is not JsonValue format || !format.TryGetValue<int>(out var number) || number != 1)
        {
            throw new InvalidSchemaSnapshotException("'cairnSchemaSnapshot' must be 1");
        }

        if (root["eventTypes"] is not JsonObject types)
        {
            throw new InvalidSchemaSnapshotException("'eventTypes' must be an object");
        }

        var entries = new List<TypeEntry>();
        foreach (var (name, node) in types)
        {
            if (EventTypeNames.Validate(name) is { } fault)
            {
                throw new InvalidSchemaSnapshotException($"'{name}' is not a valid event type name: {fault}");
            }

            if (node is not JsonObject entry
                || entry["compatibility"] is not JsonValue modeValue || !modeValue.TryGetValue<string>(out var modeText)
                || ModeNamed(modeText) is not { } mode
                || entry["versions"] is not JsonArray versionArray)
            {
                throw new InvalidSchemaSnapshotException($"'{name}' needs a 'compatibility' (one of {string.Join(", ", Enum.GetNames<CompatibilityMode>())}) and a 'versions' array");
            }

            var versions = new List<RegisteredSchema>();
            foreach (var item in versionArray)
            {
                if (item is not JsonObject v || v["version"] is not JsonValue vv || !vv.TryGetValue<int>(out var version) || version < 1 || v["schema"] is not JsonObject schema)
                {
                    throw new InvalidSchemaSnapshotException($"each version of '{name}' needs a 'version' (1 or more) and a 'schema' object");
                }

                if (versions.Count > 0 && version != versions[^1].Version + 1)
                {
                    throw new InvalidSchemaSnapshotException(string.Create(CultureInfo.InvariantCulture, $"the versions of '{name}' must be contiguous and in order; {version} follows {versions[^1].Version}"));
                }

                versions.Add(new RegisteredSchema(name, version, (JsonObject)schema.DeepClone()));
            }

            entries.Add(new TypeEntry(name, mode, versions));
        }

        return new SchemaSnapshot(entries);
    }

    /// <summary>
    /// The mode of that name, in any case; null for anything else, also a list of names, which
    /// <see cref="Enum.TryParse{TEnum}(string, bool, out TEnum)"/> would combine into another mode.
    /// </summary>
    private static CompatibilityMode? ModeNamed(string text)
    {
        foreach (var mode in Enum.GetValues<CompatibilityMode>())
        {
            if (string.Equals(mode.ToString(), text, StringComparison.OrdinalIgnoreCase))
            {
                return mode;
            }
        }

        return null;
    }

    /// <summary>One type in a snapshot.</summary>
    /// <param name="EventType">The event type.</param>
    /// <param name="Compatibility">Its compatibility mode.</param>
    /// <param name="Versions">Its versions, oldest first.</param>
    public sealed record TypeEntry(string EventType, CompatibilityMode Compatibility, IReadOnlyList<RegisteredSchema> Versions);
}

/// <summary>A saved schema snapshot could not be read.</summary>
public sealed class InvalidSchemaSnapshotException(string reason)
    : CairnException($"The schema snapshot cannot be read: {reason}.");
