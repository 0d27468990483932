namespace Cairn.Schemas;

/// <summary>
/// The kinds of difference between two JSON Schema documents, one for each difference type of Confluent Schema
/// Registry's JSON Schema checker, with its meaning. Whether a kind is compatible is said in the sense Confluent uses: a
/// reader using the updated schema can read every document valid under the original one. "Open" content model: no
/// <c>additionalProperties</c> (or <c>true</c>) and no <c>patternProperties</c>; "closed": <c>additionalProperties:
/// false</c>; "partially open": a schema for <c>additionalProperties</c>, <c>patternProperties</c>, or (2019-09 and
/// 2020-12) <c>unevaluatedProperties</c>; "unopen": closed or partially open. Arrays have the same three models through
/// <c>additionalItems</c> (<c>items</c> beside <c>prefixItems</c> in 2020-12).
/// </summary>
public enum SchemaChangeKind
{
    /// <summary>The schema's <c>$id</c> changed. Compatible: an identifier is not a constraint.</summary>
    IdChanged,

    /// <summary>The <c>description</c> changed. Compatible: an annotation.</summary>
    DescriptionChanged,

    /// <summary>The <c>title</c> changed. Compatible: an annotation.</summary>
    TitleChanged,

    /// <summary>The <c>default</c> changed. Compatible: an annotation.</summary>
    DefaultChanged,

    /// <summary>A subschema where there was none (such as <c>items</c>) was added. Breaking: it constrains values that were free.</summary>
    SchemaAdded,

    /// <summary>A subschema (such as <c>items</c>) was removed. Compatible: the values it constrained are now free.</summary>
    SchemaRemoved,

    /// <summary><c>integer</c> became <c>number</c>. Compatible: every integer is a number.</summary>
    TypeExtended,

    /// <summary><c>number</c> became <c>integer</c>. Breaking: a fractional number is no longer valid.</summary>
    TypeNarrowed,

    /// <summary>The schema became another kind of schema (such as string to number, or an object to an enum). Breaking.</summary>
    TypeChanged,

    /// <summary><c>maxLength</c> was added. Breaking.</summary>
    MaxLengthAdded,

    /// <summary><c>maxLength</c> was removed. Compatible.</summary>
    MaxLengthRemoved,

    /// <summary><c>maxLength</c> grew. Compatible.</summary>
    MaxLengthIncreased,

    /// <summary><c>maxLength</c> shrank. Breaking.</summary>
    MaxLengthDecreased,

    /// <summary><c>minLength</c> was added. Breaking.</summary>
    MinLengthAdded,

    /// <summary><c>minLength</c> was removed. Compatible.</summary>
    MinLengthRemoved,

    /// <summary><c>minLength</c> grew. Breaking.</summary>
    MinLengthIncreased,

    /// <summary><c>minLength</c> shrank. Compatible.</summary>
    MinLengthDecreased,

    /// <summary>A <c>pattern</c> was added. Breaking.</summary>
    PatternAdded,

    /// <summary>The <c>pattern</c> was removed. Compatible.</summary>
    PatternRemoved,

    /// <summary>The <c>pattern</c> changed. Breaking: a regular expression is not compared for inclusion.</summary>
    PatternChanged,

    /// <summary><c>maximum</c> was added. Breaking.</summary>
    MaximumAdded,

    /// <summary><c>maximum</c> was removed. Compatible.</summary>
    MaximumRemoved,

    /// <summary><c>maximum</c> grew. Compatible.</summary>
    MaximumIncreased,

    /// <summary><c>maximum</c> shrank. Breaking.</summary>
    MaximumDecreased,

    /// <summary><c>minimum</c> was added. Breaking.</summary>
    MinimumAdded,

    /// <summary><c>minimum</c> was removed. Compatible.</summary>
    MinimumRemoved,

    /// <summary><c>minimum</c> grew. Breaking.</summary>
    MinimumIncreased,

    /// <summary><c>minimum</c> shrank. Compatible.</summary>
    MinimumDecreased,

    /// <summary><c>exclusiveMaximum</c> was added. Breaking.</summary>
    ExclusiveMaximumAdded,

    /// <summary><c>exclusiveMaximum</c> was removed. Compatible.</summary>
    ExclusiveMaximumRemoved,

    /// <summary><c>exclusiveMaximum</c> grew. Compatible.</summary>
    ExclusiveMaximumIncreased,

    /// <summary><c>exclusiveMaximum</c> shrank. Breaking.</summary>
    ExclusiveMaximumDecreased,

    /// <summary><c>exclusiveMinimum</c> was added. Breaking.</summary>
    ExclusiveMinimumAdded,

    /// <summary><c>exclusiveMinimum</c> was removed. Compatible.</summary>
    ExclusiveMinimumRemoved,

    /// <summary><c>exclusiveMinimum</c> grew. Breaking.</summary>
    ExclusiveMinimumIncreased,

    /// <summary><c>exclusiveMinimum</c> shrank. Compatible.</summary>
    ExclusiveMinimumDecreased,

    /// <summary><c>multipleOf</c> was added. Breaking.</summary>
    MultipleOfAdded,

    /// <summary><c>multipleOf</c> was removed. Compatible.</summary>
    MultipleOfRemoved,

    /// <summary>The new <c>multipleOf</c> is a multiple of the old one (2 to 10). Breaking: fewer numbers qualify.</summary>
    MultipleOfExpanded,

    /// <summary>The old <c>multipleOf</c> is a multiple of the new one (10 to 2). Compatible: more numbers qualify.</summary>
    MultipleOfReduced,

    /// <summary><c>multipleOf</c> changed to a value neither divides. Breaking.</summary>
    MultipleOfChanged,

    /// <summary>A declared property became required. Breaking: documents without it were valid.</summary>
    RequiredAttributeAdded,

    /// <summary>A declared property with a <c>default</c> became required. Compatible: the default fills it in.</summary>
    RequiredAttributeWithDefaultAdded,

    /// <summary>A property is no longer required. Compatible.</summary>
    RequiredAttributeRemoved,

    /// <summary><c>maxProperties</c> was added. Breaking.</summary>
    MaxPropertiesAdded,

    /// <summary><c>maxProperties</c> was removed. Compatible.</summary>
    MaxPropertiesRemoved,

    /// <summary><c>maxProperties</c> grew. Compatible.</summary>
    MaxPropertiesIncreased,

    /// <summary><c>maxProperties</c> shrank. Breaking.</summary>
    MaxPropertiesDecreased,

    /// <summary><c>minProperties</c> was added. Breaking.</summary>
    MinPropertiesAdded,

    /// <summary><c>minProperties</c> was removed. Compatible.</summary>
    MinPropertiesRemoved,

    /// <summary><c>minProperties</c> grew. Breaking.</summary>
    MinPropertiesIncreased,

    /// <summary><c>minProperties</c> shrank. Compatible.</summary>
    MinPropertiesDecreased,

    /// <summary><c>additionalProperties: false</c> was lifted (to true, absent or a schema). Compatible.</summary>
    AdditionalPropertiesAdded,

    /// <summary><c>additionalProperties</c> became <c>false</c>. Breaking: undeclared properties are refused.</summary>
    AdditionalPropertiesRemoved,

    /// <summary>A schema for <c>additionalProperties</c> was replaced by <c>true</c> or removed. Compatible.</summary>
    AdditionalPropertiesExtended,

    /// <summary><c>additionalProperties</c> went from true or absent to a schema. Breaking.</summary>
    AdditionalPropertiesNarrowed,

    /// <summary>A property dependency (draft-07 <c>dependencies</c> array, <c>dependentRequired</c>) was added. Breaking.</summary>
    DependencyArrayAdded,

    /// <summary>A property dependency was removed. Compatible.</summary>
    DependencyArrayRemoved,

    /// <summary>A property dependency requires more properties. Breaking.</summary>
    DependencyArrayExtended,

    /// <summary>A property dependency requires fewer properties. Compatible.</summary>
    DependencyArrayNarrowed,

    /// <summary>A property dependency requires other properties. Breaking.</summary>
    DependencyArrayChanged,

    /// <summary>A schema dependency (draft-07 <c>dependencies</c> schema, <c>dependentSchemas</c>) was added. Breaking.</summary>
    DependencySchemaAdded,

    /// <summary>A schema dependency was removed. Compatible.</summary>
    DependencySchemaRemoved,

    /// <summary>A required property was added to an open content model. Breaking (Confluent 8).</summary>
    RequiredPropertyAddedToOpenContentModel,

    /// <summary>A required property with a default was added to an open content model. Breaking (Confluent 8).</summary>
    RequiredPropertyWithDefaultAddedToOpenContentModel,

    /// <summary>An optional property was added to an open content model. Breaking (Confluent 8): old data may hold it with any value.</summary>
    OptionalPropertyAddedToOpenContentModel,

    /// <summary>A property whose schema accepts anything (<c>{}</c> or <c>true</c>) was added to an open content model. Compatible.</summary>
    PropertyWithEmptySchemaAddedToOpenContentModel,

    /// <summary>A required property without a default was added to a closed or partially open content model. Breaking.</summary>
    RequiredPropertyAddedToUnopenContentModel,

    /// <summary>A required property with a default was added to a closed or partially open content model. Compatible.</summary>
    RequiredPropertyWithDefaultAddedToUnopenContentModel,

    /// <summary>An optional property was added to a closed or partially open content model. Compatible.</summary>
    OptionalPropertyAddedToUnopenContentModel,

    /// <summary>A property was removed and the updated content model is open. Compatible: the open model accepts it still.</summary>
    PropertyRemovedFromOpenContentModel,

    /// <summary>A property declared <c>false</c> was removed from a closed content model. Compatible: it never occurred.</summary>
    PropertyWithFalseRemovedFromClosedContentModel,

    /// <summary>A property was removed and the updated content model is closed. Breaking: old data holding it is refused.</summary>
    PropertyRemovedFromClosedContentModel,

    /// <summary>A removed property is still accepted by the updated partially open model. Compatible.</summary>
    PropertyRemovedIsCoveredByPartiallyOpenContentModel,

    /// <summary>A removed property is not accepted by the updated partially open model. Breaking.</summary>
    PropertyRemovedNotCoveredByPartiallyOpenContentModel,

    /// <summary>An added property accepts what the original partially open model accepted for that name. Compatible.</summary>
    PropertyAddedIsCoveredByPartiallyOpenContentModel,

    /// <summary>An added property refuses some of what the original partially open model accepted for that name. Breaking.</summary>
    PropertyAddedNotCoveredByPartiallyOpenContentModel,

    /// <summary><c>unevaluatedProperties: false</c> was lifted. Compatible.</summary>
    UnevaluatedPropertiesAdded,

    /// <summary><c>unevaluatedProperties</c> became <c>false</c>. Breaking.</summary>
    UnevaluatedPropertiesRemoved,

    /// <summary>A schema for <c>unevaluatedProperties</c> was replaced by <c>true</c> or removed. Compatible.</summary>
    UnevaluatedPropertiesExtended,

    /// <summary><c>unevaluatedProperties</c> went from true or absent to a schema. Breaking.</summary>
    UnevaluatedPropertiesNarrowed,

    /// <summary><c>maxItems</c> was added. Breaking.</summary>
    MaxItemsAdded,

    /// <summary><c>maxItems</c> was removed. Compatible.</summary>
    MaxItemsRemoved,

    /// <summary><c>maxItems</c> grew. Compatible.</summary>
    MaxItemsIncreased,

    /// <summary><c>maxItems</c> shrank. Breaking.</summary>
    MaxItemsDecreased,

    /// <summary><c>minItems</c> was added. Breaking.</summary>
    MinItemsAdded,

    /// <summary><c>minItems</c> was removed. Compatible.</summary>
    MinItemsRemoved,

    /// <summary><c>minItems</c> grew. Breaking.</summary>
    MinItemsIncreased,

    /// <summary><c>minItems</c> shrank. Compatible.</summary>
    MinItemsDecreased,

    /// <summary><c>maxContains</c> was added. Breaking.</summary>
    MaxContainsAdded,

    /// <summary><c>maxContains</c> was removed. Compatible.</summary>
    MaxContainsRemoved,

    /// <summary><c>maxContains</c> grew. Compatible.</summary>
    MaxContainsIncreased,

    /// <summary><c>maxContains</c> shrank. Breaking.</summary>
    MaxContainsDecreased,

    /// <summary><c>minContains</c> was added. Breaking.</summary>
    MinContainsAdded,

    /// <summary><c>minContains</c> was removed. Compatible.</summary>
    MinContainsRemoved,

    /// <summary><c>minContains</c> grew. Breaking.</summary>
    MinContainsIncreased,

    /// <summary><c>minContains</c> shrank. Compatible.</summary>
    MinContainsDecreased,

    /// <summary><c>uniqueItems: true</c> was added. Breaking.</summary>
    UniqueItemsAdded,

    /// <summary><c>uniqueItems: true</c> was removed. Compatible.</summary>
    UniqueItemsRemoved,

    /// <summary>Additional items were forbidden and no longer are. Compatible.</summary>
    AdditionalItemsAdded,

    /// <summary>Additional items became forbidden. Breaking.</summary>
    AdditionalItemsRemoved,

    /// <summary>A schema for additional items was replaced by <c>true</c> or removed. Compatible.</summary>
    AdditionalItemsExtended,

    /// <summary>Additional items went from free to a schema. Breaking.</summary>
    AdditionalItemsNarrowed,

    /// <summary><c>unevaluatedItems: false</c> was lifted. Compatible.</summary>
    UnevaluatedItemsAdded,

    /// <summary><c>unevaluatedItems</c> became <c>false</c>. Breaking.</summary>
    UnevaluatedItemsRemoved,

    /// <summary>A schema for <c>unevaluatedItems</c> was replaced by <c>true</c> or removed. Compatible.</summary>
    UnevaluatedItemsExtended,

    /// <summary><c>unevaluatedItems</c> went from true or absent to a schema. Breaking.</summary>
    UnevaluatedItemsNarrowed,

    /// <summary>A tuple item was added to an open tuple. Breaking: old data may hold any value at that position.</summary>
    ItemAddedToOpenContentModel,

    /// <summary>A tuple item accepting anything was added to an open tuple. Compatible.</summary>
    ItemWithEmptySchemaAddedToOpenContentModel,

    /// <summary>A tuple item was added to a closed tuple. Compatible: old data never reached that position.</summary>
    ItemAddedToClosedContentModel,

    /// <summary>A tuple item was removed and the updated tuple is open. Compatible.</summary>
    ItemRemovedFromOpenContentModel,

    /// <summary>A tuple item declared <c>false</c> was removed from a closed tuple. Compatible.</summary>
    ItemWithFalseRemovedFromClosedContentModel,

    /// <summary>A tuple item was removed and the updated tuple is closed. Breaking.</summary>
    ItemRemovedFromClosedContentModel,

    /// <summary>A removed tuple item is still accepted by the updated partially open tuple. Compatible.</summary>
    ItemRemovedIsCoveredByPartiallyOpenContentModel,

    /// <summary>A removed tuple item is not accepted by the updated partially open tuple. Breaking.</summary>
    ItemRemovedNotCoveredByPartiallyOpenContentModel,

    /// <summary>An added tuple item accepts what the original partially open tuple accepted there. Compatible.</summary>
    ItemAddedIsCoveredByPartiallyOpenContentModel,

    /// <summary>An added tuple item refuses some of what the original partially open tuple accepted there. Breaking.</summary>
    ItemAddedNotCoveredByPartiallyOpenContentModel,

    /// <summary>The <c>enum</c> gained values and lost none. Compatible.</summary>
    EnumArrayExtended,

    /// <summary>The <c>enum</c> lost values and gained none. Breaking.</summary>
    EnumArrayNarrowed,

    /// <summary>The <c>enum</c> lost some values and gained others, or the <c>const</c> changed. Breaking.</summary>
    EnumArrayChanged,

    /// <summary>
    /// The combination became a looser one: to <c>anyOf</c>, or a single-branch combination to <c>oneOf</c> or
    /// (from a single-branch <c>anyOf</c>/<c>oneOf</c>) to a single-branch <c>allOf</c>. Compatible.
    /// </summary>
    CombinedTypeExtended,

    /// <summary>The combination changed between <c>allOf</c>, <c>anyOf</c> and <c>oneOf</c> otherwise. Breaking.</summary>
    CombinedTypeChanged,

    /// <summary>An <c>allOf</c> gained a branch. Breaking: one more schema to satisfy.</summary>
    ProductTypeExtended,

    /// <summary>An <c>allOf</c> lost a branch, or a non-combined schema replaced an <c>allOf</c> whose branch it matches. Compatible.</summary>
    ProductTypeNarrowed,

    /// <summary>A <c>oneOf</c>/<c>anyOf</c> gained a branch, or became one of its branches' union. Compatible.</summary>
    SumTypeExtended,

    /// <summary>A <c>oneOf</c>/<c>anyOf</c> lost a branch. Breaking.</summary>
    SumTypeNarrowed,

    /// <summary>The branches of a combination cannot be paired so each old branch is read by a new one. Breaking.</summary>
    CombinedTypeSubschemasChanged,

    /// <summary>The schema under <c>not</c> now matches more (so the whole accepts less). Breaking.</summary>
    NotTypeExtended,

    /// <summary>The schema under <c>not</c> now matches less (so the whole accepts more). Compatible.</summary>
    NotTypeNarrowed,
}
