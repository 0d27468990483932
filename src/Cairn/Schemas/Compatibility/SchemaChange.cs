using System.Globalization;

namespace Cairn.Schemas;

/// <summary>
/// One difference between two JSON Schema documents, classified as Confluent Schema Registry classifies it.
/// </summary>
/// <param name="Path">
/// Where it is: a JSON Pointer into the original document's keywords, such as <c>/properties/address/properties/zip</c>
/// or <c>/properties/tags/items</c>; <c>/</c> is the root. A <c>$ref</c> is followed, so a change inside a definition is
/// named at the place that refers to it. A <c>required</c> change is named <c>/required/&lt;property&gt;</c>, a combination's
/// branch by its index in the original (<c>/oneOf/1</c>).
/// </param>
/// <param name="Kind">The kind of difference.</param>
/// <param name="Original">The original's shape there, in short (<c>string</c>, <c>maxLength 10</c>, <c>absent</c>).</param>
/// <param name="Update">The update's shape there, in short.</param>
/// <param name="IsCompatible">
/// Whether a reader using the update can still read every document valid under the original (Confluent's strict rules).
/// </param>
/// <param name="Rule">The rule, in words, that makes it compatible or breaking.</param>
public sealed record SchemaChange(string Path, SchemaChangeKind Kind, string Original, string Update, bool IsCompatible, string Rule)
{
    /// <summary>One line: the kind, the path, the two shapes, the verdict and the rule.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Kind} at {Path}: {Original} -> {Update} ({(IsCompatible ? "compatible" : "breaking")}: {Rule})");
}
