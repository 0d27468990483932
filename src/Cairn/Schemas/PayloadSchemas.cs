using System.Collections.Frozen;
using System.Diagnostics.Metrics;
using System.Globalization;
using Json.Schema;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Schemas;

/// <summary>
/// The check every append and send passes through once the registry is loaded: a payload of a registered type without
/// a <c>dataschema</c> is given its current version's; a <c>dataschema</c> of Cairn's that names a version the registry
/// does not know, or of Cairn's form but naming no version (<c>urn:cairn:schema:order.placed:0</c>), is refused; and a
/// type whose validation mode is not <see cref="SchemaValidationMode.Off"/> has its payload validated against its
/// version's schema (the current version's under another producer's <c>dataschema</c>, which readers read as that).
/// Before it is loaded (a host that has not started, a store used without one) it lets everything pass as it is.
/// Another host may register versions after this one loaded them (a rolling deployment over one registry): a version
/// it does not know, or a validated type it has no schema of yet, makes it read that type's versions again (at most
/// once a second per type) before it refuses the version or lets the payload pass unvalidated.
/// </summary>
internal sealed class PayloadSchemas
{
    private static readonly Meter Meter = new("Cairn.Schemas");
    private static readonly Counter<long> Invalid = Meter.CreateCounter<long>("cairn.schemas.validation.failures", "{payload}", "Payloads that did not match their type's schema, by type and mode.");

    /// <summary>How long a type's versions, once read again, are trusted before a miss reads them again.</summary>
    private static readonly TimeSpan RereadInterval = TimeSpan.FromSeconds(1);

    private readonly Lock _gate = new();
    private volatile FrozenDictionary<string, TypeSchemas>? _types;
    private FrozenDictionary<string, SchemaValidationMode> _awaiting = FrozenDictionary<string, SchemaValidationMode>.Empty;
    private readonly Dictionary<string, long> _lastReread = new(StringComparer.Ordinal);
    private Func<string, CancellationToken, Task<IReadOnlyList<RegisteredSchema>>>? _read;
    private ILogger _logger = NullLogger.Instance;

    /// <summary>Whether the registry's versions are loaded.</summary>
    public bool IsLoaded => _types is not null;

    /// <summary>
    /// Loads each type's versions and validation mode; replaces what was loaded. <paramref name="awaiting"/> are the
    /// validated types without a schema yet, and <paramref name="read"/> reads a type's versions again.
    /// </summary>
    public void Load(
        IEnumerable<(string EventType, int Current, SchemaValidationMode Mode, IReadOnlyList<RegisteredSchema> Versions)> types,
        ILogger logger,
        IReadOnlyDictionary<string, SchemaValidationMode>? awaiting = null,
        Func<string, CancellationToken, Task<IReadOnlyList<RegisteredSchema>>>? read = null)
    {
        lock (_gate)
        {
            _logger = logger;
            _read = read;
            _awaiting = (awaiting ?? new Dictionary<string, SchemaValidationMode>()).ToFrozenDictionary(StringComparer.Ordinal);
            _lastReread.Clear();
            _types = types.ToFrozenDictionary(t => t.EventType, t => Built(t.EventType, t.Current, t.Mode, t.Versions), StringComparer.Ordinal);
        }
    }

    /// <summary>
    /// Loads only the classes' current versions, without the registry's (start-up registration is off): what is written
    /// by hand is still stamped with its class's version, and a malformed <c>dataschema</c> still refused; nothing is
    /// validated or checked against the registry. Replaces what was loaded.
    /// </summary>
    public void LoadClassVersions(IEnumerable<(string EventType, int Current)> types, ILogger logger)
    {
        lock (_gate)
        {
            _logger = logger;
            _read = null;
            _awaiting = FrozenDictionary<string, SchemaValidationMode>.Empty;
            _lastReread.Clear();
            _types = types.ToFrozenDictionary(
                t => t.EventType,
                t => new TypeSchemas(SchemaValidationMode.Off, FrozenDictionary<int, Lazy<JsonSchema>>.Empty, t.Current, t.Current, SchemaReference.Format(t.EventType, t.Current), VersionsKnown: false),
                StringComparer.Ordinal);
        }
    }

    private static TypeSchemas Built(string eventType, int current, SchemaValidationMode mode, IReadOnlyList<RegisteredSchema> versions)
    {
        var built = new Dictionary<int, Lazy<JsonSchema>>();
        foreach (var version in versions)
        {
            var schema = version.Schema;
            built[version.Version] = new Lazy<JsonSchema>(() => JsonSchemaDocuments.Build(schema));
        }

        return new TypeSchemas(mode, built.ToFrozenDictionary(), versions.Count == 0 ? current : versions[^1].Version, current, SchemaReference.Format(eventType, current));
    }

    /// <summary>
    /// The type's versions read again from the registry, when another host may have added some since they were loaded:
    /// null when there is nothing to read them with, they were read within <see cref="RereadInterval"/>, or nothing new
    /// came. A type awaiting its first schema takes the latest as current, as at the start.
    /// </summary>
    private TypeSchemas? Reread(string eventType, TypeSchemas? known)
    {
        Func<string, CancellationToken, Task<IReadOnlyList<RegisteredSchema>>> read;
        SchemaValidationMode mode;
        lock (_gate)
        {
            if (_read is null || (known is null && !_awaiting.ContainsKey(eventType)))
            {
                return null;
            }

            var now = Environment.TickCount64;
            if (_lastReread.TryGetValue(eventType, out var last) && now - last < RereadInterval.TotalMilliseconds)
            {
                return null;
            }

            _lastReread[eventType] = now;
            read = _read;
            mode = known?.Mode ?? _awaiting[eventType];
        }

        // Rare (a version or a schema this host has not seen), and the check is synchronous: the caller waits for the
        // read. SQLite's and the in-memory registry answer at once.
        var versions = read(eventType, CancellationToken.None).ConfigureAwait(false).GetAwaiter().GetResult();
        if (versions.Count == 0 || (known is not null && versions.Count == known.Versions.Count))
        {
            return null;
        }

        var reread = Built(eventType, known?.Current ?? versions[^1].Version, mode, versions);
        lock (_gate)
        {
            if (_types is { } types)
            {
                var updated = new Dictionary<string, TypeSchemas>(types, StringComparer.Ordinal) { [eventType] = reread };
                _types = updated.ToFrozenDictionary(StringComparer.Ordinal);
            }
        }

        return reread;
    }

    /// <summary>Checks one payload about to be appended or sent; returns the <c>dataschema</c> to write with it.</summary>
    /// <exception cref="UnknownSchemaVersionException">Its <c>dataschema</c> names a version the registry does not have, or is of Cairn's form but names no version.</exception>
    /// <exception cref="SchemaValidationException">It does not match, and the type's mode is <see cref="SchemaValidationMode.Reject"/>.</exception>
    public string? Check(string eventType, string? dataSchema, ReadOnlyMemory<byte> data, string kind, Envelopes.MessageId id)
    {
        if (_types is not { } types)
        {
            return dataSchema;
        }

        if (!types.TryGetValue(eventType, out var type))
        {
            if (_awaiting.ContainsKey(eventType) && Reread(eventType, null) is { } first)
            {
                type = first;
            }
            else
            {
                // A type with no class here (a gateway's): its versions are not known, but a dataschema of Cairn's form
                // must still name it and a version, or every reader that has its class refuses the event for good.
                if (dataSchema is not null)
                {
                    VersionNamed(eventType, dataSchema, 0, kind, id);
                }

                return dataSchema;
            }
        }

        dataSchema ??= type.CurrentDataSchema;
        int version;
        if (string.Equals(dataSchema, type.CurrentDataSchema, StringComparison.Ordinal))
        {
            // The common case, on every append and send: nothing to parse, and nothing more to do unless validating.
            if (type.Mode == SchemaValidationMode.Off)
            {
                return dataSchema;
            }

            version = type.Current;
        }
        else if (VersionNamed(eventType, dataSchema, type.Latest, kind, id) is { } named)
        {
            version = named;
        }
        else if (type.Mode == SchemaValidationMode.Off || !type.Versions.ContainsKey(type.Current))
        {
            // Another producer's URI, not validated (or no schema of the current version to validate it against).
            return dataSchema;
        }
        else
        {
            // Another producer's URI names no version of Cairn's, and readers read the payload as the current version:
            // it is validated as that, so Reject refuses what its readers could not read instead of writing it unchecked.
            version = type.Current;
        }

        if (!type.VersionsKnown)
        {
            // The registry was not read (start-up registration is off): the version is stamped, not checked.
            return dataSchema;
        }

        if (!type.Versions.TryGetValue(version, out var schema) && Reread(eventType, type) is { } reread)
        {
            type = reread;
            type.Versions.TryGetValue(version, out schema);
        }

        if (schema is null)
        {
            throw new UnknownSchemaVersionException(Subject(kind, id), eventType, version, type.Latest, string.Create(CultureInfo.InvariantCulture,
                $"the registry has {(type.Versions.Count == 0 ? "no version of it" : "versions " + string.Join(", ", type.Versions.Keys.Order()))}"));
        }

        if (type.Mode == SchemaValidationMode.Off)
        {
            return dataSchema;
        }

        var violations = JsonSchemaDocuments.Validate(schema.Value, data);
        if (violations.Count == 0)
        {
            return dataSchema;
        }

        Invalid.Add(1, new KeyValuePair<string, object?>("type", eventType), new KeyValuePair<string, object?>("mode", type.Mode == SchemaValidationMode.Reject ? "reject" : "warn"));
        if (type.Mode == SchemaValidationMode.Reject)
        {
            throw new SchemaValidationException(Subject(kind, id), eventType, version, violations);
        }

        _logger.LogWarning("The data of {Subject} does not match the schema of '{EventType}' version {Version}: {Violations}", Subject(kind, id), eventType, version, string.Join("; ", violations));
        return dataSchema;
    }

    /// <summary>
    /// The version a <c>dataschema</c> of Cairn's form names; null for another producer's URI. One naming another type,
    /// or of Cairn's form but naming no version, is refused: taken as another producer's, it would be written unchecked
    /// and read as the current version.
    /// </summary>
    private static int? VersionNamed(string eventType, string dataSchema, int latest, string kind, Envelopes.MessageId id)
    {
        if (SchemaReference.TryParse(dataSchema, out var reference))
        {
            return string.Equals(reference.EventType, eventType, StringComparison.Ordinal)
                ? reference.Version
                : throw new UnknownSchemaVersionException(Subject(kind, id), eventType, reference.Version, latest, $"its dataschema '{dataSchema}' names the type '{reference.EventType}'");
        }

        return SchemaReference.FaultOf(dataSchema) is { } fault
            ? throw new UnknownSchemaVersionException(Subject(kind, id), eventType, dataSchema, latest, fault)
            : null;
    }

    private static string Subject(string kind, Envelopes.MessageId id) => $"{kind} {id}";

    /// <summary>A type's versions as the registry holds them (<paramref name="VersionsKnown"/>), or only its class's current version.</summary>
    private sealed record TypeSchemas(SchemaValidationMode Mode, FrozenDictionary<int, Lazy<JsonSchema>> Versions, int Latest, int Current, string CurrentDataSchema, bool VersionsKnown = true);
}
