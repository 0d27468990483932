using Cairn.Schemas;
using static Cairn.Tests.Schemas.Compatibility.SchemaCompatibilityTests;

namespace Cairn.Tests.Schemas.Compatibility;

/// <summary>
/// Three-version histories where checking only the latest version and checking every version disagree, because
/// Confluent's rules are not transitive: each step is compatible, the sum is not.
/// </summary>
public sealed class TransitiveCompatibilityTests
{
    private static string Note(string schema) => $$$"""{"type": "object", "properties": {"note": {{{schema}}}}}""";

    // allOf[string, maxLength] -> string drops a branch (compatible); string -> oneOf[string, integer] is a sum
    // extended (compatible); but allOf -> oneOf of two branches changes the combination (breaking).
    private static readonly string Product = Note("""{"allOf": [{"type": "string"}, {"maxLength": 3}]}""");
    private static readonly string Plain = Note("""{"type": "string"}""");
    private static readonly string Sum = Note("""{"oneOf": [{"type": "string"}, {"type": "integer"}]}""");

    [Fact]
    public void backward_checks_the_latest_version_only_and_backward_transitive_every_one()
    {
        var history = new[] { J(Product), J(Plain) };

        var latest = SchemaCompatibility.Check(history, J(Sum), CompatibilityMode.Backward);
        var every = SchemaCompatibility.Check(history, J(Sum), CompatibilityMode.BackwardTransitive);

        Assert.True(latest.IsCompatible);
        Assert.Equal([2], latest.CheckedVersions);
        Assert.False(every.IsCompatible);
        Assert.Equal([2, 1], every.CheckedVersions);
        var breaking = Assert.Single(every.BreakingChanges);
        Assert.Equal((1, CompatibilityDirection.Backward, SchemaChangeKind.CombinedTypeChanged, "/properties/note"),
            (breaking.AgainstVersion, breaking.Direction, breaking.Change.Kind, breaking.Change.Path));
        Assert.Equal(
            "backward against version 1: CombinedTypeChanged at /properties/note (version 1 writes allOf [string, string (maxLength 3)]; the candidate reads oneOf [string, integer]): the reader combines its branches more strictly than the writer (such as anyOf to oneOf or allOf)",
            every.ToString());
    }

    [Fact]
    public void forward_checks_the_latest_version_only_and_forward_transitive_every_one()
    {
        // The same steps in reverse: each earlier version reads what the next writes.
        var history = new[] { J(Sum), J(Plain) };

        var latest = SchemaCompatibility.Check(history, J(Product), CompatibilityMode.Forward);
        var every = SchemaCompatibility.Check(history, J(Product), CompatibilityMode.ForwardTransitive);

        Assert.True(latest.IsCompatible);
        Assert.False(every.IsCompatible);
        var breaking = Assert.Single(every.BreakingChanges);
        Assert.Equal((1, CompatibilityDirection.Forward, SchemaChangeKind.CombinedTypeChanged, "/properties/note"),
            (breaking.AgainstVersion, breaking.Direction, breaking.Change.Kind, breaking.Change.Path));
        Assert.StartsWith("forward against version 1: CombinedTypeChanged at /properties/note (the candidate writes allOf", every.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void full_checks_the_latest_version_only_and_full_transitive_every_one()
    {
        // Version 2 dropped a property from a closed model while the type was under Forward; version 3 only retitles
        // it. Full holds against version 2; against version 1 the dropped property breaks backward.
        var v1 = J("""{"type": "object", "properties": {"id": {"type": "string"}, "email": {"type": "string"}}, "additionalProperties": false}""");
        var v2 = J("""{"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": false}""");
        var v3 = J("""{"title": "Customer", "type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": false}""");

        Assert.True(SchemaCompatibility.Check([v1], v2, CompatibilityMode.Forward).IsCompatible);
        Assert.True(SchemaCompatibility.Check([v1, v2], v3, CompatibilityMode.Full).IsCompatible);

        var every = SchemaCompatibility.Check([v1, v2], v3, CompatibilityMode.FullTransitive);
        Assert.Equal([2, 1], every.CheckedVersions);
        var breaking = Assert.Single(every.BreakingChanges);
        Assert.Equal((1, CompatibilityDirection.Backward, SchemaChangeKind.PropertyRemovedFromClosedContentModel, "/properties/email"),
            (breaking.AgainstVersion, breaking.Direction, breaking.Change.Kind, breaking.Change.Path));
    }

    [Fact]
    public void transitive_reports_list_the_newest_version_first_then_backward_before_forward()
    {
        var v1 = J("""{"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false}""");
        var v2 = J("""{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "additionalProperties": false}""");
        var v3 = J("""{"type": "object", "properties": {"a": {"type": "number"}}, "additionalProperties": false}""");

        var report = SchemaCompatibility.Check([v1, v2], v3, CompatibilityMode.FullTransitive);

        Assert.Equal(
            [
                "2 Backward PropertyRemovedFromClosedContentModel /properties/b",
                "2 Forward TypeNarrowed /properties/a",
                "1 Forward TypeNarrowed /properties/a",
            ],
            report.BreakingChanges.Select(b => $"{b.AgainstVersion} {b.Direction} {b.Change.Kind} {b.Change.Path}"));
    }
}
