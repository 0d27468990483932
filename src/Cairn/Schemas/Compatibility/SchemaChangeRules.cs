using System.Collections.Frozen;

namespace Cairn.Schemas;

/// <summary>
/// Which kinds are compatible (Confluent's strict set, its default) and the rule of each in words. The writer is the
/// schema the data was written with (the original of a comparison); the reader is the schema reading it (the update).
/// </summary>
internal static class SchemaChangeRules
{
    private static readonly FrozenSet<SchemaChangeKind> Compatible = new[]
    {
        SchemaChangeKind.IdChanged, SchemaChangeKind.DescriptionChanged, SchemaChangeKind.TitleChanged,
        SchemaChangeKind.DefaultChanged, SchemaChangeKind.SchemaRemoved, SchemaChangeKind.TypeExtended,
        SchemaChangeKind.MaxLengthIncreased, SchemaChangeKind.MaxLengthRemoved, SchemaChangeKind.MinLengthDecreased,
        SchemaChangeKind.MinLengthRemoved, SchemaChangeKind.PatternRemoved,
        SchemaChangeKind.MaximumIncreased, SchemaChangeKind.MaximumRemoved, SchemaChangeKind.MinimumDecreased,
        SchemaChangeKind.MinimumRemoved, SchemaChangeKind.ExclusiveMaximumIncreased, SchemaChangeKind.ExclusiveMaximumRemoved,
        SchemaChangeKind.ExclusiveMinimumDecreased, SchemaChangeKind.ExclusiveMinimumRemoved,
        SchemaChangeKind.MultipleOfReduced, SchemaChangeKind.MultipleOfRemoved,
        SchemaChangeKind.RequiredAttributeWithDefaultAdded, SchemaChangeKind.RequiredAttributeRemoved,
        SchemaChangeKind.DependencyArrayNarrowed, SchemaChangeKind.DependencyArrayRemoved, SchemaChangeKind.DependencySchemaRemoved,
        SchemaChangeKind.MaxPropertiesIncreased, SchemaChangeKind.MaxPropertiesRemoved,
        SchemaChangeKind.MinPropertiesDecreased, SchemaChangeKind.MinPropertiesRemoved,
        SchemaChangeKind.AdditionalPropertiesAdded, SchemaChangeKind.AdditionalPropertiesExtended,
        SchemaChangeKind.UnevaluatedPropertiesAdded, SchemaChangeKind.UnevaluatedPropertiesExtended,
        SchemaChangeKind.PropertyWithEmptySchemaAddedToOpenContentModel,
        SchemaChangeKind.RequiredPropertyWithDefaultAddedToUnopenContentModel,
        SchemaChangeKind.OptionalPropertyAddedToUnopenContentModel,
        SchemaChangeKind.PropertyWithFalseRemovedFromClosedContentModel,
        SchemaChangeKind.PropertyRemovedFromOpenContentModel,
        SchemaChangeKind.PropertyAddedIsCoveredByPartiallyOpenContentModel,
        SchemaChangeKind.PropertyRemovedIsCoveredByPartiallyOpenContentModel,
        SchemaChangeKind.MaxItemsIncreased, SchemaChangeKind.MaxItemsRemoved, SchemaChangeKind.MinItemsDecreased,
        SchemaChangeKind.MinItemsRemoved, SchemaChangeKind.MaxContainsIncreased, SchemaChangeKind.MaxContainsRemoved,
        SchemaChangeKind.MinContainsDecreased, SchemaChangeKind.MinContainsRemoved, SchemaChangeKind.UniqueItemsRemoved,
        SchemaChangeKind.AdditionalItemsAdded, SchemaChangeKind.AdditionalItemsExtended,
        SchemaChangeKind.UnevaluatedItemsAdded, SchemaChangeKind.UnevaluatedItemsExtended,
        SchemaChangeKind.ItemWithEmptySchemaAddedToOpenContentModel, SchemaChangeKind.ItemAddedToClosedContentModel,
        SchemaChangeKind.ItemWithFalseRemovedFromClosedContentModel, SchemaChangeKind.ItemRemovedFromOpenContentModel,
        SchemaChangeKind.ItemAddedIsCoveredByPartiallyOpenContentModel,
        SchemaChangeKind.ItemRemovedIsCoveredByPartiallyOpenContentModel,
        SchemaChangeKind.EnumArrayExtended,
        SchemaChangeKind.CombinedTypeExtended, SchemaChangeKind.ProductTypeNarrowed, SchemaChangeKind.SumTypeExtended,
        SchemaChangeKind.NotTypeNarrowed,
    }.ToFrozenSet();

    public static bool IsCompatible(SchemaChangeKind kind) => Compatible.Contains(kind);

    public static string Rule(SchemaChangeKind kind) => kind switch
    {
        SchemaChangeKind.IdChanged or SchemaChangeKind.DescriptionChanged or SchemaChangeKind.TitleChanged
            or SchemaChangeKind.DefaultChanged => "an annotation, not a constraint: what is valid does not change",
        SchemaChangeKind.SchemaAdded => "the reader constrains values the writer left free",
        SchemaChangeKind.SchemaRemoved => "the reader no longer constrains these values",
        SchemaChangeKind.TypeExtended => "every integer the writer wrote is a number the reader accepts",
        SchemaChangeKind.TypeNarrowed => "the writer may have written a fractional number the reader's integer refuses",
        SchemaChangeKind.TypeChanged => "the reader expects another type than the writer wrote",
        SchemaChangeKind.PatternAdded => "the writer may have written strings the reader's pattern refuses",
        SchemaChangeKind.PatternRemoved => "the reader accepts any string",
        SchemaChangeKind.PatternChanged => "patterns are not compared for inclusion, so the writer's strings may not match the reader's",
        SchemaChangeKind.MultipleOfAdded => "the writer may have written numbers that are not multiples of the reader's multipleOf",
        SchemaChangeKind.MultipleOfRemoved => "the reader accepts any number",
        SchemaChangeKind.MultipleOfExpanded => "the reader's multipleOf is a multiple of the writer's, so fewer numbers qualify",
        SchemaChangeKind.MultipleOfReduced => "the writer's multipleOf is a multiple of the reader's, so every number written qualifies",
        SchemaChangeKind.MultipleOfChanged => "neither multipleOf divides the other, so written numbers may not qualify",
        SchemaChangeKind.RequiredAttributeAdded => "the writer may have left out a property the reader requires, and it has no default",
        SchemaChangeKind.RequiredAttributeWithDefaultAdded => "the reader requires the property but its default fills it in",
        SchemaChangeKind.RequiredAttributeRemoved => "the reader no longer requires the property",
        SchemaChangeKind.AdditionalPropertiesAdded => "the reader accepts properties the writer never wrote",
        SchemaChangeKind.AdditionalPropertiesRemoved => "the writer may have written undeclared properties the reader's additionalProperties: false refuses",
        SchemaChangeKind.AdditionalPropertiesExtended => "the reader accepts any undeclared property",
        SchemaChangeKind.AdditionalPropertiesNarrowed => "the writer may have written undeclared properties the reader's additionalProperties schema refuses",
        SchemaChangeKind.UnevaluatedPropertiesAdded => "the reader accepts unevaluated properties the writer never wrote",
        SchemaChangeKind.UnevaluatedPropertiesRemoved => "the writer may have written unevaluated properties the reader's unevaluatedProperties: false refuses",
        SchemaChangeKind.UnevaluatedPropertiesExtended => "the reader accepts any unevaluated property",
        SchemaChangeKind.UnevaluatedPropertiesNarrowed => "the writer may have written unevaluated properties the reader's schema for them refuses",
        SchemaChangeKind.DependencyArrayAdded or SchemaChangeKind.DependencyArrayExtended or SchemaChangeKind.DependencyArrayChanged
            => "the reader requires properties alongside this one that the writer did not",
        SchemaChangeKind.DependencyArrayRemoved or SchemaChangeKind.DependencyArrayNarrowed
            => "the reader requires no more properties alongside this one than the writer did",
        SchemaChangeKind.DependencySchemaAdded => "the reader applies a schema when this property is present that the writer did not",
        SchemaChangeKind.DependencySchemaRemoved => "the reader no longer applies a schema when this property is present",
        SchemaChangeKind.RequiredPropertyAddedToOpenContentModel or SchemaChangeKind.RequiredPropertyWithDefaultAddedToOpenContentModel
            or SchemaChangeKind.OptionalPropertyAddedToOpenContentModel
            => "the writer's content model is open, so it may have written this property with any value; close the writer's model (additionalProperties: false) before adding properties",
        SchemaChangeKind.PropertyWithEmptySchemaAddedToOpenContentModel => "the added property accepts any value, as the writer's open model did",
        SchemaChangeKind.RequiredPropertyAddedToUnopenContentModel => "the writer never wrote this property and the reader requires it without a default",
        SchemaChangeKind.RequiredPropertyWithDefaultAddedToUnopenContentModel => "the writer never wrote this property and the reader's default fills it in",
        SchemaChangeKind.OptionalPropertyAddedToUnopenContentModel => "the writer's model did not let it write this property, and the reader does not require it",
        SchemaChangeKind.PropertyRemovedFromOpenContentModel => "the reader's content model is open, so it still accepts the property",
        SchemaChangeKind.PropertyWithFalseRemovedFromClosedContentModel => "the writer's schema for the property was false, so it never wrote it",
        SchemaChangeKind.PropertyRemovedFromClosedContentModel => "the writer may have written the property and the reader's closed content model refuses it",
        SchemaChangeKind.PropertyRemovedIsCoveredByPartiallyOpenContentModel => "the reader's patternProperties or additionalProperties schema accepts what the writer wrote for the property",
        SchemaChangeKind.PropertyRemovedNotCoveredByPartiallyOpenContentModel => "the reader's patternProperties or additionalProperties schema refuses some of what the writer wrote for the property",
        SchemaChangeKind.PropertyAddedIsCoveredByPartiallyOpenContentModel => "the reader's schema for the property accepts what the writer's patternProperties or additionalProperties allowed under that name",
        SchemaChangeKind.PropertyAddedNotCoveredByPartiallyOpenContentModel => "the writer's patternProperties or additionalProperties allowed values under that name that the reader's schema for the property refuses",
        SchemaChangeKind.UniqueItemsAdded => "the writer may have written arrays with repeated items",
        SchemaChangeKind.UniqueItemsRemoved => "the reader accepts repeated items",
        SchemaChangeKind.AdditionalItemsAdded => "the reader accepts items past the tuple the writer never wrote",
        SchemaChangeKind.AdditionalItemsRemoved => "the writer may have written items past the tuple that the reader refuses",
        SchemaChangeKind.AdditionalItemsExtended => "the reader accepts any item past the tuple",
        SchemaChangeKind.AdditionalItemsNarrowed => "the writer may have written items past the tuple that the reader's schema for them refuses",
        SchemaChangeKind.UnevaluatedItemsAdded => "the reader accepts unevaluated items the writer never wrote",
        SchemaChangeKind.UnevaluatedItemsRemoved => "the writer may have written unevaluated items the reader's unevaluatedItems: false refuses",
        SchemaChangeKind.UnevaluatedItemsExtended => "the reader accepts any unevaluated item",
        SchemaChangeKind.UnevaluatedItemsNarrowed => "the writer may have written unevaluated items the reader's schema for them refuses",
        SchemaChangeKind.ItemAddedToOpenContentModel => "the writer's tuple is open, so it may have written any value at this position",
        SchemaChangeKind.ItemWithEmptySchemaAddedToOpenContentModel => "the added item accepts any value, as the writer's open tuple did",
        SchemaChangeKind.ItemAddedToClosedContentModel => "the writer's closed tuple never wrote an item at this position",
        SchemaChangeKind.ItemRemovedFromOpenContentModel => "the reader's tuple is open, so it still accepts the item",
        SchemaChangeKind.ItemWithFalseRemovedFromClosedContentModel => "the writer's schema for the item was false, so it never wrote it",
        SchemaChangeKind.ItemRemovedFromClosedContentModel => "the writer may have written the item and the reader's closed tuple refuses it",
        SchemaChangeKind.ItemRemovedIsCoveredByPartiallyOpenContentModel => "the reader's schema for additional items accepts what the writer wrote at this position",
        SchemaChangeKind.ItemRemovedNotCoveredByPartiallyOpenContentModel => "the reader's schema for additional items refuses some of what the writer wrote at this position",
        SchemaChangeKind.ItemAddedIsCoveredByPartiallyOpenContentModel => "the reader's item accepts what the writer's schema for additional items allowed at this position",
        SchemaChangeKind.ItemAddedNotCoveredByPartiallyOpenContentModel => "the writer's schema for additional items allowed values at this position that the reader's item refuses",
        SchemaChangeKind.EnumArrayExtended => "the reader's enum holds every value the writer's did",
        SchemaChangeKind.EnumArrayNarrowed => "the writer may have written a value the reader's enum no longer holds",
        SchemaChangeKind.EnumArrayChanged => "the writer may have written a value the reader's enum or const does not hold",
        SchemaChangeKind.CombinedTypeExtended => "the reader's combination is looser than the writer's (anyOf, or a single branch)",
        SchemaChangeKind.CombinedTypeChanged => "the reader combines its branches more strictly than the writer (such as anyOf to oneOf or allOf)",
        SchemaChangeKind.ProductTypeExtended => "the reader's allOf has a branch more for written values to satisfy",
        SchemaChangeKind.ProductTypeNarrowed => "the reader's allOf has fewer branches for written values to satisfy",
        SchemaChangeKind.SumTypeExtended => "the reader's oneOf/anyOf holds a branch for every branch the writer had",
        SchemaChangeKind.SumTypeNarrowed => "the writer may have written a value of a branch the reader's oneOf/anyOf no longer has",
        SchemaChangeKind.CombinedTypeSubschemasChanged => "not every branch of the writer's combination is read by its own compatible branch of the reader's",
        SchemaChangeKind.NotTypeExtended => "the reader's not excludes values the writer's did not",
        SchemaChangeKind.NotTypeNarrowed => "the reader's not excludes only values the writer's did",
        _ => BoundRule(kind),
    };

    // The bound keywords share one rule each way: tighten is breaking, loosen is compatible.
    private static string BoundRule(SchemaChangeKind kind) => IsCompatible(kind)
        ? "the reader's bound is looser, so every value the writer wrote still fits"
        : "the reader's bound is tighter, so the writer may have written values that no longer fit";
}
