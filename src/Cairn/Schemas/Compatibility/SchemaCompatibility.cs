using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Cairn.Schemas;

/// <summary>
/// Compares JSON Schema documents and checks a new version of an event type against its earlier versions, with
/// Confluent Schema Registry's compatibility modes and its JSON Schema rules (draft-07 and earlier, 2019-09, 2020-12,
/// told apart by <c>$schema</c>). Pure: no I/O, no state.
/// </summary>
public static class SchemaCompatibility
{
    /// <summary>
    /// Every difference from <paramref name="original"/> to <paramref name="update"/>, each classified and marked
    /// compatible when a reader using <paramref name="update"/> can read every document valid under
    /// <paramref name="original"/>. Annotation changes (title, description, default, $id) are listed as compatible.
    /// </summary>
    /// <exception cref="SchemaDocumentException">A document cannot be read as JSON Schema; the error names the place.</exception>
    public static IReadOnlyList<SchemaChange> Compare(JsonObject original, JsonObject update)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(update);
        return Changes(
            SchemaLoader.Load(original, "original", nameof(original)),
            SchemaLoader.Load(update, "update", nameof(update)),
            "original", "update", nameof(original));
    }

    /// <summary>
    /// Checks <paramref name="candidate"/> against the earlier versions under <paramref name="mode"/>:
    /// <see cref="CompatibilityMode.Backward"/> compares the latest earlier version (writer) with the candidate
    /// (reader); <see cref="CompatibilityMode.Forward"/> the candidate (writer) with the latest (reader);
    /// <see cref="CompatibilityMode.Full"/> both; the transitive modes do the same against every earlier version;
    /// <see cref="CompatibilityMode.None"/> checks nothing. With no earlier version, every candidate is compatible.
    /// </summary>
    /// <param name="earlierVersionsOldestFirst">The type's registered schemas, oldest first; the last is the latest.</param>
    /// <param name="candidate">The schema of the version to register.</param>
    /// <param name="mode">The type's compatibility mode.</param>
    /// <exception cref="SchemaDocumentException">A document cannot be read as JSON Schema; the error names which and where.</exception>
    public static CompatibilityReport Check(IReadOnlyList<JsonObject> earlierVersionsOldestFirst, JsonObject candidate, CompatibilityMode mode)
    {
        ArgumentNullException.ThrowIfNull(earlierVersionsOldestFirst);
        ArgumentNullException.ThrowIfNull(candidate);
        var (backward, forward, transitive) = mode switch
        {
            CompatibilityMode.Backward => (true, false, false),
            CompatibilityMode.BackwardTransitive => (true, false, true),
            CompatibilityMode.Forward => (false, true, false),
            CompatibilityMode.ForwardTransitive => (false, true, true),
            CompatibilityMode.Full => (true, true, false),
            CompatibilityMode.FullTransitive => (true, true, true),
            CompatibilityMode.None => (false, false, false),
            _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "The compatibility mode is not one of CompatibilityMode's members."),
        };

        for (var i = 0; i < earlierVersionsOldestFirst.Count; i++)
        {
            if (earlierVersionsOldestFirst[i] is null)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Earlier version {i + 1} is null."), nameof(earlierVersionsOldestFirst));
            }
        }

        var loadedCandidate = SchemaLoader.Load(candidate, "candidate", nameof(candidate));
        var checkedVersions = new List<int>();
        var breaking = new List<BreakingChange>();
        if (backward || forward)
        {
            var oldest = transitive ? 0 : Math.Max(0, earlierVersionsOldestFirst.Count - 1);
            for (var i = earlierVersionsOldestFirst.Count - 1; i >= oldest; i--)
            {
                var version = i + 1;
                var name = string.Create(CultureInfo.InvariantCulture, $"earlier version {version}");
                var earlier = SchemaLoader.Load(earlierVersionsOldestFirst[i], name, nameof(earlierVersionsOldestFirst));
                checkedVersions.Add(version);
                if (backward)
                {
                    Collect(breaking, version, CompatibilityDirection.Backward,
                        Changes(earlier, loadedCandidate, name, "candidate", nameof(earlierVersionsOldestFirst)));
                }

                if (forward)
                {
                    Collect(breaking, version, CompatibilityDirection.Forward,
                        Changes(loadedCandidate, earlier, "candidate", name, nameof(candidate)));
                }
            }
        }

        return new CompatibilityReport(mode, checkedVersions, breaking);
    }

    private static void Collect(List<BreakingChange> breaking, int version, CompatibilityDirection direction, IReadOnlyList<SchemaChange> changes)
    {
        foreach (var change in changes)
        {
            if (!change.IsCompatible)
            {
                breaking.Add(new BreakingChange(version, direction, change));
            }
        }
    }

    private static List<SchemaChange> Changes(LoadedSchema original, LoadedSchema update, string originalName, string updateName, string paramName)
    {
        List<Difference> differences;
        try
        {
            differences = SchemaComparer.Compare(original, update);
        }
        catch (InsufficientExecutionStackException)
        {
            throw new SchemaDocumentException($"{originalName} and {updateName}", "/", "the schemas nest too deeply to be compared", paramName);
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new SchemaDocumentException($"{originalName} and {updateName}", "/", string.Create(CultureInfo.InvariantCulture, $"the patternProperties expression '{e.Pattern}' did not match the property name '{e.Input}' within {e.MatchTimeout.TotalSeconds:0.#} s"), paramName);
        }

        return differences.ConvertAll(d => new SchemaChange(
            SchemaPaths.Display(d.Path), d.Kind, d.Original, d.Update, d.IsCompatible, SchemaChangeRules.Rule(d.Kind)));
    }
}
