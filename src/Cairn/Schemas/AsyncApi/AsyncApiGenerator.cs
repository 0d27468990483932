using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml;
using Cairn.Messaging;

namespace Cairn.Schemas;

/// <summary>
/// Describes a Cairn service as an AsyncAPI 3.0.0 document: a channel per queue and topic, an operation per route,
/// consumer, workflow step and send, a message per registered version of each event type with its JSON Schema as
/// payload and the CloudEvents envelope as headers. The output depends on the input only, with every map in ordinal
/// order, so the same input always gives the same bytes. <c>docs/asyncapi.md</c> has the mapping.
/// </summary>
public static partial class AsyncApiGenerator
{
    /// <summary>The AsyncAPI version of the documents made.</summary>
    public const string AsyncApiVersion = "3.0.0";

    /// <summary>The schema format of a draft-07 JSON Schema, as AsyncAPI 3.0 names it.</summary>
    public const string Draft07Format = "application/schema+json;version=draft-07";

    /// <summary>
    /// The schema format written for a 2020-12 JSON Schema. AsyncAPI 3.0 names no value for that draft; custom values
    /// are allowed, and this one follows the form of the draft-07 value.
    /// </summary>
    public const string Draft202012Format = "application/schema+json;version=2020-12";

    private static readonly JsonWriterOptions Indented = new()
    {
        Indented = true,
        NewLine = "\n",
        // The document is JSON for tools, not HTML: '+' in media types and non-ASCII names stay readable.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Makes the AsyncAPI document of a service.</summary>
    /// <exception cref="AsyncApiInputException">The input breaks a rule (a missing name, an invalid type name, an unknown JSON Schema draft, two operations with one id).</exception>
    /// <exception cref="AsyncApiDuplicateSchemaException">Two different documents are given for one version of a type.</exception>
    public static JsonObject Generate(AsyncApiInput input)
    {
        var model = Resolve(input);
        var document = new JsonObject
        {
            ["asyncapi"] = AsyncApiVersion,
            ["info"] = Info(model.Input),
            ["defaultContentType"] = "application/json",
        };

        var channels = new JsonObject();
        foreach (var channel in model.Channels.Values)
        {
            channels[channel.Id] = ChannelJson(model, channel);
        }

        var operations = new JsonObject();
        foreach (var operation in model.Operations.Values)
        {
            operations[operation.Id] = OperationJson(model, operation);
        }

        document["channels"] = channels;
        document["operations"] = operations;
        document["components"] = Components(model);
        return document;
    }

    /// <summary>Writes a document as indented UTF-8 JSON, with <c>\n</c> line ends.</summary>
    public static void WriteTo(JsonObject document, Stream utf8Json)
    {
        ArgumentNullException.ThrowIfNull(document);
        ArgumentNullException.ThrowIfNull(utf8Json);
        using var writer = new Utf8JsonWriter(utf8Json, Indented);
        document.WriteTo(writer);
    }

    /// <summary>A document as indented JSON text, with <c>\n</c> line ends.</summary>
    public static string ToJson(JsonObject document)
    {
        using var buffer = new MemoryStream();
        WriteTo(document, buffer);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static JsonObject Info(AsyncApiInput input)
    {
        var info = new JsonObject
        {
            ["title"] = input.Title,
            ["version"] = input.Version,
        };
        if (input.Description is not null)
        {
            info["description"] = input.Description;
        }

        if (input.Source is not null)
        {
            info["x-cairn-source"] = input.Source;
        }

        return info;
    }

    private static JsonObject ChannelJson(Model model, Channel channel)
    {
        var queue = channel.Destination.Kind == AsyncApiChannelKind.Queue;
        var json = new JsonObject
        {
            ["address"] = channel.Destination.Name,
            ["title"] = (queue ? "Queue " : "Topic ") + channel.Destination.Name,
        };

        var notes = channel.Notes.ToList();
        if (!channel.Declared)
        {
            notes.Insert(0, "Not declared by this service: it is named by a route, a subscription, a consumer, a workflow or a send.");
        }

        if (notes.Count > 0)
        {
            json["description"] = string.Join("\n\n", notes);
        }

        if (channel.Types.Count > 0)
        {
            var messages = new JsonObject();
            foreach (var key in channel.Types.SelectMany(model.MessageKeys))
            {
                messages[key] = Ref("#/components/messages/" + key);
            }

            json["messages"] = messages;
        }

        if (channel.Queue is { } settings)
        {
            json["x-cairn-queue"] = QueueJson(settings);
        }

        if (channel.Subscriptions.Count > 0)
        {
            var subscriptions = new JsonObject();
            foreach (var (name, subscription) in channel.Subscriptions)
            {
                var entry = new JsonObject
                {
                    ["queue"] = subscription.Queue.Value,
                    ["channel"] = AsyncApiKeys.Channel(AsyncApiDestination.Queue(subscription.Queue)),
                };
                if (subscription.Rule is not null)
                {
                    entry["x-cairn-filter"] = subscription.Rule.ToJsonNode();
                }

                subscriptions[name] = entry;
            }

            json["x-cairn-subscriptions"] = subscriptions;
        }

        return json;
    }

    private static JsonObject QueueJson(QueueDefinition queue) => new()
    {
        ["fifo"] = queue.Fifo,
        ["maxReceiveCount"] = queue.MaxReceiveCount,
        ["lease"] = XmlConvert.ToString(queue.Lease),
        ["retention"] = XmlConvert.ToString(queue.Retention),
        ["maxMessageSize"] = queue.MaxMessageSize,
        ["deduplicationWindow"] = XmlConvert.ToString(queue.DeduplicationWindow),
        ["defaultDelay"] = XmlConvert.ToString(queue.DefaultDelay),
    };

    private static JsonObject OperationJson(Model model, Operation operation)
    {
        var json = new JsonObject
        {
            ["action"] = operation.Action,
            ["channel"] = Ref("#/channels/" + operation.Channel.Id),
            ["title"] = operation.Title,
            ["summary"] = operation.Summary,
        };

        // No list (rather than an empty one) when the types are unknown: the operation takes what its channel carries.
        if (operation.Types is { Count: > 0 })
        {
            json["messages"] = MessageRefs(model, operation.Channel, operation.Types);
        }

        if (operation.ReplyChannel is { } replyChannel)
        {
            json["reply"] = new JsonObject
            {
                ["channel"] = Ref("#/channels/" + replyChannel.Id),
                ["messages"] = MessageRefs(model, replyChannel, operation.ReplyTypes),
            };
        }

        foreach (var (key, value) in operation.Extensions ?? [])
        {
            json[key] = value?.DeepClone();
        }

        return json;
    }

    private static JsonArray MessageRefs(Model model, Channel channel, IEnumerable<string> types) =>
        new([.. types.Order(StringComparer.Ordinal).SelectMany(model.MessageKeys).Select(key => (JsonNode?)Ref($"#/channels/{channel.Id}/messages/{key}"))]);

    /// <summary>
    /// A copy of a registered schema as it sits at <c>components.schemas.&lt;key&gt;.schema</c>: its local references
    /// (<c>#</c>, <c>#/$defs/…</c>) rebased onto that place, since a reference in an AsyncAPI document is resolved
    /// against the document (as JSON Schema resolves one in a schema without an <c>$id</c> of its own, embedded in
    /// another document). A schema with an <c>$id</c> is a resource of its own, its references resolved against it.
    /// </summary>
    private static JsonNode Embedded(JsonNode document, string key)
    {
        var copy = document.DeepClone();
        // An $id of a fragment alone (draft-07's "#name") is an anchor: it sets no base of its own.
        if (copy is not JsonObject root || root["$id"] is not JsonValue id || !id.TryGetValue<string>(out var own) || own.StartsWith('#'))
        {
            Rebase(copy, $"#/components/schemas/{key}/schema", namesSchemas: false);
        }

        return copy;
    }

    /// <summary>
    /// Rewrites the local references of a schema (or, with <paramref name="namesSchemas"/>, of every schema an object
    /// maps names to, such as <c>properties</c>): not inside values that are data (<c>const</c>, <c>enum</c>,
    /// <c>default</c>, <c>examples</c>), whatever they hold. The keywords are those the registry's check of references reads.
    /// </summary>
    private static void Rebase(JsonNode? node, string at, bool namesSchemas)
    {
        switch (node)
        {
            case JsonObject map when namesSchemas:
                foreach (var (_, schema) in map)
                {
                    Rebase(schema, at, namesSchemas: false);
                }

                break;
            case JsonObject schema:
                foreach (var (keyword, value) in schema.ToList())
                {
                    if (keyword == "$ref")
                    {
                        if (value is JsonValue text && text.TryGetValue<string>(out var reference) && (reference == "#" || reference.StartsWith("#/", StringComparison.Ordinal)))
                        {
                            schema[keyword] = at + reference[1..];
                        }
                    }
                    else if (!JsonSchemaDocuments.DataKeywords.Contains(keyword))
                    {
                        Rebase(value, at, namesSchemas: JsonSchemaDocuments.SchemaMaps.Contains(keyword));
                    }
                }

                break;
            case JsonArray items:
                foreach (var item in items)
                {
                    Rebase(item, at, namesSchemas: false);
                }

                break;
        }
    }

    private static JsonObject Components(Model model)
    {
        var schemas = new JsonObject { [AsyncApiKeys.EnvelopeSchema] = EnvelopeSchema() };
        var messages = new JsonObject();
        foreach (var type in model.MessageTypes())
        {
            if (model.Schemas.TryGetValue(type, out var versions))
            {
                var latest = versions.Keys.Max();
                foreach (var (version, document) in versions)
                {
                    var key = AsyncApiKeys.Version(type, version);
                    schemas[key] = new JsonObject
                    {
                        ["schemaFormat"] = SchemaFormat(new RegisteredSchema(type, version, document), key),
                        ["schema"] = Embedded(document, key),
                    };
                    messages[key] = MessageJson(type, version, version == latest, key);
                }
            }
            else
            {
                messages[AsyncApiKeys.Unversioned(type)] = MessageJson(type, null, false, null);
            }
        }

        return new JsonObject
        {
            ["schemas"] = schemas,
            ["messages"] = messages,
            ["correlationIds"] = new JsonObject
            {
                [AsyncApiKeys.CorrelationId] = new JsonObject
                {
                    ["description"] = "The correlation id of the envelope: the id of the conversation the message belongs to, set by Cairn from the message being handled or, without one, the message's own id.",
                    ["location"] = "$message.header#/correlationid",
                },
            },
        };
    }

    private static JsonObject MessageJson(string type, int? version, bool latest, string? schemaKey)
    {
        var specific = new JsonObject { ["type"] = new JsonObject { ["const"] = type } };
        var required = new JsonArray();
        if (version is { } v)
        {
            var dataSchema = SchemaReference.Format(type, v);
            specific["dataschema"] = new JsonObject { ["const"] = dataSchema };
            if (v > 1)
            {
                // An envelope without a dataschema is read as version 1, so only later versions must name theirs.
                required.Add("dataschema");
            }
        }

        var own = new JsonObject { ["type"] = "object", ["properties"] = specific };
        if (required.Count > 0)
        {
            own["required"] = required;
        }

        var headers = new JsonObject { ["allOf"] = new JsonArray(Ref("#/components/schemas/" + AsyncApiKeys.EnvelopeSchema), own) };

        var json = new JsonObject
        {
            ["name"] = type,
            ["title"] = version is { } n ? string.Create(CultureInfo.InvariantCulture, $"{type} v{n}") : type,
            ["summary"] = version is { } m
                ? string.Create(CultureInfo.InvariantCulture, $"Version {m} of {type}{(latest ? ", the latest" : "")}; its envelope's dataschema is {SchemaReference.Format(type, m)}.")
                : $"{type}, with no registered schema: its payload is any JSON.",
            ["contentType"] = "application/json",
            ["headers"] = headers,
        };

        if (schemaKey is not null)
        {
            json["payload"] = Ref("#/components/schemas/" + schemaKey);
        }

        json["correlationId"] = Ref("#/components/correlationIds/" + AsyncApiKeys.CorrelationId);
        json["x-cairn-event-type"] = type;
        if (version is { } w)
        {
            json["x-cairn-schema-version"] = w;
            json["x-cairn-latest"] = latest;
        }

        return json;
    }

    /// <summary>The CloudEvents 1.0 attributes and extensions of Cairn's envelope, as the headers of every message.</summary>
    private static JsonObject EnvelopeSchema()
    {
        static JsonObject Text(string description, string? format = null)
        {
            var property = new JsonObject { ["type"] = "string", ["description"] = description };
            if (format is not null)
            {
                property["format"] = format;
            }

            return property;
        }

        return new JsonObject
        {
            ["type"] = "object",
            ["description"] = "The envelope of a Cairn message or event: CloudEvents 1.0 attributes and Cairn's extensions. Other entries are the message's metadata, extension attributes whose values are strings.",
            ["required"] = new JsonArray("specversion", "id", "type", "source", "time", "datacontenttype", "correlationid"),
            ["properties"] = new JsonObject
            {
                ["specversion"] = new JsonObject { ["const"] = "1.0", ["description"] = "The CloudEvents version." },
                ["id"] = Text("The message id (a version 7 GUID unless set); an event routed to a topic keeps its id, and consumers' inboxes recognise a repeat by it."),
                ["type"] = Text("The stable event type name, such as order.placed."),
                ["source"] = Text("Where the message comes from: the writing service's source option.", "uri-reference"),
                ["time"] = Text("The time of the commit that appended or sent it.", "date-time"),
                ["datacontenttype"] = Text("The content type of the data: application/json."),
                ["subject"] = Text("What the message is about; for an event routed from the log, its stream."),
                ["dataschema"] = Text("The schema version of the data, urn:cairn:schema:<type>:<version>; absent means version 1.", "uri"),
                ["correlationid"] = Text("The id of the conversation: the handled message's, else the message's own id."),
                ["causationid"] = Text("The id of the message whose handling sent this one."),
                ["traceparent"] = new JsonObject
                {
                    ["type"] = "string",
                    ["description"] = "The W3C trace context of the span that sent it.",
                    ["pattern"] = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                },
                ["cairnstream"] = Text("For an event routed from the log: its stream."),
                ["cairnposition"] = Text("For an event routed from the log: its global position, in decimal digits."),
            },
            ["additionalProperties"] = new JsonObject { ["type"] = "string" },
        };
    }

    private static JsonObject Ref(string pointer) => new() { ["$ref"] = pointer };
}
