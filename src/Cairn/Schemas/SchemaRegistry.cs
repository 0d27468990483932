using System.Globalization;
using System.Text.Json.Nodes;
using Cairn.EventStore;

namespace Cairn.Schemas;

/// <summary>
/// The schema registry: each event type's versions, immutable once registered, kept by the backend's
/// <see cref="ISchemaStore"/>. A new version is checked (valid JSON Schema of its draft; compatible with the earlier
/// versions under the type's mode) before it is recorded; registering a version again with the same document changes
/// nothing, and with another document is refused.
/// </summary>
public sealed class SchemaRegistry
{
    private readonly ISchemaStore _store;

    /// <summary>Creates the registry over a backend's store.</summary>
    public SchemaRegistry(ISchemaStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
    }

    /// <summary>
    /// Registers a version of a type: the first version of a type may be any number, each later one is the latest plus
    /// one. Returns the registered version, and whether this call added it.
    /// </summary>
    /// <exception cref="InvalidSchemaException">The document is not valid JSON Schema.</exception>
    /// <exception cref="IncompatibleSchemaException">It breaks the mode; each breaking change is named.</exception>
    /// <exception cref="SchemaVersionChangedException">The version is registered with another document.</exception>
    /// <exception cref="SchemaVersionConflictException">The version skips, or lies below the type's first.</exception>
    public async Task<SchemaRegistration> RegisterAsync(string eventType, int version, JsonObject schema, CompatibilityMode mode, CancellationToken cancellationToken = default)
    {
        for (var attempt = 0; ; attempt++)
        {
            var existing = await _store.GetVersionsAsync(eventType, cancellationToken).ConfigureAwait(false);
            var outcome = SchemaRules.Evaluate(existing, eventType, version, schema, mode);
            if (outcome.Registered is { } same)
            {
                await RecordModeAsync(eventType, mode, cancellationToken).ConfigureAwait(false);
                return new SchemaRegistration(same, Added: false);
            }

            try
            {
                outcome.ThrowIfRefused();
            }
            catch (SchemaVersionConflictException) when (attempt < 3)
            {
                // The versions read may be stale: another process may have added the one this version follows since.
                continue;
            }

            var added = new RegisteredSchema(eventType, version, (JsonObject)schema.DeepClone()) { FirstOfType = existing.Count == 0 };
            try
            {
                await _store.AddVersionAsync(added, cancellationToken).ConfigureAwait(false);
            }
            catch (SchemaVersionConflictException) when (attempt < 3)
            {
                // Another process registered first: check again against what it wrote.
                continue;
            }

            await RecordModeAsync(eventType, mode, cancellationToken).ConfigureAwait(false);
            return new SchemaRegistration(added, Added: true);
        }
    }

    /// <summary>
    /// What registering a version would do, without doing it: the breaking changes it would be refused for (an empty
    /// report when it would be accepted or is already registered as it is).
    /// </summary>
    public async Task<SchemaCheckResult> CheckAsync(string eventType, int version, JsonObject schema, CompatibilityMode mode, CancellationToken cancellationToken = default)
    {
        var existing = await _store.GetVersionsAsync(eventType, cancellationToken).ConfigureAwait(false);
        return SchemaRules.Evaluate(existing, eventType, version, schema, mode);
    }

    /// <summary>Every version of a type, oldest first.</summary>
    public Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default) =>
        _store.GetVersionsAsync(eventType, cancellationToken);

    /// <summary>One version of a type, or null when it is not registered.</summary>
    public async Task<RegisteredSchema?> GetAsync(string eventType, int version, CancellationToken cancellationToken = default) =>
        (await _store.GetVersionsAsync(eventType, cancellationToken).ConfigureAwait(false)).FirstOrDefault(s => s.Version == version);

    /// <summary>The latest version of a type, or null when it has none.</summary>
    public async Task<RegisteredSchema?> GetLatestAsync(string eventType, CancellationToken cancellationToken = default) =>
        (await _store.GetVersionsAsync(eventType, cancellationToken).ConfigureAwait(false)) is { Count: > 0 } versions ? versions[^1] : null;

    /// <summary>Every type with a registered version.</summary>
    public Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default) =>
        _store.GetEventTypesAsync(cancellationToken);

    /// <summary>The compatibility mode recorded for a type, or null when none was.</summary>
    public Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default) =>
        _store.GetCompatibilityAsync(eventType, cancellationToken);

    /// <summary>The whole registry as a snapshot, to save in a repository for the pipeline check.</summary>
    public async Task<SchemaSnapshot> ExportAsync(CancellationToken cancellationToken = default)
    {
        var types = new List<SchemaSnapshot.TypeEntry>();
        foreach (var type in await _store.GetEventTypesAsync(cancellationToken).ConfigureAwait(false))
        {
            var versions = await _store.GetVersionsAsync(type, cancellationToken).ConfigureAwait(false);
            var mode = await _store.GetCompatibilityAsync(type, cancellationToken).ConfigureAwait(false);
            types.Add(new SchemaSnapshot.TypeEntry(type, mode ?? CompatibilityMode.Backward, versions));
        }

        return new SchemaSnapshot(types);
    }

    private async Task RecordModeAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken)
    {
        if (await _store.GetCompatibilityAsync(eventType, cancellationToken).ConfigureAwait(false) != mode)
        {
            await _store.SetCompatibilityAsync(eventType, mode, cancellationToken).ConfigureAwait(false);
        }
    }
}

/// <summary>A version registered, and whether the call that returned it added it (false: it was there already, the same).</summary>
public sealed record SchemaRegistration(RegisteredSchema Schema, bool Added);

/// <summary>
/// What registering a version would do: accepted as new (<see cref="IsNew"/>), already registered as it is
/// (<see cref="Registered"/>), or refused, with the reason.
/// </summary>
public sealed class SchemaCheckResult
{
    private readonly Func<Exception>? _refusal;

    internal SchemaCheckResult(string eventType, int version, RegisteredSchema? registered, CompatibilityReport? report, string? refusal, Func<Exception>? toException)
    {
        EventType = eventType;
        Version = version;
        Registered = registered;
        Report = report;
        Refusal = refusal;
        _refusal = toException;
    }

    /// <summary>The event type.</summary>
    public string EventType { get; }

    /// <summary>The version checked.</summary>
    public int Version { get; }

    /// <summary>The version as registered, when it is already, with the same document.</summary>
    public RegisteredSchema? Registered { get; }

    /// <summary>The compatibility report against the earlier versions, when the version is new.</summary>
    public CompatibilityReport? Report { get; }

    /// <summary>Why it would be refused, in words; null when it would not be.</summary>
    public string? Refusal { get; }

    /// <summary>Whether it would be added as a new version.</summary>
    public bool IsNew => Registered is null && Refusal is null;

    /// <summary>Whether it would be refused.</summary>
    public bool IsRefused => Refusal is not null;

    /// <summary>Throws the typed error of a refusal.</summary>
    public void ThrowIfRefused()
    {
        if (_refusal is not null)
        {
            throw _refusal();
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        Refusal ?? (Registered is not null
            ? string.Create(CultureInfo.InvariantCulture, $"'{EventType}' version {Version} is registered as it is.")
            : string.Create(CultureInfo.InvariantCulture, $"'{EventType}' version {Version} is new and compatible."));
}

/// <summary>The rules of registration, over the versions a type already has (from a store or a snapshot).</summary>
internal static class SchemaRules
{
    public static SchemaCheckResult Evaluate(IReadOnlyList<RegisteredSchema> existing, string eventType, int version, JsonObject schema, CompatibilityMode mode)
    {
        if (EventTypeNames.Validate(eventType) is { } fault)
        {
            throw new ArgumentException($"'{eventType}' is not a valid event type name: {fault}.", nameof(eventType));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(version, 1);
        ArgumentNullException.ThrowIfNull(schema);
        JsonSchemaDocuments.Check(eventType, version, schema);

        if (existing.FirstOrDefault(s => s.Version == version) is { } registered)
        {
            if (JsonSchemaDocuments.SameDocument(registered.Schema, schema))
            {
                return new SchemaCheckResult(eventType, version, registered, null, null, null);
            }

            var changes = Checked(eventType, [(version, registered.Schema), (version, schema)], () => SchemaCompatibility.Compare(registered.Schema, schema));
            var text = string.Create(CultureInfo.InvariantCulture,
                $"'{eventType}' version {version} is registered with another document; a registered version never changes, so register the new shape as version {existing[^1].Version + 1}. Changes: {Describe(changes)}");
            return new SchemaCheckResult(eventType, version, null, null, text, () => new SchemaVersionChangedException(eventType, version, changes, text));
        }

        if (existing.Count > 0 && version != existing[^1].Version + 1)
        {
            var latest = existing[^1].Version;
            var text = version < existing[0].Version
                ? string.Create(CultureInfo.InvariantCulture, $"'{eventType}' version {version} lies below the type's first registered version, {existing[0].Version}.")
                : string.Create(CultureInfo.InvariantCulture, $"'{eventType}' version {version} cannot be registered: the latest is {latest}, so the next must be {latest + 1}.");
            return new SchemaCheckResult(eventType, version, null, null, text, () => new SchemaVersionConflictException(eventType, version, latest));
        }

        var report = Checked(eventType, [.. existing.Select(s => (s.Version, s.Schema)), (version, schema)], () => SchemaCompatibility.Check([.. existing.Select(s => AsValidated(s.Schema))], AsValidated(schema), mode));
        if (!report.IsCompatible)
        {
            var text = string.Create(CultureInfo.InvariantCulture,
                $"'{eventType}' version {version} breaks the {mode} compatibility of the type:{Environment.NewLine}{Describe(report, existing)}");
            return new SchemaCheckResult(eventType, version, null, report, text, () => new IncompatibleSchemaException(eventType, version, mode, report, text));
        }

        return new SchemaCheckResult(eventType, version, null, report, null, null);
    }

    /// <summary>A report's breaking changes, one per line, each naming the registered version it breaks against.</summary>
    public static string Describe(CompatibilityReport report, IReadOnlyList<RegisteredSchema> earlier) =>
        string.Join(Environment.NewLine, report.BreakingChanges.Select(b => string.Create(CultureInfo.InvariantCulture,
            $"  {(b.Direction == CompatibilityDirection.Backward ? "backward" : "forward")} against version {earlier[b.AgainstVersion - 1].Version}: {b.Change}")));

    /// <summary>
    /// A registered document as the registry validates payloads with it: one that names no draft is 2020-12 here, where
    /// the comparer, used on its own, reads such a document as draft-07 (as Confluent's does).
    /// </summary>
    private static JsonObject AsValidated(JsonObject schema)
    {
        if (schema.ContainsKey("$schema"))
        {
            return schema;
        }

        var named = new JsonObject { ["$schema"] = JsonSchemaDocuments.Draft202012 };
        foreach (var (key, value) in schema)
        {
            named[key] = value?.DeepClone();
        }

        return named;
    }

    /// <summary>
    /// Runs the comparer over versions' documents (the earlier ones oldest first, the one checked last), with a stack
    /// deep enough for them; a document it cannot read is an invalid schema of its own version, named as such (a
    /// stored or snapshot version broken, not the class's new one).
    /// </summary>
    private static T Checked<T>(string eventType, IReadOnlyList<(int Version, JsonObject Document)> documents, Func<T> compare)
    {
        try
        {
            return JsonSchemaDocuments.WithStackFor(documents.Select(d => d.Document), compare);
        }
        catch (SchemaDocumentException ex)
        {
            const string Earlier = "earlier version ";
            var version = ex.Document == "original" ? documents[0].Version
                : ex.Document.StartsWith(Earlier, StringComparison.Ordinal) && int.TryParse(ex.Document.AsSpan(Earlier.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 && n < documents.Count ? documents[n - 1].Version
                : documents[^1].Version;
            throw new InvalidSchemaException(eventType, version, [new SchemaViolation(ex.Location, "schema", ex.Reason)]);
        }
    }

    /// <summary>
    /// Why stored events of a type's earlier versions could not be read as its current version, or null when they can:
    /// each step between registered versions needs an upcaster, or a next version that is backward compatible (the
    /// JSON then reads as it is).
    /// </summary>
    public static string? UnreadableVersions(string eventType, IReadOnlyList<RegisteredSchema> versions, int current, UpcasterChains chains)
    {
        for (var i = 0; i + 1 < versions.Count && versions[i + 1].Version <= current; i++)
        {
            var from = versions[i];
            if (chains.HasStep(eventType, from.Version))
            {
                continue;
            }

            var report = Checked(eventType, [(from.Version, from.Schema), (versions[i + 1].Version, versions[i + 1].Schema)], () => SchemaCompatibility.Check([AsValidated(from.Schema)], AsValidated(versions[i + 1].Schema), CompatibilityMode.Backward));
            if (!report.IsCompatible)
            {
                return string.Create(CultureInfo.InvariantCulture,
                    $"'{eventType}' events of version {from.Version} could not be read as version {from.Version + 1}: there is no upcaster from {from.Version} to {from.Version + 1}, and version {from.Version + 1} is not backward compatible with it:{Environment.NewLine}{Describe(report, [from])}");
            }
        }

        return null;
    }

    private static string Describe(IReadOnlyList<SchemaChange> changes) =>
        changes.Count == 0 ? "none that changes what it accepts (only annotations or order)" : string.Join("; ", changes);
}

/// <summary>A new version breaks its type's compatibility mode; nothing was registered.</summary>
public sealed class IncompatibleSchemaException(string eventType, int version, CompatibilityMode mode, CompatibilityReport report, string message)
    : CairnException(message)
{
    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version refused.</summary>
    public int Version { get; } = version;

    /// <summary>The mode it breaks.</summary>
    public CompatibilityMode Mode { get; } = mode;

    /// <summary>Each breaking change: the field, the old and new shape, and the rule.</summary>
    public CompatibilityReport Report { get; } = report;
}

/// <summary>A registered version was offered again with another document; a version never changes.</summary>
public sealed class SchemaVersionChangedException(string eventType, int version, IReadOnlyList<SchemaChange> changes, string message)
    : CairnException(message)
{
    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version.</summary>
    public int Version { get; } = version;

    /// <summary>How the offered document differs from the registered one.</summary>
    public IReadOnlyList<SchemaChange> Changes { get; } = changes;
}
