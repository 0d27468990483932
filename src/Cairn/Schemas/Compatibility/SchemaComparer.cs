using System.Runtime.CompilerServices;

namespace Cairn.Schemas;

/// <summary>
/// A difference found, with its path relative to the pair of schemas being compared. An echo is what a recursive schema
/// repeats where it re-enters a pair still being compared: it counts for the decisions above it, but the pair's own
/// comparison already reports it, so it is left out of the result.
/// </summary>
internal readonly record struct Difference(string Path, SchemaChangeKind Kind, string Original, string Update, bool Echo = false)
{
    public bool IsCompatible => SchemaChangeRules.IsCompatible(Kind);
}

/// <summary>
/// Compares two loaded schemas with Confluent's rules. Each pair of nodes is compared once and remembered; a pair met
/// again while it is still being compared (a recursive schema) is taken as compatible, and the whole comparison is run
/// again with the pairs found incompatible that way known, until nothing more is found (a greatest fixed point), so a
/// breaking change deep in a recursion is not hidden by the assumption.
/// </summary>
internal sealed partial class SchemaComparer
{
    private readonly SchemaDraft _naming;
    private readonly Dictionary<(SchemaNode, SchemaNode), List<Difference>> _memo = [];
    private readonly HashSet<(SchemaNode, SchemaNode)> _inProgress = [];
    private readonly HashSet<(SchemaNode, SchemaNode)> _assumed = [];
    private readonly Dictionary<(SchemaNode, SchemaNode), List<Difference>> _knownIncompatible;

    private SchemaComparer(SchemaDraft naming, Dictionary<(SchemaNode, SchemaNode), List<Difference>> knownIncompatible)
    {
        _naming = naming;
        _knownIncompatible = knownIncompatible;
    }

    /// <summary>Every difference from <paramref name="original"/> to <paramref name="update"/>, paths from the root.</summary>
    public static List<Difference> Compare(LoadedSchema original, LoadedSchema update)
    {
        var known = new Dictionary<(SchemaNode, SchemaNode), List<Difference>>();
        while (true)
        {
            var comparer = new SchemaComparer(original.Draft, known);
            var differences = comparer.Pair(original.Root, update.Root);
            var learned = false;
            foreach (var pair in comparer._assumed)
            {
                if (!known.ContainsKey(pair) && comparer._memo.TryGetValue(pair, out var found) && !found.TrueForAll(d => d.IsCompatible))
                {
                    known[pair] = found;
                    learned = true;
                }
            }

            if (!learned)
            {
                return differences.FindAll(d => !d.Echo);
            }
        }
    }

    /// <summary>Compares two optional subschemas at the context's path.</summary>
    private void Compare(Context ctx, SchemaNode? original, SchemaNode? update)
    {
        if (original is null && update is null)
        {
            return;
        }

        if (original is null)
        {
            ctx.Add(SchemaChangeKind.SchemaAdded, "absent", Shape.Of(update!));
            return;
        }

        if (update is null)
        {
            ctx.Add(SchemaChangeKind.SchemaRemoved, Shape.Of(original), "absent");
            return;
        }

        ctx.AddRebased(Pair(original, update));
    }

    private List<Difference> Pair(SchemaNode original, SchemaNode update)
    {
        var key = (original, update);
        if (_memo.TryGetValue(key, out var known))
        {
            return known;
        }

        if (_inProgress.Contains(key))
        {
            _assumed.Add(key);
            return _knownIncompatible.TryGetValue(key, out var incompatible) ? incompatible.ConvertAll(d => d with { Echo = true }) : [];
        }

        RuntimeHelpers.EnsureSufficientExecutionStack();
        _inProgress.Add(key);
        var ctx = new Context("");
        CompareBody(ctx, original, update);
        _inProgress.Remove(key);
        _memo[key] = ctx.Differences;
        return ctx.Differences;
    }

    private void CompareBody(Context ctx, SchemaNode original, SchemaNode update)
    {
        if (!original.IsCombined && update.IsCombined)
        {
            var branches = update.Combined!.Subschemas;
            if (branches.Count == 1)
            {
                if (TryAdopt(ctx, original, branches[0]))
                {
                    return;
                }
            }
            else if (update.Combined.Criterion is Criterion.AnyOf or Criterion.OneOf)
            {
                foreach (var branch in branches)
                {
                    if (TryAdopt(ctx, original, branch))
                    {
                        ctx.Add(SchemaChangeKind.SumTypeExtended, Shape.Of(original), Shape.Of(update));
                        return;
                    }
                }
            }
        }
        else if (original.IsCombined && !update.IsCombined)
        {
            var branches = original.Combined!.Subschemas;
            if (branches.Count == 1 && TryAdopt(ctx, branches[0], update))
            {
                return;
            }

            if (original.Combined.Criterion == Criterion.AllOf)
            {
                foreach (var branch in branches)
                {
                    if (TryAdopt(ctx, branch, update))
                    {
                        ctx.Add(SchemaChangeKind.ProductTypeNarrowed, Shape.Of(original), Shape.Of(update));
                        return;
                    }
                }
            }
        }

        if (original.Kind != update.Kind)
        {
            // A schema that accepted nothing, or one that now accepts anything, reads every value written.
            if (original.Kind != NodeKind.False && update.Kind != NodeKind.Empty)
            {
                ctx.Add(SchemaChangeKind.TypeChanged, Shape.Of(original), Shape.Of(update));
            }

            return;
        }

        CompareAnnotations(ctx, original, update);
        switch (original.Kind)
        {
            case NodeKind.String:
                CompareString(ctx, original.String!, update.String!);
                break;
            case NodeKind.Number:
                CompareNumber(ctx, original.Number!, update.Number!);
                break;
            case NodeKind.Enum:
                CompareEnum(ctx, original, update);
                break;
            case NodeKind.Const:
                if (!System.Text.Json.Nodes.JsonNode.DeepEquals(original.ConstValue, update.ConstValue))
                {
                    ctx.Add("const", SchemaChangeKind.EnumArrayChanged, Shape.Of(original), Shape.Of(update));
                }

                break;
            case NodeKind.Combined:
                CompareCombined(ctx, original, update);
                break;
            case NodeKind.Not:
                CompareNot(ctx, original, update);
                break;
            case NodeKind.Object:
                CompareObject(ctx, original.Object!, update.Object!);
                break;
            case NodeKind.Array:
                CompareArray(ctx, original.Array!, update.Array!);
                break;
        }
    }

    /// <summary>Compares in a side context and keeps its differences only when they are all compatible.</summary>
    private bool TryAdopt(Context ctx, SchemaNode original, SchemaNode update)
    {
        var sub = ctx.Sub();
        Compare(sub, original, update);
        if (!sub.IsCompatible)
        {
            return false;
        }

        ctx.AddRange(sub.Differences);
        return true;
    }

    private static void CompareAnnotations(Context ctx, SchemaNode original, SchemaNode update)
    {
        if (!string.Equals(original.Id, update.Id, StringComparison.Ordinal))
        {
            ctx.Add(SchemaChangeKind.IdChanged, Shape.Text(original.Id), Shape.Text(update.Id));
        }

        if (!string.Equals(original.Title, update.Title, StringComparison.Ordinal))
        {
            ctx.Add(SchemaChangeKind.TitleChanged, Shape.Text(original.Title), Shape.Text(update.Title));
        }

        if (!string.Equals(original.Description, update.Description, StringComparison.Ordinal))
        {
            ctx.Add(SchemaChangeKind.DescriptionChanged, Shape.Text(original.Description), Shape.Text(update.Description));
        }

        if (original.HasDefault != update.HasDefault || !System.Text.Json.Nodes.JsonNode.DeepEquals(original.Default, update.Default))
        {
            ctx.Add(SchemaChangeKind.DefaultChanged,
                original.HasDefault ? Shape.Json(original.Default) : "no default",
                update.HasDefault ? Shape.Json(update.Default) : "no default");
        }
    }

    private void CompareNot(Context ctx, SchemaNode original, SchemaNode update)
    {
        using var scope = ctx.Enter("not");
        var sub = ctx.Sub();

        // The roles swap under not: the update's excluded schema must read what the original's excluded.
        Compare(sub, update.Not, original.Not);
        if (sub.Differences.Count == 0)
        {
            return; // the same exclusion on both sides
        }

        ctx.Add(sub.IsCompatible ? SchemaChangeKind.NotTypeNarrowed : SchemaChangeKind.NotTypeExtended, Shape.Of(original.Not!), Shape.Of(update.Not!));
    }

    private static void CompareEnum(Context ctx, SchemaNode original, SchemaNode update)
    {
        var before = original.EnumValues!;
        var after = update.EnumValues!;
        bool Contains(List<System.Text.Json.Nodes.JsonNode?> values, System.Text.Json.Nodes.JsonNode? value) =>
            values.Exists(v => System.Text.Json.Nodes.JsonNode.DeepEquals(v, value));

        var updateHoldsAll = before.TrueForAll(v => Contains(after, v));
        var originalHoldsAll = after.TrueForAll(v => Contains(before, v));
        if (updateHoldsAll && originalHoldsAll)
        {
            return;
        }

        var kind = updateHoldsAll ? SchemaChangeKind.EnumArrayExtended
            : originalHoldsAll ? SchemaChangeKind.EnumArrayNarrowed
            : SchemaChangeKind.EnumArrayChanged;
        ctx.Add("enum", kind, Shape.Of(original), Shape.Of(update));
    }
}
