using System.Text.Json.Nodes;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Schemas;

/// <summary>
/// The AsyncAPI document of the hosting service, read from its container: the queues, topics and subscriptions added
/// through <c>AddCairn(...)</c>, its workflows, its registered event types, and the consumers and routes the host has
/// started; the schemas come from the caller (the schema registry).
/// </summary>
/// <remarks>
/// Consumers and routes are described as they were added, whether or not the host has started. A consumer added with
/// <c>AddConsumer&lt;TMessage, THandler&gt;</c> takes its message's registered type; an untyped one is described as
/// taking what its queue holds. Adjust the input for more (<c>describer.Describe(schemas) with { Consumers = ... }</c>,
/// then <see cref="AsyncApiGenerator.Generate"/>).
/// </remarks>
public sealed class AsyncApiDescriber(IServiceProvider services)
{
    /// <summary>The service's input to <see cref="AsyncApiGenerator"/>, with these schemas (every version that should be described).</summary>
    public AsyncApiInput Describe(IEnumerable<RegisteredSchema> schemas)
    {
        ArgumentNullException.ThrowIfNull(schemas);
        return Describe() with { Schemas = [.. schemas] };
    }

    /// <summary>
    /// The service's input to <see cref="AsyncApiGenerator"/>, with the latest schema of each type it names (asked in
    /// ordinal order; null: the type has none).
    /// </summary>
    public AsyncApiInput Describe(Func<string, RegisteredSchema?> latestSchema)
    {
        ArgumentNullException.ThrowIfNull(latestSchema);
        var input = Describe();
        var schemas = new List<RegisteredSchema>();
        foreach (var type in NamedTypes(input))
        {
            if (latestSchema(type) is { } schema)
            {
                schemas.Add(schema);
            }
        }

        return input with { Schemas = schemas };
    }

    /// <summary>The service's AsyncAPI document, with these schemas.</summary>
    public JsonObject Generate(IEnumerable<RegisteredSchema> schemas) => AsyncApiGenerator.Generate(Describe(schemas));

    /// <summary>The service's AsyncAPI document, with the latest schema of each type it names.</summary>
    public JsonObject Generate(Func<string, RegisteredSchema?> latestSchema) => AsyncApiGenerator.Generate(Describe(latestSchema));

    private AsyncApiInput Describe()
    {
        var source = services.GetService<EventStoreOptions>()?.Source;
        var topology = services.GetService<MessagingTopology>();
        var registry = services.GetService<EventTypeRegistry>();
        var workflows = Workflows();
        var routes = topology?.Routes.ToList() ?? [];

        // A workflow's coordinator is a consumer of its queue, described with the workflow.
        var coordinators = workflows.Select(w => ("workflow-" + w.Name, w.Queue)).ToHashSet();
        var consumers = (topology?.Consumers ?? [])
            .Where(c => !coordinators.Contains((c.Name, c.Queue)))
            .Select(c => new AsyncApiConsumer(c.Name, c.Queue, c.MessageType is { } type && registry is not null && registry.TryGetName(type, out var name) ? [name!] : null))
            .ToList();

        return new AsyncApiInput
        {
            Title = source ?? "Cairn service",
            Source = source,
            Topics = topology?.Topics.ToList() ?? [],
            Queues = topology?.Queues.ToList() ?? [],
            Subscriptions = topology?.Subscriptions.ToList() ?? [],
            Routes = routes,
            Consumers = consumers,
            Workflows = workflows,
            EventTypes = registry?.Registrations.Keys.Order(StringComparer.Ordinal).ToList() ?? [],
        };
    }

    private List<AsyncApiWorkflow> Workflows()
    {
        var definitions = services.GetServices<IWorkflowDefinition>().ToList();
        if (definitions.Count == 0)
        {
            return [];
        }

        var serializer = services.GetRequiredService<EventSerializer>();
        string? NameOf(Type type) => serializer.Registry.TryGetName(type, out var name) ? name : null;
        AsyncApiStepMessage Message(StepAction action) => new(
            action.Kind == StepActionKind.Send ? AsyncApiDestination.Queue(action.Target) : AsyncApiDestination.Topic(action.Target),
            NameOf(action.MessageType));

        var workflows = new List<AsyncApiWorkflow>();
        foreach (var definition in definitions)
        {
            var model = definition.Compile(serializer);
            var steps = model.Steps.Values.Select(step => new AsyncApiWorkflowStep(step.Name)
            {
                Sends = step.Action is { } action ? Message(action) : null,
                Replies = [.. step.Replies.Keys],
                Compensation = step.Compensation is { } compensation ? Message(compensation) : null,
                CompensationConfirmation = step.CompensationConfirmation,
            }).ToList();
            workflows.Add(new AsyncApiWorkflow(model.Name, model.Queue)
            {
                StartTypes = [.. model.Starts.Keys],
                Steps = steps,
                // A retry is the command sent again for later, to the service: only a wait, a timeout and a confirmation arm timers.
                UsesTimers = model.Steps.Values.Any(s => s.Delay is not null || s.Timeout is not null || s.CompensationConfirmation is not null),
            });
        }

        return workflows;
    }

    /// <summary>
    /// The types the service names: its registered ones, and those its routes, subscriptions' rules (a type an open
    /// topic may carry into a queue), consumers and workflows name.
    /// </summary>
    private static SortedSet<string> NamedTypes(AsyncApiInput input)
    {
        var types = new SortedSet<string>(input.EventTypes, StringComparer.Ordinal);
        types.UnionWith(input.Routes.SelectMany(r => r.Filter.EventTypes ?? []));
        types.UnionWith(input.Subscriptions.SelectMany(s => AsyncApiTypeRules.Of(s.Rule).Named).Where(n => EventTypeNames.Validate(n) is null));
        types.UnionWith(input.Consumers.SelectMany(c => c.MessageTypes ?? []));
        foreach (var workflow in input.Workflows)
        {
            types.UnionWith(workflow.StartTypes);
            foreach (var step in workflow.Steps)
            {
                types.UnionWith(step.Replies);
                types.UnionWith(new[] { step.Sends?.MessageType, step.Compensation?.MessageType, step.CompensationConfirmation }.OfType<string>());
            }
        }

        return types;
    }
}
