using System.Globalization;

namespace Cairn.Schemas;

internal sealed partial class SchemaComparer
{
    private void CompareArray(Context ctx, ArrayFacet original, ArrayFacet update)
    {
        using (ctx.Enter("items"))
        {
            Compare(ctx, original.Items, update.Items);
        }

        CompareTuple(ctx, original, update);
        CompareAdditional(ctx, AdditionalItemsKeyword, original.PermitsAdditional, original.AdditionalSchema, update.PermitsAdditional, update.AdditionalSchema,
            SchemaChangeKind.AdditionalItemsAdded, SchemaChangeKind.AdditionalItemsRemoved, SchemaChangeKind.AdditionalItemsExtended, SchemaChangeKind.AdditionalItemsNarrowed);
        CompareUnevaluated(ctx, "unevaluatedItems", original.Unevaluated, update.Unevaluated,
            SchemaChangeKind.UnevaluatedItemsAdded, SchemaChangeKind.UnevaluatedItemsRemoved,
            SchemaChangeKind.UnevaluatedItemsExtended, SchemaChangeKind.UnevaluatedItemsNarrowed);
        Bound(ctx, "maxItems", original.MaxItems, update.MaxItems,
            SchemaChangeKind.MaxItemsAdded, SchemaChangeKind.MaxItemsRemoved, SchemaChangeKind.MaxItemsIncreased, SchemaChangeKind.MaxItemsDecreased);
        Bound(ctx, "minItems", original.MinItems, update.MinItems,
            SchemaChangeKind.MinItemsAdded, SchemaChangeKind.MinItemsRemoved, SchemaChangeKind.MinItemsIncreased, SchemaChangeKind.MinItemsDecreased);
        if (original.UniqueItems != update.UniqueItems)
        {
            ctx.Add("uniqueItems", original.UniqueItems ? SchemaChangeKind.UniqueItemsRemoved : SchemaChangeKind.UniqueItemsAdded,
                original.UniqueItems ? "uniqueItems" : "no uniqueItems", update.UniqueItems ? "uniqueItems" : "no uniqueItems");
        }

        Bound(ctx, "maxContains", original.MaxContains, update.MaxContains,
            SchemaChangeKind.MaxContainsAdded, SchemaChangeKind.MaxContainsRemoved, SchemaChangeKind.MaxContainsIncreased, SchemaChangeKind.MaxContainsDecreased);
        Bound(ctx, "minContains", original.MinContains, update.MinContains,
            SchemaChangeKind.MinContainsAdded, SchemaChangeKind.MinContainsRemoved, SchemaChangeKind.MinContainsIncreased, SchemaChangeKind.MinContainsDecreased);
    }

    private string TupleKeyword => _naming == SchemaDraft.Draft2020 ? "prefixItems" : "items";

    private string AdditionalItemsKeyword => _naming == SchemaDraft.Draft2020 ? "items" : "additionalItems";

    private void CompareTuple(Context ctx, ArrayFacet original, ArrayFacet update)
    {
        var before = original.Tuple ?? [];
        var after = update.Tuple ?? [];
        for (var i = 0; i < Math.Max(before.Count, after.Count); i++)
        {
            using var scope = ctx.Enter(TupleKeyword, i.ToString(CultureInfo.InvariantCulture));
            if (i < before.Count && i < after.Count)
            {
                Compare(ctx, before[i], after[i]);
            }
            else if (i < before.Count)
            {
                ItemRemoved(ctx, before[i], update);
            }
            else
            {
                ItemAdded(ctx, after[i], original);
            }
        }
    }

    private void ItemRemoved(Context ctx, SchemaNode before, ArrayFacet update)
    {
        if (IsOpen(update))
        {
            ctx.Add(SchemaChangeKind.ItemRemovedFromOpenContentModel, Shape.Of(before), "absent, open tuple");
        }
        else if (Partial(update) is { } partial)
        {
            var sub = ctx.Sub();
            Compare(sub, before, partial);
            ctx.AddRange(sub.Differences);
            ctx.Add(sub.IsCompatible ? SchemaChangeKind.ItemRemovedIsCoveredByPartiallyOpenContentModel : SchemaChangeKind.ItemRemovedNotCoveredByPartiallyOpenContentModel,
                Shape.Of(before), "absent, covered by " + Shape.Of(partial));
        }
        else
        {
            ctx.Add(before.Kind == NodeKind.False ? SchemaChangeKind.ItemWithFalseRemovedFromClosedContentModel : SchemaChangeKind.ItemRemovedFromClosedContentModel,
                Shape.Of(before), "absent, closed tuple");
        }
    }

    private void ItemAdded(Context ctx, SchemaNode after, ArrayFacet original)
    {
        if (IsOpen(original))
        {
            ctx.Add(after.Kind == NodeKind.Empty ? SchemaChangeKind.ItemWithEmptySchemaAddedToOpenContentModel : SchemaChangeKind.ItemAddedToOpenContentModel,
                "absent, open tuple", Shape.Of(after));
        }
        else if (Partial(original) is { } partial)
        {
            var sub = ctx.Sub();
            Compare(sub, partial, after);
            ctx.AddRange(sub.Differences);
            ctx.Add(sub.IsCompatible ? SchemaChangeKind.ItemAddedIsCoveredByPartiallyOpenContentModel : SchemaChangeKind.ItemAddedNotCoveredByPartiallyOpenContentModel,
                "absent, covered by " + Shape.Of(partial), Shape.Of(after));
        }
        else
        {
            ctx.Add(SchemaChangeKind.ItemAddedToClosedContentModel, "absent, closed tuple", Shape.Of(after));
        }
    }

    /// <summary>Open: additional items absent or true, and unevaluatedItems absent or true.</summary>
    private static bool IsOpen(ArrayFacet facet) =>
        facet.PermitsAdditional && facet.AdditionalSchema is null
        && (facet.Unevaluated is null || facet.Unevaluated.Kind == NodeKind.Empty);

    /// <summary>The schema a partially open tuple gives the items past it: additional items, else unevaluatedItems.</summary>
    private static SchemaNode? Partial(ArrayFacet facet) =>
        facet.AdditionalSchema
        ?? (facet.PermitsAdditional && facet.Unevaluated is { Kind: not NodeKind.False and not NodeKind.Empty } unevaluated ? unevaluated : null);
}
