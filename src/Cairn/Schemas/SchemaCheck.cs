using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Schemas;

/// <summary>
/// The check a build pipeline runs: the current version of every event type compiled into an application (its class,
/// or the document supplied for it) against the registry's versions, saved as a <see cref="SchemaSnapshot"/>. It
/// fails on a version whose shape changed, a new version that breaks its type's mode, a version that skips, and old
/// versions that could not be read any more (a missing upcaster where the shapes are not backward compatible).
/// </summary>
public static class SchemaCheck
{
    /// <summary>Checks every registered event type against a snapshot.</summary>
    public static SchemaCheckReport Run(EventTypeRegistry types, SchemaOptions options, JsonSerializerOptions json, SchemaSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(types);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(snapshot);
        var results = new List<SchemaCheckResult>();
        var problems = new List<string>();
        var skipped = new List<string>();
        var updated = snapshot;
        UpcasterChains chains;
        try
        {
            chains = UpcasterChains.Build(types, options.Upcasters);
        }
        catch (InvalidUpcasterException ex)
        {
            problems.Add(ex.Message);
            chains = UpcasterChains.Empty;
        }

        problems.AddRange(options.UnusedDocuments(types));
        problems.AddRange(options.UnusedCompatibilities(types));

        var checkedTypes = 0;
        foreach (var (name, clrType) in types.Registrations.Where(r => !EventTypeNames.IsCairnOwn(r.Key)).OrderBy(r => r.Key, StringComparer.Ordinal))
        {
            checkedTypes++;
            var version = types.GetVersion(name);
            var mode = options.CompatibilityOf(name);
            SchemaCheckResult result;
            try
            {
                var schema = CurrentSchema(name, version, clrType, options, json);
                result = SchemaRules.Evaluate(snapshot.VersionsOf(name), name, version, schema, mode);
                if (result.IsNew)
                {
                    updated = updated.With(new RegisteredSchema(name, version, schema), mode);
                }
                else if (!result.IsRefused)
                {
                    // A host's start records the type's mode even when no version is new: so does the snapshot.
                    updated = updated.WithMode(name, mode);
                }
            }
            catch (InvalidSchemaException ex)
            {
                problems.Add(ex.Message);
                continue;
            }
            catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException)
            {
                // As when a host starts: a class System.Text.Json cannot describe goes unchecked, and says so.
                skipped.Add(string.Create(CultureInfo.InvariantCulture, $"'{name}' v{version} ({clrType.FullName}): no schema can be generated ({ex.Message}); supply one with Schemas.Document(...)"));
                continue;
            }

            results.Add(result);
            if (result.IsRefused)
            {
                problems.Add(result.Refusal!);
            }
        }

        foreach (var entry in updated.Types)
        {
            if (types.TryGetType(entry.EventType, out _)
                && SchemaRules.UnreadableVersions(entry.EventType, entry.Versions, types.GetVersion(entry.EventType), chains) is { } unreadable)
            {
                problems.Add(unreadable);
            }
        }

        return new SchemaCheckReport(results, problems, updated, skipped, checkedTypes);
    }

    /// <summary>
    /// Checks every registered event type against a live registry, as the host's start would, and writes nothing: the
    /// registry's versions of each of these types are read, then checked by the same rules as
    /// <see cref="Run(EventTypeRegistry, SchemaOptions, JsonSerializerOptions, SchemaSnapshot)"/>. The report's
    /// <see cref="SchemaCheckReport.Updated"/> holds those types as the registry would after the start.
    /// </summary>
    public static async Task<SchemaCheckReport> RunAsync(EventTypeRegistry types, SchemaOptions options, JsonSerializerOptions json, SchemaRegistry registry, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(types);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(registry);
        var entries = new List<SchemaSnapshot.TypeEntry>();
        foreach (var name in types.Registrations.Keys.Order(StringComparer.Ordinal))
        {
            var versions = await registry.GetVersionsAsync(name, cancellationToken).ConfigureAwait(false);
            if (versions.Count > 0)
            {
                var mode = await registry.GetCompatibilityAsync(name, cancellationToken).ConfigureAwait(false) ?? options.CompatibilityOf(name);
                entries.Add(new SchemaSnapshot.TypeEntry(name, mode, versions));
            }
        }

        return Run(types, options, json, new SchemaSnapshot(entries));
    }

    /// <summary>The schema of a type's current version: the document supplied for it, or the one generated from its class.</summary>
    public static JsonObject CurrentSchema(string eventType, int version, Type clrType, SchemaOptions options, JsonSerializerOptions json)
    {
        ArgumentNullException.ThrowIfNull(options);
        var schema = options.DocumentOf(eventType, version) ?? JsonSchemaDocuments.Generate(clrType, json);
        JsonSchemaDocuments.Check(eventType, version, schema);
        return schema;
    }
}

/// <summary>The outcome of a <see cref="SchemaCheck"/>: each type's result, every problem, and the snapshot with the new versions added.</summary>
public sealed class SchemaCheckReport(IReadOnlyList<SchemaCheckResult> results, IReadOnlyList<string> problems, SchemaSnapshot updated, IReadOnlyList<string>? skipped = null, int? eventTypes = null)
{
    /// <summary>
    /// How many of the application's event types were checked: those with a <see cref="Results"/> entry, and those whose
    /// schema could not be checked (a problem, or skipped).
    /// </summary>
    public int EventTypes { get; } = eventTypes ?? results.Count;

    /// <summary>The types left unchecked because no schema can be generated for their class, each with the reason.</summary>
    public IReadOnlyList<string> Skipped { get; } = skipped ?? [];

    /// <summary>Each type's result, in ordinal order of name.</summary>
    public IReadOnlyList<SchemaCheckResult> Results { get; } = results;

    /// <summary>Every problem, in words; empty when the check passes.</summary>
    public IReadOnlyList<string> Problems { get; } = problems;

    /// <summary>The snapshot with the new, accepted versions added: what to save when the check passes.</summary>
    public SchemaSnapshot Updated { get; } = updated;

    /// <summary>Whether nothing breaks.</summary>
    public bool Passed => Problems.Count == 0;

    /// <summary>A report for a person: a line per type, then the problems.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        foreach (var result in Results)
        {
            var status = result.IsRefused ? "BREAKS" : result.IsNew ? "new" : "unchanged";
            text.Append(CultureInfo.InvariantCulture, $"{status,-9} {result.EventType} v{result.Version}").AppendLine();
        }

        foreach (var line in Skipped)
        {
            text.Append("skipped   ").AppendLine(line);
        }

        if (Problems.Count > 0)
        {
            text.AppendLine().Append(CultureInfo.InvariantCulture, $"{Problems.Count} problem(s):").AppendLine();
            foreach (var problem in Problems)
            {
                text.Append("- ").AppendLine(problem.ReplaceLineEndings(Environment.NewLine + "  "));
            }
        }
        else
        {
            text.AppendLine().AppendLine("The event types are compatible with the registry.");
        }

        return text.ToString();
    }
}
