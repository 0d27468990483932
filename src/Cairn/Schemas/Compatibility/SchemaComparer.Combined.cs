using System.Globalization;

namespace Cairn.Schemas;

internal sealed partial class SchemaComparer
{
    private void CompareCombined(Context ctx, SchemaNode originalNode, SchemaNode updateNode)
    {
        var original = originalNode.Combined!;
        var update = updateNode.Combined!;
        var criteria = CompareCriteria(original, update);
        if (criteria is { } change)
        {
            ctx.Add(change, Shape.Of(originalNode), Shape.Of(updateNode));
            if (change == SchemaChangeKind.CombinedTypeChanged)
            {
                return;
            }
        }

        var before = original.Subschemas;
        var after = update.Subschemas;
        if (before.Count < after.Count)
        {
            ctx.Add(update.Criterion == Criterion.AllOf ? SchemaChangeKind.ProductTypeExtended : SchemaChangeKind.SumTypeExtended,
                Shape.Of(originalNode), Shape.Of(updateNode));
        }
        else if (before.Count > after.Count)
        {
            ctx.Add(update.Criterion == Criterion.AllOf ? SchemaChangeKind.ProductTypeNarrowed : SchemaChangeKind.SumTypeNarrowed,
                Shape.Of(originalNode), Shape.Of(updateNode));
        }

        // An edge pairs an original branch with an update branch that reads it; the branches must pair up one to one.
        var edges = new List<Difference>?[before.Count, after.Count];
        for (var i = 0; i < before.Count; i++)
        {
            using var scope = original.Synthetic ? default : ctx.Enter(original.Keyword, original.Indices[i].ToString(CultureInfo.InvariantCulture));
            for (var j = 0; j < after.Count; j++)
            {
                var sub = ctx.Sub();
                Compare(sub, before[i], after[j]);
                if (sub.IsCompatible)
                {
                    edges[i, j] = sub.Differences;
                }
            }
        }

        var matched = Matching.Maximum(before.Count, after.Count, (i, j) => edges[i, j] is not null);
        for (var i = 0; i < matched.Length; i++)
        {
            if (matched[i] >= 0)
            {
                ctx.AddRange(edges[i, matched[i]]!);
            }
        }

        if (matched.Count(j => j >= 0) < Math.Min(before.Count, after.Count))
        {
            ctx.Add(SchemaChangeKind.CombinedTypeSubschemasChanged, Shape.Of(originalNode), Shape.Of(updateNode));
        }
    }

    private static SchemaChangeKind? CompareCriteria(CombinedFacet original, CombinedFacet update)
    {
        if (original.Criterion == update.Criterion)
        {
            return null;
        }

        return update.Criterion switch
        {
            Criterion.AnyOf => SchemaChangeKind.CombinedTypeExtended,
            Criterion.OneOf when original.Subschemas.Count == 1 => SchemaChangeKind.CombinedTypeExtended,
            Criterion.AllOf when original.Subschemas.Count == 1 && update.Subschemas.Count == 1 => SchemaChangeKind.CombinedTypeExtended,
            _ => SchemaChangeKind.CombinedTypeChanged,
        };
    }
}

/// <summary>Maximum bipartite matching by augmenting paths (the branch counts of a combination are small).</summary>
internal static class Matching
{
    /// <summary>For each left vertex, its matched right vertex, or -1.</summary>
    public static int[] Maximum(int left, int right, Func<int, int, bool> edge)
    {
        var leftMatch = Enumerable.Repeat(-1, left).ToArray();
        var rightMatch = Enumerable.Repeat(-1, right).ToArray();
        for (var i = 0; i < left; i++)
        {
            Augment(i, new bool[right]);
        }

        return leftMatch;

        bool Augment(int i, bool[] seen)
        {
            for (var j = 0; j < right; j++)
            {
                if (!edge(i, j) || seen[j])
                {
                    continue;
                }

                seen[j] = true;
                if (rightMatch[j] < 0 || Augment(rightMatch[j], seen))
                {
                    leftMatch[i] = j;
                    rightMatch[j] = i;
                    return true;
                }
            }

            return false;
        }
    }
}
