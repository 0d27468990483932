using System.Text.Json.Nodes;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Cairn.Schemas;

namespace Cairn.Tests;

/// <summary>
/// What the generator embeds and parses again stays valid in the document: a payload schema's references, a rule as
/// deep as the broker takes, and one version given twice in two spellings.
/// </summary>
public sealed class AsyncApiEmbeddingTests
{
    /// <summary>A registered 2020-12 document as the registry accepts it: a named subschema in $defs, referenced by pointer.</summary>
    private static JsonObject MoneySchema() => JsonNode.Parse("""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$defs": { "money": { "type": "number" } },
          "type": "object",
          "properties": { "amount": { "$ref": "#/$defs/money" }, "fee": { "$ref": "#/$defs/money" } },
          "required": ["amount"]
        }
        """)!.AsObject();

    private static void CollectRefs(JsonNode? node, string at, List<(string At, string Ref)> refs)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (key, value) in o)
                {
                    if (key == "$ref" && value is JsonValue v && v.TryGetValue<string>(out var pointer))
                    {
                        refs.Add((at, pointer));
                    }
                    else
                    {
                        CollectRefs(value, at + "/" + key, refs);
                    }
                }

                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                {
                    CollectRefs(a[i], at + "/" + i, refs);
                }

                break;
        }
    }

    private static JsonNode? Resolve(JsonNode document, string pointer)
    {
        JsonNode? target = document;
        foreach (var part in pointer.Length <= 2 ? [] : pointer[2..].Split('/'))
        {
            target = target?[part.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)];
        }

        return target;
    }

    [Fact]
    public void the_refs_of_an_embedded_payload_schema_resolve_inside_the_asyncapi_document()
    {
        var input = new AsyncApiInput
        {
            Title = "Payments",
            Queues = [new QueueDefinition("payments")],
            Consumers = [new AsyncApiConsumer("payments", "payments", ["payment.taken"])],
            Schemas = [new RegisteredSchema("payment.taken", 1, MoneySchema())],
        };
        var document = AsyncApiGenerator.Generate(input);

        // A JSON Reference in an AsyncAPI document is resolved against the document (AsyncAPI 3.0, Reference Object;
        // JSON Schema 2020-12 §8.2: an embedded schema without $id has the enclosing document's base URI). Every $ref,
        // the payload's own included, must land on a node of the payload it belongs to.
        var refs = new List<(string At, string Ref)>();
        CollectRefs(document, "#", refs);
        var payloadRefs = refs.Where(r => r.At.StartsWith("#/components/schemas/payment.taken.v1/schema/", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, payloadRefs.Count);
        foreach (var (at, pointer) in payloadRefs)
        {
            Assert.True(Resolve(document, pointer) is not null, $"{at}/$ref is '{pointer}', which does not resolve in the document");
            Assert.True(pointer.StartsWith("#/components/schemas/payment.taken.v1/schema", StringComparison.Ordinal) || ((JsonObject)document["components"]!["schemas"]!["payment.taken.v1"]!["schema"]!).ContainsKey("$id"),
                $"{at}/$ref is '{pointer}': it points outside its schema, which has no $id of its own");
        }
    }

    [Fact]
    public void a_recursive_payload_schema_does_not_refer_to_the_whole_asyncapi_document()
    {
        // What JsonSchemaExporter (the registry's generator) writes for a record that holds a list of itself.
        var tree = JsonNode.Parse("""
            {"type":["object","null"],"properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#"}}},"required":["name","children"]}
            """)!.AsObject();
        var document = AsyncApiGenerator.Generate(new AsyncApiInput
        {
            Title = "Trees",
            Consumers = [new AsyncApiConsumer("trees", "trees", ["tree.grown"])],
            Schemas = [new RegisteredSchema("tree.grown", 1, tree)],
        });

        var schema = (JsonObject)document["components"]!["schemas"]!["tree.grown.v1"]!["schema"]!;
        var pointer = (string)schema["properties"]!["children"]!["items"]!["$ref"]!;
        // "#" resolved against the AsyncAPI document is the document itself ({"asyncapi": "3.0.0", ...}), not the schema.
        Assert.True(ReferenceEquals(Resolve(document, pointer), schema) || schema.ContainsKey("$id"),
            $"the schema's recursive reference '{pointer}' resolves to the AsyncAPI document's root, not to the payload schema");
    }

    [Fact]
    public void a_subscription_rule_as_deep_as_the_broker_accepts_is_described_not_a_json_reader_exception()
    {
        // FilterRule accepts rules two levels deeper than data (JsonPayload.MaxDepth + 2 = 66), so that a rule reaches
        // the deepest data a message carries; this one is 65 levels deep.
        var deep = "{\"data\":" + string.Concat(Enumerable.Repeat("{\"a\":", 63)) + "[\"x\"]" + new string('}', 64);
        var rule = FilterRule.Parse(deep);
        var input = new AsyncApiInput
        {
            Title = "Deep",
            Topics = ["events"],
            Sends = [new AsyncApiSend("out", AsyncApiDestination.Topic("events"), ["order.placed"])],
            Subscriptions = [new TopicSubscription("events", "deep", "deep-queue", rule)],
        };

        var document = AsyncApiGenerator.Generate(input);

        Assert.NotNull(document["channels"]!["topic.events"]!["x-cairn-subscriptions"]!["deep"]!["x-cairn-filter"]);
    }

    [Fact]
    public void the_document_does_not_depend_on_which_of_two_equal_copies_of_a_schema_comes_first()
    {
        // The same version given twice, as two registries (or a registry and a snapshot) may write it: equal as JSON
        // (JsonNode.DeepEquals ignores property order and number spelling), so the generator accepts both as one version.
        var first = JsonNode.Parse("""{"type":"object","properties":{"total":{"type":"number","minimum":0}},"required":["total"]}""")!.AsObject();
        var second = JsonNode.Parse("""{"required":["total"],"properties":{"total":{"minimum":0.0,"type":"number"}},"type":"object"}""")!.AsObject();
        var input = new AsyncApiInput
        {
            Title = "Orders",
            Consumers = [new AsyncApiConsumer("orders", "orders", ["order.placed"])],
            Schemas = [new RegisteredSchema("order.placed", 1, first), new RegisteredSchema("order.placed", 1, second)],
        };
        var reversed = input with { Schemas = [.. input.Schemas.Reverse()] };

                Assert.Equal(AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(input)), AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(reversed)));
    }

    // Rebased only where a schema is: data that happens to hold a "$ref" (a const, a default) is left as it is, and so
    // is a schema with an $id of its own, whose references resolve against that $id.
    [Fact]
    public void only_the_references_of_schemas_are_rebased_and_a_schema_with_an_id_keeps_its_own()
    {
        var withData = JsonNode.Parse("""
            {"type":"object","properties":{"default":{"$ref":"#/$defs/money"},"link":{"const":{"$ref":"#/elsewhere"}}},"$defs":{"money":{"type":"number"}}}
            """)!.AsObject();
        var withId = JsonNode.Parse("""
            {"$id":"https://example.com/fee.json","type":"object","properties":{"fee":{"$ref":"#/$defs/money"}},"$defs":{"money":{"type":"number"}}}
            """)!.AsObject();
        var document = AsyncApiGenerator.Generate(new AsyncApiInput
        {
            Title = "Fees",
            Consumers = [new AsyncApiConsumer("fees", "fees", ["fee.taken", "fee.waived"])],
            Schemas = [new RegisteredSchema("fee.taken", 1, withData), new RegisteredSchema("fee.waived", 1, withId)],
        });

        var taken = document["components"]!["schemas"]!["fee.taken.v1"]!["schema"]!;
        Assert.Equal("#/components/schemas/fee.taken.v1/schema/$defs/money", (string)taken["properties"]!["default"]!["$ref"]!);
        Assert.Equal("#/elsewhere", (string)taken["properties"]!["link"]!["const"]!["$ref"]!);
        Assert.Equal("#/$defs/money", (string)document["components"]!["schemas"]!["fee.waived.v1"]!["schema"]!["properties"]!["fee"]!["$ref"]!);
    }

    private static JsonNode Generate(JsonObject schema) => AsyncApiGenerator.Generate(new AsyncApiInput
    {
        Title = "Orders",
        Consumers = [new AsyncApiConsumer("orders", "orders", ["order.placed"])],
        Schemas = [new RegisteredSchema("order.placed", 1, schema)],
    });

    [Fact]
    public void a_draft07_dependencies_schema_keyed_by_a_data_keyword_name_has_its_reference_rebased()
    {
        // draft-07 "dependencies" maps property names to schemas (or name arrays); a property may well be called "default".
        var schema = JsonNode.Parse("""
            {"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
             "properties":{"default":{"type":"boolean"},"limit":{"type":"number"}},
             "dependencies":{"default":{"properties":{"limit":{"$ref":"#/definitions/money"}}}},
             "definitions":{"money":{"type":"number","minimum":0}}}
            """)!.AsObject();
        JsonSchemaDocuments.Check("order.placed", 1, schema);

        var document = Generate(schema);

        var embedded = document["components"]!["schemas"]!["order.placed.v1"]!["schema"]!;
        var pointer = (string)embedded["dependencies"]!["default"]!["properties"]!["limit"]!["$ref"]!;
        Assert.True(Resolve(document, pointer) is not null, $"the dependency's $ref is '{pointer}', which resolves to nothing in the AsyncAPI document");
    }

    [Fact]
    public void a_draft07_root_id_that_is_only_an_anchor_does_not_stop_the_rebase()
    {
        // In draft-07 an "$id" of a bare fragment ("#order") is a plain-name anchor: it sets no base URI, so the
        // schema's "#/definitions/…" still resolve against the enclosing (AsyncAPI) document.
        var schema = JsonNode.Parse("""
            {"$schema":"http://json-schema.org/draft-07/schema#","$id":"#order","type":"object",
             "properties":{"amount":{"$ref":"#/definitions/money"}},
             "definitions":{"money":{"type":"number"}}}
            """)!.AsObject();

        var document = Generate(schema);

        var embedded = document["components"]!["schemas"]!["order.placed.v1"]!["schema"]!;
        var pointer = (string)embedded["properties"]!["amount"]!["$ref"]!;
        Assert.True(Resolve(document, pointer) is not null, $"the $ref is '{pointer}', which resolves to nothing in the AsyncAPI document");
    }
}
