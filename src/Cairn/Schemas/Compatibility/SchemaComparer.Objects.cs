namespace Cairn.Schemas;

internal sealed partial class SchemaComparer
{
    private void CompareObject(Context ctx, ObjectFacet original, ObjectFacet update)
    {
        CompareRequired(ctx, original, update);
        CompareProperties(ctx, original, update);
        CompareDependencies(ctx, original, update);
        CompareAdditional(ctx, "additionalProperties", original.PermitsAdditional, original.AdditionalSchema, update.PermitsAdditional, update.AdditionalSchema,
            SchemaChangeKind.AdditionalPropertiesAdded, SchemaChangeKind.AdditionalPropertiesRemoved, SchemaChangeKind.AdditionalPropertiesExtended, SchemaChangeKind.AdditionalPropertiesNarrowed);
        CompareUnevaluated(ctx, "unevaluatedProperties", original.Unevaluated, update.Unevaluated,
            SchemaChangeKind.UnevaluatedPropertiesAdded, SchemaChangeKind.UnevaluatedPropertiesRemoved,
            SchemaChangeKind.UnevaluatedPropertiesExtended, SchemaChangeKind.UnevaluatedPropertiesNarrowed);
        Bound(ctx, "maxProperties", original.MaxProperties, update.MaxProperties,
            SchemaChangeKind.MaxPropertiesAdded, SchemaChangeKind.MaxPropertiesRemoved, SchemaChangeKind.MaxPropertiesIncreased, SchemaChangeKind.MaxPropertiesDecreased);
        Bound(ctx, "minProperties", original.MinProperties, update.MinProperties,
            SchemaChangeKind.MinPropertiesAdded, SchemaChangeKind.MinPropertiesRemoved, SchemaChangeKind.MinPropertiesIncreased, SchemaChangeKind.MinPropertiesDecreased);
    }

    /// <summary>Only properties declared on both sides are compared for being required, as Confluent does.</summary>
    private static void CompareRequired(Context ctx, ObjectFacet original, ObjectFacet update)
    {
        foreach (var (name, _) in original.Properties)
        {
            if (update.Property(name) is not { } updated)
            {
                continue;
            }

            var wasRequired = original.Required.Contains(name);
            var isRequired = update.Required.Contains(name);
            using var scope = ctx.Enter("required", SchemaPaths.Escape(name));
            if (wasRequired && !isRequired)
            {
                ctx.Add(SchemaChangeKind.RequiredAttributeRemoved, "required", "optional");
            }
            else if (!wasRequired && isRequired)
            {
                ctx.Add(updated.HasDefault ? SchemaChangeKind.RequiredAttributeWithDefaultAdded : SchemaChangeKind.RequiredAttributeAdded,
                    "optional", updated.HasDefault ? "required, default " + Shape.Json(updated.Default) : "required");
            }
        }
    }

    private void CompareProperties(Context ctx, ObjectFacet original, ObjectFacet update)
    {
        var names = original.Properties.Select(p => p.Key).Concat(update.Properties.Select(p => p.Key).Where(n => original.Property(n) is null));
        foreach (var name in names)
        {
            using var scope = ctx.Enter("properties", SchemaPaths.Escape(name));
            var before = original.Property(name);
            var after = update.Property(name);
            if (before is not null && after is not null)
            {
                Compare(ctx, before, after);
            }
            else if (before is not null)
            {
                PropertyRemoved(ctx, name, before, update);
            }
            else
            {
                PropertyAdded(ctx, name, after!, original, update);
            }
        }
    }

    // Whether a property can be removed depends on the update's content model only.
    private void PropertyRemoved(Context ctx, string name, SchemaNode before, ObjectFacet update)
    {
        if (IsOpen(update))
        {
            ctx.Add(SchemaChangeKind.PropertyRemovedFromOpenContentModel, Shape.Of(before), "absent, open content model");
        }
        else if (Partial(update, name) is { } partial)
        {
            var sub = ctx.Sub();
            Compare(sub, before, partial);
            ctx.AddRange(sub.Differences);
            ctx.Add(sub.IsCompatible ? SchemaChangeKind.PropertyRemovedIsCoveredByPartiallyOpenContentModel : SchemaChangeKind.PropertyRemovedNotCoveredByPartiallyOpenContentModel,
                Shape.Of(before), "absent, covered by " + Shape.Of(partial));
        }
        else
        {
            ctx.Add(before.Kind == NodeKind.False ? SchemaChangeKind.PropertyWithFalseRemovedFromClosedContentModel : SchemaChangeKind.PropertyRemovedFromClosedContentModel,
                Shape.Of(before), "absent, closed content model");
        }
    }

    // Whether a property can be added depends on the original's content model only.
    private void PropertyAdded(Context ctx, string name, SchemaNode after, ObjectFacet original, ObjectFacet update)
    {
        var required = update.Required.Contains(name);
        var shape = (required ? "required " : "optional ") + Shape.Of(after);
        if (IsOpen(original))
        {
            // A property accepting anything takes whatever the open writer wrote under its name, but not its absence:
            // required without a default, old data lacking it breaks the reader however little its schema asks.
            var kind = after.Kind == NodeKind.Empty && (!required || after.HasDefault) ? SchemaChangeKind.PropertyWithEmptySchemaAddedToOpenContentModel
                : !required ? SchemaChangeKind.OptionalPropertyAddedToOpenContentModel
                : after.HasDefault ? SchemaChangeKind.RequiredPropertyWithDefaultAddedToOpenContentModel
                : SchemaChangeKind.RequiredPropertyAddedToOpenContentModel;
            ctx.Add(kind, "absent, open content model", shape);
            return;
        }

        var partial = Partial(original, name);
        if (partial is not null)
        {
            var sub = ctx.Sub();
            Compare(sub, partial, after);
            ctx.AddRange(sub.Differences);
            ctx.Add(sub.IsCompatible ? SchemaChangeKind.PropertyAddedIsCoveredByPartiallyOpenContentModel : SchemaChangeKind.PropertyAddedNotCoveredByPartiallyOpenContentModel,
                "absent, covered by " + Shape.Of(partial), shape);
        }

        var was = partial is null ? "absent, closed content model" : "absent, covered by " + Shape.Of(partial);
        var added = !required ? SchemaChangeKind.OptionalPropertyAddedToUnopenContentModel
            : after.HasDefault ? SchemaChangeKind.RequiredPropertyWithDefaultAddedToUnopenContentModel
            : SchemaChangeKind.RequiredPropertyAddedToUnopenContentModel;
        ctx.Add(added, was, required && after.HasDefault ? shape + ", default " + Shape.Json(after.Default) : shape);
    }

    /// <summary>Open: no patternProperties, additionalProperties absent or true, unevaluatedProperties absent or true.</summary>
    private static bool IsOpen(ObjectFacet facet) =>
        facet.PatternProperties.Count == 0 && facet.AdditionalSchema is null && facet.PermitsAdditional
        && (facet.Unevaluated is null || facet.Unevaluated.Kind == NodeKind.Empty);

    /// <summary>The schema a partially open model gives an undeclared property of that name, if any.</summary>
    private static SchemaNode? Partial(ObjectFacet facet, string name)
    {
        foreach (var (_, regex, schema) in facet.PatternProperties)
        {
            if (regex.IsMatch(name))
            {
                return schema;
            }
        }

        if (facet.AdditionalSchema is not null)
        {
            return facet.AdditionalSchema;
        }

        return facet.PermitsAdditional && facet.Unevaluated is { Kind: not NodeKind.False and not NodeKind.Empty } unevaluated ? unevaluated : null;
    }

    private void CompareDependencies(Context ctx, ObjectFacet original, ObjectFacet update)
    {
        foreach (var name in Union(original.PropertyDependencies.Select(d => d.Name), update.PropertyDependencies.Select(d => d.Name)))
        {
            var before = original.PropertyDependencies.Find(d => d.Name == name);
            var after = update.PropertyDependencies.Find(d => d.Name == name);
            using var scope = ctx.Enter(DependencyKeyword(before?.Keyword ?? after!.Keyword, properties: true), SchemaPaths.Escape(name));
            if (after is null)
            {
                ctx.Add(SchemaChangeKind.DependencyArrayRemoved, Shape.Names(before!.Requires), "absent");
            }
            else if (before is null)
            {
                ctx.Add(SchemaChangeKind.DependencyArrayAdded, "absent", Shape.Names(after.Requires));
            }
            else
            {
                var was = before.Requires.ToHashSet(StringComparer.Ordinal);
                var now = after.Requires.ToHashSet(StringComparer.Ordinal);
                if (!was.SetEquals(now))
                {
                    var kind = now.IsSupersetOf(was) ? SchemaChangeKind.DependencyArrayExtended
                        : was.IsSupersetOf(now) ? SchemaChangeKind.DependencyArrayNarrowed
                        : SchemaChangeKind.DependencyArrayChanged;
                    ctx.Add(kind, Shape.Names(before.Requires), Shape.Names(after.Requires));
                }
            }
        }

        foreach (var name in Union(original.SchemaDependencies.Select(d => d.Name), update.SchemaDependencies.Select(d => d.Name)))
        {
            var before = original.SchemaDependencies.Find(d => d.Name == name);
            var after = update.SchemaDependencies.Find(d => d.Name == name);
            using var scope = ctx.Enter(DependencyKeyword(before?.Keyword ?? after!.Keyword, properties: false), SchemaPaths.Escape(name));
            if (after is null)
            {
                ctx.Add(SchemaChangeKind.DependencySchemaRemoved, Shape.Of(before!.Schema), "absent");
            }
            else if (before is null)
            {
                ctx.Add(SchemaChangeKind.DependencySchemaAdded, "absent", Shape.Of(after.Schema));
            }
            else
            {
                Compare(ctx, before.Schema, after.Schema);
            }
        }
    }

    // The path names the keyword as the original's draft spells it.
    private string DependencyKeyword(string written, bool properties) =>
        _naming == SchemaDraft.Draft7 ? "dependencies"
        : written == "dependencies" ? (properties ? "dependentRequired" : "dependentSchemas")
        : written;

    private static IEnumerable<string> Union(IEnumerable<string> first, IEnumerable<string> second) =>
        first.Concat(second).Distinct(StringComparer.Ordinal);

    /// <summary>
    /// What a content model says of members it does not declare (<c>additionalProperties</c>, or a tuple's additional
    /// items): permitted or not, and under which schema; the kinds name the change for properties or for items.
    /// </summary>
    private void CompareAdditional(Context ctx, string keyword, bool originalPermits, SchemaNode? originalSchema, bool updatePermits, SchemaNode? updateSchema,
        SchemaChangeKind added, SchemaChangeKind removed, SchemaChangeKind extended, SchemaChangeKind narrowed)
    {
        using var scope = ctx.Enter(keyword);
        if (originalPermits != updatePermits)
        {
            ctx.Add(updatePermits ? added : removed, Shape.Additional(originalPermits, originalSchema), Shape.Additional(updatePermits, updateSchema));
        }
        else if (originalSchema is null && updateSchema is not null)
        {
            ctx.Add(narrowed, Shape.Additional(true, null), Shape.Of(updateSchema));
        }
        else if (originalSchema is not null && updateSchema is null)
        {
            ctx.Add(extended, Shape.Of(originalSchema), Shape.Additional(true, null));
        }
        else
        {
            Compare(ctx, originalSchema, updateSchema);
        }
    }

    private void CompareUnevaluated(Context ctx, string keyword, SchemaNode? original, SchemaNode? update,
        SchemaChangeKind added, SchemaChangeKind removed, SchemaChangeKind extended, SchemaChangeKind narrowed)
    {
        if (original is null && update is null)
        {
            return;
        }

        using var scope = ctx.Enter(keyword);
        var was = original is null ? "absent" : Shape.Of(original);
        var now = update is null ? "absent" : Shape.Of(update);
        if (original is null)
        {
            ctx.Add(update!.Kind == NodeKind.False ? removed : narrowed, was, now);
        }
        else if (update is null)
        {
            ctx.Add(original.Kind == NodeKind.False ? added : extended, was, now);
        }
        else if (original.Kind == NodeKind.False && update.Kind != NodeKind.False)
        {
            ctx.Add(added, was, now);
        }
        else if (original.Kind != NodeKind.False && update.Kind == NodeKind.False)
        {
            ctx.Add(removed, was, now);
        }
        else if (original.Kind == NodeKind.Empty && update.Kind != NodeKind.Empty)
        {
            ctx.Add(narrowed, was, now);
        }
        else if (original.Kind != NodeKind.Empty && update.Kind == NodeKind.Empty)
        {
            ctx.Add(extended, was, now);
        }
        else
        {
            Compare(ctx, original, update);
        }
    }
}
