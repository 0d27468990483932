using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Cairn.Messaging.Routing;
using Cairn.Schemas;

namespace Cairn.Tests.Schemas.AsyncApi;

public sealed class AsyncApiGeneratorTests
{
    private sealed record OrderPlacedV1(string OrderId, decimal Total);

    private sealed record OrderPlacedV2(string OrderId, decimal Total, string Country);

    private sealed record OrderCancelledV1(string OrderId);

    private sealed record OrderCancelledV2(string OrderId, string Reason);

    private const string DutchRule = """{"type": ["order.placed"], "data": {"country": ["NL"]}}""";
    private const string CancelledRule = """{"type": [{"suffix": ".cancelled"}]}""";

    internal static JsonObject SchemaOf<T>(string? draft = null)
    {
        var schema = (JsonObject)JsonSchemaExporter.GetJsonSchemaAsNode(JsonSerializerOptions.Web, typeof(T));
        if (draft is not null)
        {
            schema["$schema"] = draft;
        }

        return schema;
    }

    internal static List<RegisteredSchema> OrderSchemas() =>
    [
        new("order.placed", 1, SchemaOf<OrderPlacedV1>()),
        new("order.placed", 2, SchemaOf<OrderPlacedV2>("https://json-schema.org/draft/2020-12/schema")),
        // One draft-07 document, so the spec's draft-07 branch of the multi-format schema is checked too.
        new("order.cancelled", 1, SchemaOf<OrderCancelledV1>("http://json-schema.org/draft-07/schema#")),
        new("order.cancelled", 2, SchemaOf<OrderCancelledV2>()),
    ];

    /// <summary>
    /// An order service: appended order events are routed to a topic; two subscriptions with filter rules copy them
    /// into two queues, each with a consumer; invoices go to a FIFO queue whose name AsyncAPI keys cannot take.
    /// </summary>
    private static AsyncApiInput Orders() => new()
    {
        Title = "Orders",
        Version = "2.1.0",
        Description = "Takes orders and tells the world.",
        Source = "urn:cairn:orders",
        Topics = ["orders"],
        Queues =
        [
            new QueueDefinition("dutch-orders"),
            new QueueDefinition("cancellations") { MaxReceiveCount = 3 },
            new QueueDefinition("billing:eu") { Fifo = true, Lease = TimeSpan.FromMinutes(2) },
        ],
        Subscriptions =
        [
            new TopicSubscription("orders", "dutch", "dutch-orders", FilterRule.Parse(DutchRule)),
            new TopicSubscription("orders", "cancellations", "cancellations", FilterRule.Parse(CancelledRule)),
        ],
        Routes = [new EventRoute("orders-out", EventFilter.ForCategory("order"), "orders")],
        Consumers =
        [
            new AsyncApiConsumer("dutch-orders", "dutch-orders", ["order.placed"]),
            new AsyncApiConsumer("cancellations", "cancellations"),
        ],
        Sends = [new AsyncApiSend("invoices", AsyncApiDestination.Queue("billing:eu"), ["billing.invoice"])],
        EventTypes = ["order.cancelled", "order.placed"],
        Schemas = OrderSchemas(),
    };

    private static List<string> Keys(JsonNode? map) => [.. ((JsonObject)map!).Select(p => p.Key)];

    private static List<string> Refs(JsonNode? array) => [.. ((JsonArray)array!).Select(r => (string)r!["$ref"]!)];

    [Fact]
    public void the_document_of_an_order_service_is_valid_against_the_asyncapi_3_0_0_schema()
    {
        var document = AsyncApiGenerator.Generate(Orders());
        var errors = AsyncApiSpec.Errors(document);
        Assert.True(errors.Length == 0, "The generated document breaks the AsyncAPI 3.0.0 schema:\n" + errors + "\n" + AsyncApiGenerator.ToJson(document));
    }

    [Fact]
    public void the_validation_catches_a_document_that_breaks_the_schema()
    {
        var document = AsyncApiGenerator.Generate(Orders());
        ((JsonObject)document["info"]!).Remove("version");
        document["operations"]!["route.orders-out"]!["action"] = "publish";
        var errors = AsyncApiSpec.Errors(document);
        Assert.Contains("/info", errors, StringComparison.Ordinal);
        Assert.Contains("/operations/route.orders-out/action", errors, StringComparison.Ordinal);
    }

    [Fact]
    public void topics_and_queues_are_channels_addressed_by_their_names_with_the_messages_that_reach_them()
    {
        var document = AsyncApiGenerator.Generate(Orders());
        Assert.Equal("3.0.0", (string)document["asyncapi"]!);
        Assert.Equal("Orders", (string)document["info"]!["title"]!);
        Assert.Equal("2.1.0", (string)document["info"]!["version"]!);
        Assert.Equal("urn:cairn:orders", (string)document["info"]!["x-cairn-source"]!);

        var channels = document["channels"]!;
        Assert.Equal(["queue.billing_3Aeu", "queue.cancellations", "queue.dutch-orders", "topic.orders"], Keys(channels));
        Assert.Equal("orders", (string)channels["topic.orders"]!["address"]!);
        Assert.Equal("billing:eu", (string)channels["queue.billing_3Aeu"]!["address"]!);

        // The route chooses by category, so the topic may carry every known event type, in each registered version.
        Assert.Equal(["order.cancelled.v1", "order.cancelled.v2", "order.placed.v1", "order.placed.v2"], Keys(channels["topic.orders"]!["messages"]));
        Assert.Equal("#/components/messages/order.placed.v2", (string)channels["topic.orders"]!["messages"]!["order.placed.v2"]!["$ref"]!);

        // Each subscription's rule decides what its queue gets: an exact type, and a suffix.
        Assert.Equal(["order.placed.v1", "order.placed.v2"], Keys(channels["queue.dutch-orders"]!["messages"]));
        Assert.Equal(["order.cancelled.v1", "order.cancelled.v2"], Keys(channels["queue.cancellations"]!["messages"]));
        Assert.Equal(["billing.invoice.unversioned"], Keys(channels["queue.billing_3Aeu"]!["messages"]));

        var subscriptions = channels["topic.orders"]!["x-cairn-subscriptions"]!;
        Assert.Equal(["cancellations", "dutch"], Keys(subscriptions));
        Assert.Equal("dutch-orders", (string)subscriptions["dutch"]!["queue"]!);
        Assert.Equal("queue.dutch-orders", (string)subscriptions["dutch"]!["channel"]!);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(DutchRule), subscriptions["dutch"]!["x-cairn-filter"]));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(CancelledRule), subscriptions["cancellations"]!["x-cairn-filter"]));

        var billing = channels["queue.billing_3Aeu"]!["x-cairn-queue"]!;
        Assert.True((bool)billing["fifo"]!);
        Assert.Equal("PT2M", (string)billing["lease"]!);
        Assert.Equal(3, (int)channels["queue.cancellations"]!["x-cairn-queue"]!["maxReceiveCount"]!);
    }

    [Fact]
    public void routes_and_sends_are_send_operations_and_consumers_receive_operations()
    {
        var operations = AsyncApiGenerator.Generate(Orders())["operations"]!;
        Assert.Equal(["consumer.cancellations", "consumer.dutch-orders", "route.orders-out", "send.invoices"], Keys(operations));

        var route = operations["route.orders-out"]!;
        Assert.Equal("send", (string)route["action"]!);
        Assert.Equal("#/channels/topic.orders", (string)route["channel"]!["$ref"]!);
        Assert.Equal(
            ["#/channels/topic.orders/messages/order.cancelled.v1", "#/channels/topic.orders/messages/order.cancelled.v2",
             "#/channels/topic.orders/messages/order.placed.v1", "#/channels/topic.orders/messages/order.placed.v2"],
            Refs(route["messages"]));
        Assert.Equal("order", (string)route["x-cairn-event-filter"]!["category"]!);

        var dutch = operations["consumer.dutch-orders"]!;
        Assert.Equal("receive", (string)dutch["action"]!);
        Assert.Equal("#/channels/queue.dutch-orders", (string)dutch["channel"]!["$ref"]!);
        Assert.Equal(["#/channels/queue.dutch-orders/messages/order.placed.v1", "#/channels/queue.dutch-orders/messages/order.placed.v2"], Refs(dutch["messages"]));

        // A consumer whose message types are not known takes whatever its queue holds: no list.
        Assert.Null(operations["consumer.cancellations"]!["messages"]);

        var invoices = operations["send.invoices"]!;
        Assert.Equal("send", (string)invoices["action"]!);
        Assert.Equal(["#/channels/queue.billing_3Aeu/messages/billing.invoice.unversioned"], Refs(invoices["messages"]));
    }

    [Fact]
    public void each_version_of_an_event_type_is_a_message_with_its_schema_and_the_envelope_as_headers()
    {
        var schemas = OrderSchemas();
        var components = AsyncApiGenerator.Generate(Orders())["components"]!;
        Assert.Equal(
            ["billing.invoice.unversioned", "order.cancelled.v1", "order.cancelled.v2", "order.placed.v1", "order.placed.v2"],
            Keys(components["messages"]));
        Assert.Equal(
            ["cairn.envelope", "order.cancelled.v1", "order.cancelled.v2", "order.placed.v1", "order.placed.v2"],
            Keys(components["schemas"]));

        var placed = components["messages"]!["order.placed.v2"]!;
        Assert.Equal("order.placed", (string)placed["name"]!);
        Assert.Equal("application/json", (string)placed["contentType"]!);
        Assert.Equal("#/components/schemas/order.placed.v2", (string)placed["payload"]!["$ref"]!);
        Assert.Equal("#/components/correlationIds/cairn.correlationid", (string)placed["correlationId"]!["$ref"]!);
        Assert.True((bool)placed["x-cairn-latest"]!);
        Assert.False((bool)components["messages"]!["order.placed.v1"]!["x-cairn-latest"]!);

        // The envelope's attributes are the headers; the type and the version's dataschema tell the versions apart.
        var headers = (JsonArray)placed["headers"]!["allOf"]!;
        Assert.Equal("#/components/schemas/cairn.envelope", (string)headers[0]!["$ref"]!);
        Assert.Equal("order.placed", (string)headers[1]!["properties"]!["type"]!["const"]!);
        Assert.Equal("urn:cairn:schema:order.placed:2", (string)headers[1]!["properties"]!["dataschema"]!["const"]!);
        Assert.Equal(["dataschema"], ((JsonArray)headers[1]!["required"]!).Select(n => (string)n!));
        // Version 1 may come without a dataschema: Cairn reads such an event as version 1.
        Assert.Null(components["messages"]!["order.placed.v1"]!["headers"]!["allOf"]![1]!["required"]);

        var envelope = components["schemas"]!["cairn.envelope"]!["properties"]!;
        foreach (var attribute in new[] { "id", "source", "type", "time", "subject", "dataschema", "correlationid", "causationid", "traceparent" })
        {
            Assert.NotNull(envelope[attribute]);
        }

        Assert.Equal("$message.header#/correlationid", (string)components["correlationIds"]!["cairn.correlationid"]!["location"]!);

        // Each registered document is the payload as given, under its draft's schema format.
        var v2 = components["schemas"]!["order.placed.v2"]!;
        Assert.Equal("application/schema+json;version=2020-12", (string)v2["schemaFormat"]!);
        Assert.True(JsonNode.DeepEquals(schemas[1].Schema, v2["schema"]));
        Assert.Equal("application/schema+json;version=2020-12", (string)components["schemas"]!["order.placed.v1"]!["schemaFormat"]!);
        Assert.Equal("application/schema+json;version=draft-07", (string)components["schemas"]!["order.cancelled.v1"]!["schemaFormat"]!);

        // A type with no registered schema has no payload schema: any JSON.
        var invoice = components["messages"]!["billing.invoice.unversioned"]!;
        Assert.Null(invoice["payload"]);
        Assert.Equal("billing.invoice", (string)invoice["name"]!);
    }

    [Fact]
    public void every_reference_resolves_and_every_component_key_is_one_asyncapi_allows()
    {
        var document = AsyncApiGenerator.Generate(Orders());
        foreach (var (_, map) in (JsonObject)document["components"]!)
        {
            foreach (var (key, _) in (JsonObject)map!)
            {
                Assert.Matches(AsyncApiSpec.ComponentKey, key);
            }
        }

        var refs = new List<string>();
        Collect(document, refs);
        Assert.NotEmpty(refs);
        foreach (var pointer in refs)
        {
            Assert.StartsWith("#/", pointer, StringComparison.Ordinal);
            JsonNode? target = document;
            foreach (var part in pointer[2..].Split('/'))
            {
                target = target?[part.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)];
            }

            Assert.True(target is not null, $"{pointer} does not resolve");
        }

        // An operation's messages are messages of its own channel.
        foreach (var (id, operation) in (JsonObject)document["operations"]!)
        {
            var channel = (string)operation!["channel"]!["$ref"]!;
            foreach (var message in operation["messages"] is JsonArray list ? Refs(list) : [])
            {
                Assert.True(message.StartsWith(channel + "/messages/", StringComparison.Ordinal), $"{id} lists {message}, outside {channel}");
            }
        }

        static void Collect(JsonNode? node, List<string> refs)
        {
            switch (node)
            {
                case JsonObject o:
                    foreach (var (key, value) in o)
                    {
                        if (key == "$ref" && value is JsonValue v && v.TryGetValue<string>(out var pointer))
                        {
                            refs.Add(pointer);
                        }
                        else if (!(key == "schema" && o.ContainsKey("schemaFormat")))
                        {
                            // A registered JSON Schema document keeps its own references, resolved within it.
                            Collect(value, refs);
                        }
                    }

                    break;
                case JsonArray a:
                    foreach (var item in a)
                    {
                        Collect(item, refs);
                    }

                    break;
            }
        }
    }

    [Fact]
    public void generating_twice_gives_byte_identical_json_whatever_the_order_of_the_input()
    {
        var input = Orders();
        var first = AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(input));
        var second = AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(input));
        Assert.Equal(first, second);

        var shuffled = input with
        {
            Queues = [.. input.Queues.Reverse()],
            Subscriptions = [.. input.Subscriptions.Reverse()],
            Consumers = [.. input.Consumers.Reverse()],
            EventTypes = [.. input.EventTypes.Reverse()],
            Schemas = [.. input.Schemas.Reverse()],
        };
        Assert.Equal(first, AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(shuffled)));

        using var stream = new MemoryStream();
        AsyncApiGenerator.WriteTo(AsyncApiGenerator.Generate(input), stream);
        Assert.Equal(first, System.Text.Encoding.UTF8.GetString(stream.ToArray()));
        Assert.DoesNotContain("\r", first, StringComparison.Ordinal);
        Assert.Contains("\"schemaFormat\": \"application/schema+json;version=2020-12\"", first, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("order.placed", "order.placed")]
    [InlineData("billing:eu", "billing_3Aeu")]
    [InlineData("snake_case", "snake__case")]
    [InlineData("a b/c", "a_20b_2Fc")]
    [InlineData("café", "caf_C3_A9")]
    [InlineData("rocket\U0001F680", "rocket_F0_9F_9A_80")]
    public void names_are_escaped_into_the_characters_of_asyncapi_keys(string name, string key)
    {
        Assert.Equal(key, AsyncApiKeys.Escape(name));
        Assert.Matches(AsyncApiSpec.ComponentKey, key);
    }

    [Fact]
    public void the_escape_never_gives_two_names_one_key()
    {
        // Attributes cannot hold a lone surrogate, so these are made here.
        var lone = new string((char)0xD800, 1);
        Assert.Equal("lone_UD800", AsyncApiKeys.Escape("lone" + lone));
        string[] names = ["a:", "a_3A", "a__3A", "a_", "a__", "a.b", "a_2Eb", "x.v1", "x", "a:b", "a_b", "a-b", lone, new string((char)0xDBFF, 1), "_UD800", "\uFFFD"];
        Assert.Equal(names.Length, names.Select(AsyncApiKeys.Escape).Distinct(StringComparer.Ordinal).Count());
        Assert.NotEqual(AsyncApiKeys.Version("x.v1", 2), AsyncApiKeys.Version("x", 12));
        Assert.NotEqual(AsyncApiKeys.Unversioned("x.v1"), AsyncApiKeys.Version("x", 1));
    }

    [Fact]
    public void types_and_queues_whose_names_keys_cannot_take_still_make_a_valid_document()
    {
        var input = new AsyncApiInput
        {
            Title = "Odd names",
            Queues = [new QueueDefinition("in:box_1")],
            Consumers = [new AsyncApiConsumer("in:box_1", "in:box_1", ["légacy/thing#1"])],
            Schemas = [new RegisteredSchema("légacy/thing#1", 1, SchemaOf<OrderCancelledV1>())],
        };
        var document = AsyncApiGenerator.Generate(input);
        var errors = AsyncApiSpec.Errors(document);
        Assert.True(errors.Length == 0, errors);
        var key = AsyncApiKeys.Version("légacy/thing#1", 1);
        Assert.Equal("l_C3_A9gacy_2Fthing_231.v1", key);
        Assert.NotNull(document["channels"]!["queue.in_3Abox__1"]!["messages"]![key]);
        Assert.Equal("légacy/thing#1", (string)document["components"]!["messages"]![key]!["name"]!);
        Assert.NotNull(document["operations"]!["consumer.in_3Abox__1"]);
    }

    [Fact]
    public void two_different_schemas_for_one_version_are_refused()
    {
        var input = Orders() with { Schemas = [.. OrderSchemas(), new RegisteredSchema("order.placed", 2, SchemaOf<OrderCancelledV2>())] };
        var error = Assert.Throws<AsyncApiDuplicateSchemaException>(() => AsyncApiGenerator.Generate(input));
        Assert.Equal("order.placed", error.EventType);
        Assert.Equal(2, error.Version);
    }

    [Fact]
    public void the_same_schema_given_twice_is_one_version()
    {
        var input = Orders() with { Schemas = [.. OrderSchemas(), new RegisteredSchema("order.placed", 2, SchemaOf<OrderPlacedV2>("https://json-schema.org/draft/2020-12/schema"))] };
        Assert.Equal(AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(Orders())), AsyncApiGenerator.ToJson(AsyncApiGenerator.Generate(input)));
    }

    [Fact]
    public void a_schema_in_a_draft_asyncapi_documents_cannot_name_is_refused_with_its_field()
    {
        var schema = SchemaOf<OrderPlacedV1>("http://json-schema.org/draft-04/schema#");
        var error = Assert.Throws<AsyncApiInputException>(() => AsyncApiGenerator.Generate(new AsyncApiInput { Title = "t", Schemas = [new RegisteredSchema("order.placed", 1, schema)] }));
        Assert.Equal("Schemas[0].Schema", error.Field);
        Assert.Contains("draft-04", error.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void bad_names_and_versions_are_refused_with_their_field()
    {
        var badType = Assert.Throws<AsyncApiInputException>(() => AsyncApiGenerator.Generate(new AsyncApiInput { Title = "t", Consumers = [new AsyncApiConsumer("c", "q", ["order placed"])] }));
        Assert.Equal("Consumers[0].MessageTypes[0]", badType.Field);

        var badVersion = Assert.Throws<AsyncApiInputException>(() => AsyncApiGenerator.Generate(new AsyncApiInput { Title = "t", Schemas = [new RegisteredSchema("order.placed", 0, new JsonObject())] }));
        Assert.Equal("Schemas[0].Version", badVersion.Field);

        var twice = Assert.Throws<AsyncApiInputException>(() => AsyncApiGenerator.Generate(new AsyncApiInput { Title = "t", Consumers = [new AsyncApiConsumer("c", "q"), new AsyncApiConsumer("c", "r")] }));
        Assert.Equal("Consumers[1]", twice.Field);

        Assert.Throws<AsyncApiInputException>(() => AsyncApiGenerator.Generate(new AsyncApiInput { Title = " " }));
    }

    [Fact]
    public void a_rule_on_the_type_lets_through_only_the_types_it_matches_even_from_an_open_topic()
    {
        var input = new AsyncApiInput
        {
            Title = "t",
            EventTypes = ["order.placed", "order.cancelled", "order.shipped"],
            Routes = [new EventRoute("all", EventFilter.All, "events")],
            Subscriptions =
            [
                new TopicSubscription("events", "or", "or-queue", FilterRule.Parse("""{"$or": [{"type": ["order.shipped"]}, {"type": [{"prefix": "order.c"}]}]}""")),
                new TopicSubscription("events", "named", "named-queue", FilterRule.Parse("""{"type": ["refund.issued"]}""")),
                new TopicSubscription("events", "any", "any-queue", FilterRule.Parse("""{"source": ["urn:x"]}""")),
                new TopicSubscription("events", "half", "half-queue", FilterRule.Parse("""{"$or": [{"type": ["order.shipped"]}, {"source": ["urn:x"]}]}""")),
            ],
        };
        var channels = AsyncApiGenerator.Generate(input)["channels"]!;
        Assert.Equal(["order.cancelled.unversioned", "order.shipped.unversioned"], Keys(channels["queue.or-queue"]!["messages"]));
        // A type the rule names can come from a topic fed by a route that chooses by category, even if unknown here.
        Assert.Equal(["refund.issued.unversioned"], Keys(channels["queue.named-queue"]!["messages"]));
        Assert.Equal(Keys(channels["topic.events"]!["messages"]), Keys(channels["queue.any-queue"]!["messages"]));
        Assert.Equal(Keys(channels["topic.events"]!["messages"]), Keys(channels["queue.half-queue"]!["messages"]));
    }

    [Fact]
    public void a_channel_nothing_known_reaches_lists_no_messages_and_its_operations_none()
    {
        var input = new AsyncApiInput
        {
            Title = "t",
            Routes = [new EventRoute("out", EventFilter.ForCategory("order"), "orders")],
            Consumers = [new AsyncApiConsumer("mailer", "mailer", [])],
        };
        var document = AsyncApiGenerator.Generate(input);
        Assert.True(AsyncApiSpec.Errors(document).Length == 0);
        Assert.Null(document["channels"]!["topic.orders"]!["messages"]);
        Assert.Null(document["operations"]!["route.out"]!["messages"]);
        Assert.Null(document["operations"]!["consumer.mailer"]!["messages"]);
        Assert.Contains("Not declared by this service", (string)document["channels"]!["queue.mailer"]!["description"]!, StringComparison.Ordinal);
    }
}
