using System.Globalization;
using System.Text;

namespace Cairn.Schemas;

/// <summary>Which way a check reads: who writes and who reads.</summary>
public enum CompatibilityDirection
{
    /// <summary>The candidate reads what the earlier version wrote (consumers upgrade first).</summary>
    Backward,

    /// <summary>The earlier version reads what the candidate writes (producers upgrade first).</summary>
    Forward,
}

/// <summary>A change that breaks the mode, with the earlier version it breaks against and the direction.</summary>
/// <param name="AgainstVersion">
/// The earlier version it breaks against: its 1-based position in the earlier versions given to
/// <see cref="SchemaCompatibility.Check"/> (its version number when every version from 1 was given).
/// </param>
/// <param name="Direction">
/// <see cref="CompatibilityDirection.Backward"/>: the change is from the earlier version (writer) to the candidate
/// (reader); <see cref="CompatibilityDirection.Forward"/>: from the candidate (writer) to the earlier version (reader).
/// </param>
/// <param name="Change">The change, as <see cref="SchemaCompatibility.Compare"/> gives it for that direction.</param>
public sealed record BreakingChange(int AgainstVersion, CompatibilityDirection Direction, SchemaChange Change)
{
    /// <summary>
    /// One line, such as <c>backward against version 2: TypeChanged at /properties/amount (version 2 writes string;
    /// the candidate reads number): the reader expects another type than the writer wrote</c>.
    /// </summary>
    public override string ToString()
    {
        var earlier = string.Create(CultureInfo.InvariantCulture, $"version {AgainstVersion}");
        var (writer, reader) = Direction == CompatibilityDirection.Backward ? (earlier, "the candidate") : ("the candidate", earlier);
        return string.Create(CultureInfo.InvariantCulture,
            $"{(Direction == CompatibilityDirection.Backward ? "backward" : "forward")} against {earlier}: {Change.Kind} at {Change.Path} ({writer} writes {Change.Original}; {reader} reads {Change.Update}): {Change.Rule}");
    }
}

/// <summary>
/// The outcome of checking a candidate schema against a type's earlier versions under a <see cref="CompatibilityMode"/>.
/// </summary>
public sealed class CompatibilityReport
{
    internal CompatibilityReport(CompatibilityMode mode, IReadOnlyList<int> checkedVersions, IReadOnlyList<BreakingChange> breakingChanges)
    {
        Mode = mode;
        CheckedVersions = checkedVersions;
        BreakingChanges = breakingChanges;
    }

    /// <summary>The mode applied.</summary>
    public CompatibilityMode Mode { get; }

    /// <summary>The earlier versions compared with (1-based positions, newest first); empty under <see cref="CompatibilityMode.None"/>.</summary>
    public IReadOnlyList<int> CheckedVersions { get; }

    /// <summary>Every change that breaks the mode, newest earlier version first, backward before forward.</summary>
    public IReadOnlyList<BreakingChange> BreakingChanges { get; }

    /// <summary>Whether the candidate keeps the mode: no breaking change.</summary>
    public bool IsCompatible => BreakingChanges.Count == 0;

    /// <summary>One line per breaking change; a single line saying so when there is none.</summary>
    public override string ToString()
    {
        if (IsCompatible)
        {
            return CheckedVersions.Count == 0
                ? string.Create(CultureInfo.InvariantCulture, $"compatible under {Mode}: no earlier version to check against")
                : string.Create(CultureInfo.InvariantCulture, $"compatible under {Mode} with version(s) {string.Join(", ", CheckedVersions)}");
        }

        var text = new StringBuilder();
        foreach (var change in BreakingChanges)
        {
            if (text.Length > 0)
            {
                text.Append('\n');
            }

            text.Append(change);
        }

        return text.ToString();
    }
}
