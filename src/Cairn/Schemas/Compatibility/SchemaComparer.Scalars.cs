using System.Globalization;

namespace Cairn.Schemas;

internal sealed partial class SchemaComparer
{
    private static void CompareString(Context ctx, StringFacet original, StringFacet update)
    {
        Bound(ctx, "maxLength", original.MaxLength, update.MaxLength,
            SchemaChangeKind.MaxLengthAdded, SchemaChangeKind.MaxLengthRemoved, SchemaChangeKind.MaxLengthIncreased, SchemaChangeKind.MaxLengthDecreased);
        Bound(ctx, "minLength", original.MinLength, update.MinLength,
            SchemaChangeKind.MinLengthAdded, SchemaChangeKind.MinLengthRemoved, SchemaChangeKind.MinLengthIncreased, SchemaChangeKind.MinLengthDecreased);

        if (original.Pattern is null && update.Pattern is not null)
        {
            ctx.Add("pattern", SchemaChangeKind.PatternAdded, "no pattern", Shape.Keyword("pattern", update.Pattern));
        }
        else if (original.Pattern is not null && update.Pattern is null)
        {
            ctx.Add("pattern", SchemaChangeKind.PatternRemoved, Shape.Keyword("pattern", original.Pattern), "no pattern");
        }
        else if (original.Pattern is { } before && update.Pattern is { } after && !string.Equals(before, after, StringComparison.Ordinal))
        {
            ctx.Add("pattern", SchemaChangeKind.PatternChanged, Shape.Keyword("pattern", before), Shape.Keyword("pattern", after));
        }
    }

    private static void CompareNumber(Context ctx, NumberFacet original, NumberFacet update)
    {
        Bound(ctx, "maximum", original.Maximum, update.Maximum,
            SchemaChangeKind.MaximumAdded, SchemaChangeKind.MaximumRemoved, SchemaChangeKind.MaximumIncreased, SchemaChangeKind.MaximumDecreased);
        Bound(ctx, "minimum", original.Minimum, update.Minimum,
            SchemaChangeKind.MinimumAdded, SchemaChangeKind.MinimumRemoved, SchemaChangeKind.MinimumIncreased, SchemaChangeKind.MinimumDecreased);
        Bound(ctx, "exclusiveMaximum", original.ExclusiveMaximum, update.ExclusiveMaximum,
            SchemaChangeKind.ExclusiveMaximumAdded, SchemaChangeKind.ExclusiveMaximumRemoved, SchemaChangeKind.ExclusiveMaximumIncreased, SchemaChangeKind.ExclusiveMaximumDecreased);
        Bound(ctx, "exclusiveMinimum", original.ExclusiveMinimum, update.ExclusiveMinimum,
            SchemaChangeKind.ExclusiveMinimumAdded, SchemaChangeKind.ExclusiveMinimumRemoved, SchemaChangeKind.ExclusiveMinimumIncreased, SchemaChangeKind.ExclusiveMinimumDecreased);

        var before = original.MultipleOf;
        var after = update.MultipleOf;
        if (before is null && after is not null)
        {
            ctx.Add("multipleOf", SchemaChangeKind.MultipleOfAdded, "no multipleOf", Shape.Keyword("multipleOf", after));
        }
        else if (before is not null && after is null)
        {
            ctx.Add("multipleOf", SchemaChangeKind.MultipleOfRemoved, Shape.Keyword("multipleOf", before), "no multipleOf");
        }
        else if (before is { } b && after is { } a && !b.Same(a))
        {
            var kind = a.IsMultipleOf(b) ? SchemaChangeKind.MultipleOfExpanded
                : b.IsMultipleOf(a) ? SchemaChangeKind.MultipleOfReduced
                : SchemaChangeKind.MultipleOfChanged;
            ctx.Add("multipleOf", kind, Shape.Keyword("multipleOf", b), Shape.Keyword("multipleOf", a));
        }

        if (original.RequiresInteger != update.RequiresInteger)
        {
            ctx.Add(original.RequiresInteger ? SchemaChangeKind.TypeExtended : SchemaChangeKind.TypeNarrowed,
                original.RequiresInteger ? "integer" : "number", update.RequiresInteger ? "integer" : "number");
        }
    }

    private static void Bound(Context ctx, string keyword, int? original, int? update,
        SchemaChangeKind added, SchemaChangeKind removed, SchemaChangeKind increased, SchemaChangeKind decreased) =>
        Bound(ctx, keyword,
            original is { } o ? new SchemaNumber(o, o, o.ToString(CultureInfo.InvariantCulture)) : null,
            update is { } u ? new SchemaNumber(u, u, u.ToString(CultureInfo.InvariantCulture)) : null,
            added, removed, increased, decreased);

    private static void Bound(Context ctx, string keyword, SchemaNumber? original, SchemaNumber? update,
        SchemaChangeKind added, SchemaChangeKind removed, SchemaChangeKind increased, SchemaChangeKind decreased)
    {
        switch (original, update)
        {
            case (null, null):
                return;
            case (null, { } u):
                ctx.Add(keyword, added, "no " + keyword, Shape.Keyword(keyword, u));
                return;
            case ({ } o, null):
                ctx.Add(keyword, removed, Shape.Keyword(keyword, o), "no " + keyword);
                return;
            case ({ } o, { } u):
                var order = o.CompareTo(u);
                if (order != 0)
                {
                    ctx.Add(keyword, order < 0 ? increased : decreased, Shape.Keyword(keyword, o), Shape.Keyword(keyword, u));
                }

                return;
        }
    }
}
