using System.Globalization;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Routing;
using Cairn.Workflows;

namespace Cairn.Schemas;

public static partial class AsyncApiGenerator
{
    /// <summary>The type name of a workflow's durable timer, a delayed message to its own queue.</summary>
    private const string TimerType = "cairn.workflow.timer";

    /// <summary>The input, checked and resolved into channels with their message types, and operations.</summary>
    private sealed class Model
    {
        public required AsyncApiInput Input { get; init; }

        /// <summary>Each event type's schema documents by version, ascending.</summary>
        public SortedDictionary<string, SortedDictionary<int, JsonObject>> Schemas { get; } = new(StringComparer.Ordinal);

        public SortedDictionary<string, Channel> Channels { get; } = new(StringComparer.Ordinal);

        public SortedDictionary<string, Operation> Operations { get; } = new(StringComparer.Ordinal);

        /// <summary>The message keys of a type: one per registered version, or its unversioned key.</summary>
        public IEnumerable<string> MessageKeys(string type) =>
            Schemas.TryGetValue(type, out var versions)
                ? versions.Keys.Select(v => AsyncApiKeys.Version(type, v))
                : [AsyncApiKeys.Unversioned(type)];

        /// <summary>Every type some channel carries, and every type with a schema.</summary>
        public SortedSet<string> MessageTypes()
        {
            var types = new SortedSet<string>(Schemas.Keys, StringComparer.Ordinal);
            foreach (var channel in Channels.Values)
            {
                types.UnionWith(channel.Types);
            }

            return types;
        }

        public Channel Channel(AsyncApiDestination destination)
        {
            var id = AsyncApiKeys.Channel(destination);
            if (!Channels.TryGetValue(id, out var channel))
            {
                channel = new Channel(id, destination);
                Channels.Add(id, channel);
            }

            return channel;
        }

        public void Add(Operation operation)
        {
            if (!Operations.TryAdd(operation.Id, operation))
            {
                throw new AsyncApiInputException(operation.Field, $"two operations would both be '{operation.Id}'; give them different names");
            }
        }
    }

    /// <summary>A queue or a topic: the message types that reach it, and what describes it.</summary>
    private sealed class Channel(string id, AsyncApiDestination destination)
    {
        public string Id { get; } = id;

        public AsyncApiDestination Destination { get; } = destination;

        public QueueDefinition? Queue { get; set; }

        public bool Declared { get; set; }

        public SortedSet<string> Types { get; } = new(StringComparer.Ordinal);

        /// <summary>True when a source may put types here that are not listed (a route chosen by category, say).</summary>
        public bool Open { get; set; }

        public SortedSet<string> Notes { get; } = new(StringComparer.Ordinal);

        public SortedDictionary<string, TopicSubscription> Subscriptions { get; } = new(StringComparer.Ordinal);
    }

    /// <summary>An operation: its action on a channel, the types it handles (null: all of the channel's), its reply.</summary>
    private sealed record Operation(string Id, string Field, string Action, Channel Channel, IReadOnlyList<string>? Types, string Title, string Summary)
    {
        public Channel? ReplyChannel { get; init; }

        public IReadOnlyList<string> ReplyTypes { get; init; } = [];

        public JsonObject? Extensions { get; init; }
    }

    private static Model Resolve(AsyncApiInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (string.IsNullOrWhiteSpace(input.Title))
        {
            throw new AsyncApiInputException(nameof(input.Title), "the title is empty");
        }

        if (string.IsNullOrWhiteSpace(input.Version))
        {
            throw new AsyncApiInputException(nameof(input.Version), "the version is empty");
        }

        var model = new Model { Input = input };
        ReadSchemas(model, input.Schemas);

        foreach (var (topic, i) in Indexed(input.Topics))
        {
            CheckName(topic.Value, "topic", $"Topics[{i}]");
            model.Channel(AsyncApiDestination.Topic(topic)).Declared = true;
        }

        foreach (var (queue, i) in Indexed(input.Queues))
        {
            var field = $"Queues[{i}]";
            CheckName(queue?.Name.Value, "queue", field);
            var channel = model.Channel(AsyncApiDestination.Queue(queue!.Name));
            channel.Declared = true;
            channel.Queue = queue;
        }

        // What reaches the topics: routes from the log, workflow publishes and the service's own publishes. Queues are
        // resolved after, since subscriptions copy the topics' messages into them.
        var universe = Universe(input, model);
        AddRoutes(model, input.Routes, universe);
        AddSends(model, input.Sends);
        AddWorkflows(model, input.Workflows);
        AddSubscriptions(model, input.Subscriptions);
        AddConsumers(model, input.Consumers);
        return model;
    }

    private static void ReadSchemas(Model model, IReadOnlyList<RegisteredSchema> schemas)
    {
        foreach (var (schema, i) in Indexed(schemas))
        {
            var field = $"Schemas[{i}]";
            if (schema is null)
            {
                throw new AsyncApiInputException(field, "the entry is null");
            }

            CheckType(schema.EventType, field + ".EventType");
            if (schema.Version < 1)
            {
                throw new AsyncApiInputException(field + ".Version", string.Create(CultureInfo.InvariantCulture, $"version {schema.Version} of '{schema.EventType}' is not a version; versions start at 1"));
            }

            if (schema.Schema is null)
            {
                throw new AsyncApiInputException(field + ".Schema", $"'{schema.EventType}' version {schema.Version} has no document");
            }

            _ = SchemaFormat(schema, field);
            if (!model.Schemas.TryGetValue(schema.EventType, out var versions))
            {
                versions = [];
                model.Schemas.Add(schema.EventType, versions);
            }

            if (versions.TryGetValue(schema.Version, out var existing))
            {
                if (!JsonNode.DeepEquals(existing, schema.Schema))
                {
                    throw new AsyncApiDuplicateSchemaException(schema.EventType, schema.Version);
                }

                // Equal copies may be spelt differently (their properties' order, 0 against 0.0): the one written is
                // the same whichever came first, so the document does not depend on the input's order.
                if (string.CompareOrdinal(schema.Schema.ToJsonString(), existing.ToJsonString()) < 0)
                {
                    versions[schema.Version] = schema.Schema;
                }
            }
            else
            {
                versions.Add(schema.Version, schema.Schema);
            }
        }
    }

    /// <summary>
    /// The media type of a schema document by its <c>$schema</c>, read as the registry reads it: without one, 2020-12.
    /// AsyncAPI 3.0 names draft-07 (<c>application/schema+json;version=draft-07</c>); 2020-12 gets the custom value of
    /// the same form, which the specification allows.
    /// </summary>
    private static string SchemaFormat(RegisteredSchema schema, string field)
    {
        var draft = schema.Schema["$schema"] is JsonValue value && value.TryGetValue<string>(out var named) ? named : null;
        return draft switch
        {
            null => Draft202012Format,
            _ when IsDraft(draft, "json-schema.org/draft/2020-12/schema") => Draft202012Format,
            _ when IsDraft(draft, "json-schema.org/draft-07/schema") => Draft07Format,
            _ => throw new AsyncApiInputException(field + ".Schema", $"'{schema.EventType}' version {schema.Version} is written in '{draft}'; AsyncAPI documents are made from draft-07 and 2020-12 schemas"),
        };
    }

    private static bool IsDraft(string uri, string expected)
    {
        var rest = uri.StartsWith("https://", StringComparison.Ordinal) ? uri["https://".Length..]
            : uri.StartsWith("http://", StringComparison.Ordinal) ? uri["http://".Length..]
            : null;
        return rest is not null && rest.TrimEnd('#') == expected;
    }

    /// <summary>
    /// The types a route that names no event types may publish: every type the service knows, Cairn's own workflow
    /// events apart (they are in workflow streams, which only a route over <c>$all</c> or over a <c>wf:</c> category
    /// or stream follows).
    /// </summary>
    private sealed record TypeUniverse(SortedSet<string> User, SortedSet<string> Workflow);

    private static TypeUniverse Universe(AsyncApiInput input, Model model)
    {
        var workflowEvents = WorkflowEventTypes.All.Select(e => e.Name).Where(n => n != TimerType).ToHashSet(StringComparer.Ordinal);
        var user = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (type, i) in Indexed(input.EventTypes))
        {
            CheckType(type, $"EventTypes[{i}]");
            if (!workflowEvents.Contains(type) && type != TimerType)
            {
                user.Add(type);
            }
        }

        user.UnionWith(model.Schemas.Keys.Where(t => !workflowEvents.Contains(t) && t != TimerType));
        return new TypeUniverse(user, new SortedSet<string>(workflowEvents, StringComparer.Ordinal));
    }

    private static void AddRoutes(Model model, IReadOnlyList<EventRoute> routes, TypeUniverse universe)
    {
        foreach (var (route, i) in Indexed(routes))
        {
            var field = $"Routes[{i}]";
            CheckName(route?.Name, "route", field);
            CheckName(route!.Topic.Value, "topic", field + ".Topic");
            var filter = route.Filter ?? throw new AsyncApiInputException(field + ".Filter", "the route has no filter");
            var topic = model.Channel(AsyncApiDestination.Topic(route.Topic));
            IReadOnlyList<string> types;
            if (filter.EventTypes is { } named)
            {
                foreach (var (type, j) in Indexed(named))
                {
                    CheckType(type, $"{field}.Filter.EventTypes[{j}]");
                }

                types = named.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            }
            else
            {
                var workflowStreams = filter.Category?.StartsWith("wf:", StringComparison.Ordinal) == true
                    || filter.Stream?.StartsWith("wf:", StringComparison.Ordinal) == true;
                types = workflowStreams ? [.. universe.Workflow]
                    : filter.Category is not null || filter.Stream is not null ? [.. universe.User]
                    : [.. universe.User.Concat(model.Input.Workflows.Count > 0 ? universe.Workflow : []).Order(StringComparer.Ordinal)];
                topic.Open = true;
                topic.Notes.Add($"Route '{route.Name}' publishes the events of {filter}, whatever their type: every event type the service knows may come.");
            }

            topic.Types.UnionWith(types);
            model.Add(new Operation(
                "route." + AsyncApiKeys.Escape(route.Name),
                field,
                "send",
                topic,
                types,
                $"Route {route.Name}",
                $"Publishes the appended events of {filter} to topic {route.Topic}, through the log as outbox.")
            {
                Extensions = new JsonObject { ["x-cairn-event-filter"] = EventFilterJson(filter) },
            });
        }
    }

    private static void AddSends(Model model, IReadOnlyList<AsyncApiSend> sends)
    {
        foreach (var (send, i) in Indexed(sends))
        {
            var field = $"Sends[{i}]";
            CheckName(send?.Name, "send", field);
            var channel = model.Channel(CheckDestination(send!.To, field + ".To"));
            if (send.MessageTypes is not { Count: > 0 })
            {
                throw new AsyncApiInputException(field + ".MessageTypes", $"send '{send.Name}' names no message type");
            }

            var types = Types(send.MessageTypes, field + ".MessageTypes");
            channel.Types.UnionWith(types);
            var verb = send.To.Kind == AsyncApiChannelKind.Queue ? "Sends" : "Publishes";
            model.Add(new Operation("send." + AsyncApiKeys.Escape(send.Name), field, "send", channel, types, $"Send {send.Name}", $"{verb} {string.Join(", ", types)} to {Describe(send.To)}."));
        }
    }

    private static void AddWorkflows(Model model, IReadOnlyList<AsyncApiWorkflow> workflows)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (workflow, i) in Indexed(workflows))
        {
            var field = $"Workflows[{i}]";
            CheckName(workflow?.Name, "workflow", field);
            if (!names.Add(workflow!.Name))
            {
                throw new AsyncApiInputException(field, $"the workflow '{workflow.Name}' is listed twice");
            }

            CheckName(workflow.Queue.Value, "queue", field + ".Queue");
            var queue = model.Channel(AsyncApiDestination.Queue(workflow.Queue));
            var prefix = "workflow." + AsyncApiKeys.Part(workflow.Name);
            var received = new SortedSet<string>(Types(workflow.StartTypes, field + ".StartTypes"), StringComparer.Ordinal);
            if (workflow.UsesTimers)
            {
                received.Add(TimerType);
                model.Add(new Operation(prefix + ".timers", field, "send", queue, [TimerType], $"Workflow {workflow.Name}: timers", $"Arms durable timers: delayed messages to its own queue {workflow.Queue}."));
            }

            foreach (var (step, j) in Indexed(workflow.Steps))
            {
                var stepField = $"{field}.Steps[{j}]";
                CheckName(step?.Name, "step", stepField);
                var replies = Types(step!.Replies, stepField + ".Replies");
                received.UnionWith(replies);
                var stepPrefix = prefix + "." + AsyncApiKeys.Part(step.Name);
                if (step.Sends is { } sends)
                {
                    AddStepMessage(model, sends, stepPrefix + (sends.To.Kind == AsyncApiChannelKind.Queue ? ".send" : ".publish"), stepField + ".Sends", $"Workflow {workflow.Name}: step {step.Name}", queue, replies);
                }

                if (step.Compensation is { } compensation)
                {
                    IReadOnlyList<string> confirmation = step.CompensationConfirmation is { } c ? Types([c], stepField + ".CompensationConfirmation") : [];
                    received.UnionWith(confirmation);
                    AddStepMessage(model, compensation, stepPrefix + ".compensate", stepField + ".Compensation", $"Workflow {workflow.Name}: compensation of step {step.Name}", queue, confirmation);
                }
            }

            queue.Types.UnionWith(received);
            queue.Notes.Add($"The queue of workflow '{workflow.Name}': start messages, replies and timers arrive here.");
            model.Add(new Operation(prefix + ".receive", field, "receive", queue, [.. received], $"Workflow {workflow.Name}", $"The coordinator of workflow {workflow.Name} takes its start messages, replies and timers."));
        }
    }

    private static void AddStepMessage(Model model, AsyncApiStepMessage message, string id, string field, string title, Channel workflowQueue, IReadOnlyList<string> replies)
    {
        var channel = model.Channel(CheckDestination(message.To, field + ".To"));
        IReadOnlyList<string>? types = message.MessageType is { } type ? Types([type], field + ".MessageType") : null;
        if (types is not null)
        {
            channel.Types.UnionWith(types);
        }

        var what = types is null ? "a message of a type chosen at run time" : types[0];
        var verb = message.To.Kind == AsyncApiChannelKind.Queue ? "Sends" : "Publishes";
        model.Add(new Operation(id, field, "send", channel, types, title, $"{verb} {what} to {Describe(message.To)}{(replies.Count > 0 ? "; the reply comes back to queue " + workflowQueue.Destination.Name : "")}.")
        {
            ReplyChannel = replies.Count > 0 ? workflowQueue : null,
            ReplyTypes = replies,
        });
    }

    private static void AddSubscriptions(Model model, IReadOnlyList<TopicSubscription> subscriptions)
    {
        var seen = new HashSet<(string, string)>();
        foreach (var (subscription, i) in Indexed(subscriptions))
        {
            var field = $"Subscriptions[{i}]";
            CheckName(subscription?.Name, "subscription", field);
            CheckName(subscription!.Topic.Value, "topic", field + ".Topic");
            CheckName(subscription.Queue.Value, "queue", field + ".Queue");
            if (!seen.Add((subscription.Topic.Value, subscription.Name)))
            {
                throw new AsyncApiInputException(field, $"topic '{subscription.Topic}' has two subscriptions named '{subscription.Name}'");
            }

            var topic = model.Channel(AsyncApiDestination.Topic(subscription.Topic));
            var queue = model.Channel(AsyncApiDestination.Queue(subscription.Queue));
            topic.Subscriptions.Add(subscription.Name, subscription);

            var rules = AsyncApiTypeRules.Of(subscription.Rule);
            var candidates = new SortedSet<string>(topic.Types, StringComparer.Ordinal);
            if (topic.Open)
            {
                // The topic may carry types it does not list; the ones the rule names can come through.
                candidates.UnionWith(rules.Named.Where(n => EventTypeNames.Validate(n) is null));
            }

            queue.Types.UnionWith(candidates.Where(rules.Passes));
            queue.Notes.Add(subscription.Rule is null
                ? $"Subscription '{subscription.Name}' copies every message published to topic {subscription.Topic} here."
                : $"Subscription '{subscription.Name}' copies here what is published to topic {subscription.Topic} and passes its filter rule.");
        }
    }

    private static void AddConsumers(Model model, IReadOnlyList<AsyncApiConsumer> consumers)
    {
        foreach (var (consumer, i) in Indexed(consumers))
        {
            var field = $"Consumers[{i}]";
            CheckName(consumer?.Name, "consumer", field);
            CheckName(consumer!.Queue.Value, "queue", field + ".Queue");
            var queue = model.Channel(AsyncApiDestination.Queue(consumer.Queue));
            IReadOnlyList<string>? types = consumer.MessageTypes is { Count: > 0 } named ? Types(named, field + ".MessageTypes") : null;
            if (types is not null)
            {
                queue.Types.UnionWith(types);
            }

            model.Add(new Operation(
                "consumer." + AsyncApiKeys.Escape(consumer.Name),
                field,
                "receive",
                queue,
                types,
                $"Consumer {consumer.Name}",
                types is null
                    ? $"Handles the messages of queue {consumer.Queue}."
                    : $"Handles the {string.Join(", ", types)} messages of queue {consumer.Queue}; a message of another type is dead-lettered."));
        }
    }

    private static JsonObject EventFilterJson(EventFilter filter)
    {
        var json = new JsonObject();
        if (filter.Stream is not null)
        {
            json["stream"] = filter.Stream;
        }

        if (filter.Category is not null)
        {
            json["category"] = filter.Category;
        }

        if (filter.EventTypes is not null)
        {
            json["eventTypes"] = new JsonArray([.. filter.EventTypes.Select(t => (JsonNode?)JsonValue.Create(t))]);
        }

        if (filter.IncludeSystemEvents)
        {
            json["includeSystemEvents"] = true;
        }

        return json;
    }

    private static string Describe(AsyncApiDestination destination) =>
        (destination.Kind == AsyncApiChannelKind.Queue ? "queue " : "topic ") + destination.Name;

    private static AsyncApiDestination CheckDestination(AsyncApiDestination? destination, string field)
    {
        if (destination is null)
        {
            throw new AsyncApiInputException(field, "no queue or topic is named");
        }

        CheckName(destination.Name, destination.Kind == AsyncApiChannelKind.Queue ? "queue" : "topic", field);
        return destination;
    }

    private static List<string> Types(IReadOnlyList<string>? types, string field)
    {
        var checkedTypes = new List<string>();
        foreach (var (type, i) in Indexed(types ?? []))
        {
            CheckType(type, $"{field}[{i}]");
            if (!checkedTypes.Contains(type, StringComparer.Ordinal))
            {
                checkedTypes.Add(type);
            }
        }

        checkedTypes.Sort(StringComparer.Ordinal);
        return checkedTypes;
    }

    private static void CheckType(string? type, string field)
    {
        if (EventTypeNames.Validate(type) is { } fault)
        {
            throw new AsyncApiInputException(field, $"'{type}' is not an event type name: {fault}");
        }
    }

    private static void CheckName(string? name, string kind, string field)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new AsyncApiInputException(field, $"the {kind} has no name");
        }
    }

    private static IEnumerable<(T Item, int Index)> Indexed<T>(IReadOnlyList<T>? items) =>
        (items ?? []).Select((item, index) => (item, index));
}
