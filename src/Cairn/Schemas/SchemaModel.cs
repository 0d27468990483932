using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json.Nodes;
using Cairn.EventStore;

namespace Cairn.Schemas;

/// <summary>
/// Which earlier versions of an event type a new version must stay compatible with, with Confluent Schema Registry's
/// meanings. <c>Backward</c>: a reader using the new version can read what the previous version wrote. <c>Forward</c>:
/// a reader using the previous version can read what the new version writes. <c>Full</c>: both. The transitive modes
/// check against every earlier version instead of only the latest; <c>None</c> checks nothing.
/// </summary>
public enum CompatibilityMode
{
    /// <summary>A reader using the new version reads data written with the latest earlier version.</summary>
    Backward,

    /// <summary>A reader using the new version reads data written with every earlier version.</summary>
    BackwardTransitive,

    /// <summary>A reader using the latest earlier version reads data written with the new version.</summary>
    Forward,

    /// <summary>A reader using any earlier version reads data written with the new version.</summary>
    ForwardTransitive,

    /// <summary>Backward and forward against the latest earlier version.</summary>
    Full,

    /// <summary>Backward and forward against every earlier version.</summary>
    FullTransitive,

    /// <summary>No check: any new version is accepted.</summary>
    None,
}

/// <summary>
/// What happens to a payload that does not match its event type's schema when it is appended or sent. The schema is
/// that of the version its <c>dataschema</c> names, or the current version's when it has none or another producer's
/// (a URI not of Cairn's form): readers read such a payload as the current version, so it is checked as that.
/// </summary>
public enum SchemaValidationMode
{
    /// <summary>Payloads are not checked.</summary>
    Off,

    /// <summary>A payload that does not match is written, and the mismatch is logged and counted.</summary>
    Warn,

    /// <summary>
    /// A payload that does not match is refused with the JSON path and the rule it broke; nothing is written. One under
    /// another producer's <c>dataschema</c> is validated against the current version, which its readers read it as,
    /// not let through unchecked.
    /// </summary>
    Reject,
}

/// <summary>
/// One version of an event type's schema: the type's stable name, its version (from 1), and the JSON Schema document.
/// A registered version never changes.
/// </summary>
/// <param name="EventType">The stable event type name, such as <c>order.placed</c>.</param>
/// <param name="Version">The version, from 1.</param>
/// <param name="Schema">The JSON Schema document (draft-07 or 2020-12).</param>
public sealed record RegisteredSchema(string EventType, int Version, JsonObject Schema)
{
    /// <summary>
    /// Added as its type's first version, checked against no earlier one: a store refuses it
    /// (<see cref="SchemaVersionConflictException"/>) when the type has versions by then, so the registry checks it again
    /// against what another process registered meanwhile.
    /// </summary>
    public bool FirstOfType { get; init; }

    /// <summary>The URI that names this version in an envelope's <c>dataschema</c>.</summary>
    public string DataSchema => SchemaReference.Format(EventType, Version);
}

/// <summary>
/// The <c>dataschema</c> URI of an event type's version: <c>urn:cairn:schema:&lt;type&gt;:&lt;version&gt;</c>, such as
/// <c>urn:cairn:schema:order.placed:2</c>. An event written without one is read as version 1.
/// </summary>
public readonly record struct SchemaReference(string EventType, int Version)
{
    /// <summary>The URI prefix of every Cairn schema reference.</summary>
    public const string Prefix = "urn:cairn:schema:";

    /// <summary>
    /// Whether the URI is of Cairn's form. RFC 8141 makes <c>urn:</c> and the namespace (<c>cairn</c>) case-insensitive,
    /// and Cairn's own part (<c>schema:</c>) is too: <c>URN:cairn:schema:</c> is the same reference, not another producer's.
    /// </summary>
    private static bool HasPrefix([NotNullWhen(true)] string? dataSchema) =>
        dataSchema is not null && dataSchema.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase);

    /// <summary>The URI naming a type's version.</summary>
    public static string Format(string eventType, int version)
    {
        ArgumentException.ThrowIfNullOrEmpty(eventType);
        ArgumentOutOfRangeException.ThrowIfLessThan(version, 1);
        return string.Create(CultureInfo.InvariantCulture, $"{Prefix}{eventType}:{version}");
    }

    /// <summary>
    /// Reads a <c>dataschema</c> URI written by Cairn; false for one that is not (a URI set by another producer), or
    /// malformed.
    /// </summary>
    public static bool TryParse([NotNullWhen(true)] string? dataSchema, out SchemaReference reference)
    {
        reference = default;
        if (!HasPrefix(dataSchema))
        {
            return false;
        }

        var rest = dataSchema.AsSpan(Prefix.Length);
        var colon = rest.LastIndexOf(':');
        if (colon <= 0
            || !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var version)
            || version < 1)
        {
            return false;
        }

        var type = rest[..colon].ToString();
        if (EventTypeNames.Validate(type) is not null)
        {
            return false;
        }

        reference = new SchemaReference(type, version);
        return true;
    }

    /// <summary>
    /// Why a <c>dataschema</c> of Cairn's form (it starts with <see cref="Prefix"/>) names no type's version, such as
    /// <c>urn:cairn:schema:order.placed:0</c>; null for one that reads, or is not of Cairn's form (another producer's).
    /// </summary>
    internal static string? FaultOf(string? dataSchema)
    {
        if (!HasPrefix(dataSchema) || TryParse(dataSchema, out _))
        {
            return null;
        }

        var rest = dataSchema.AsSpan(Prefix.Length);
        var colon = rest.LastIndexOf(':');
        if (colon <= 0)
        {
            return $"it names no type and version ({Prefix}<type>:<version>)";
        }

        var type = rest[..colon].ToString();
        return EventTypeNames.Validate(type) is { } fault
            ? $"'{type}' is not a valid event type name: {fault}"
            : string.Create(CultureInfo.InvariantCulture, $"'{rest[(colon + 1)..]}' is no version: a version is a whole number from 1 to {int.MaxValue}");
    }

    /// <inheritdoc />
    public override string ToString() => Format(EventType, Version);
}
