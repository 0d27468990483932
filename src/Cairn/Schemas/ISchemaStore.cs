using Cairn.EventStore;

namespace Cairn.Schemas;

/// <summary>
/// Where a backend keeps the schema registry: each event type's versions, immutable once added, and its compatibility
/// mode. The store only keeps; the checks (well-formed JSON Schema, compatibility) are the schema registry's.
/// Versions of a type are contiguous: the first may be any number, each later one is the latest plus one.
/// </summary>
public interface ISchemaStore
{
    /// <summary>Every version of a type, oldest first; empty when the type has none.</summary>
    Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default);

    /// <summary>Every type that has at least one version, in ordinal order of name.</summary>
    Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Adds a version. It must be the latest plus one, or any version from 1 when the type has none; otherwise
    /// <see cref="SchemaVersionConflictException"/> (another process registered first, or the number skips). One
    /// <see cref="RegisteredSchema.FirstOfType"/> is refused the same way when the type has any version.
    /// </summary>
    Task AddVersionAsync(RegisteredSchema schema, CancellationToken cancellationToken = default);

    /// <summary>The compatibility mode recorded for a type, or null when none was.</summary>
    Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default);

    /// <summary>Records a type's compatibility mode (replacing the one recorded before).</summary>
    Task SetCompatibilityAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken = default);
}

/// <summary>A version could not be added: it is not the latest plus one (another writer came first, or it skips).</summary>
public sealed class SchemaVersionConflictException(string eventType, int version, int? latest)
    : CairnException(latest is { } l
        ? version == l + 1
            ? $"Version {version} of the event type '{eventType}' was to be its first version, but version {l} was registered meanwhile; it must be checked against that one first."
            : $"Version {version} of the event type '{eventType}' cannot be added: the latest registered is {l}, so the next must be {l + 1}."
        : $"Version {version} of the event type '{eventType}' cannot be added.")
{
    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version that was refused.</summary>
    public int Version { get; } = version;

    /// <summary>The latest version registered when it was refused, or null when none was.</summary>
    public int? Latest { get; } = latest;
}
