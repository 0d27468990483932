using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.Filtering;
using Cairn.Messaging.Routing;
using Cairn.Serialization;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Cairn.DependencyInjection;

public static partial class CairnServiceCollectionExtensions
{
    private static void AddMessaging(IServiceCollection services, bool first)
    {
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<CairnOptions>>().Value;
            var factory = options.BrokerFactory
                ?? throw new InvalidOperationException($"The {options.BackendName} backend has no message broker; choose a backend with messaging (UseSqlite(...), UsePostgres(...) or UseInMemory()).");
            return new BackendMessageBroker(factory(sp));
        });
        services.TryAddSingleton<IMessageBroker>(sp =>
        {
            var options = sp.GetRequiredService<IOptions<CairnOptions>>().Value;
            var broker = sp.GetRequiredService<BackendMessageBroker>().Broker;
            return new InstrumentedMessageBroker(options.TransportFactory?.Invoke(sp, broker) ?? broker);
        });
        services.TryAddSingleton<IMessageSender>(sp => sp.GetRequiredService<IMessageBroker>());
        services.TryAddSingleton<IMessageReceiver>(sp => sp.GetRequiredService<IMessageBroker>());
        services.TryAddSingleton<IDeadLetterQueue>(sp => sp.GetRequiredService<IMessageBroker>());
        services.TryAddSingleton<IMessagingAdmin>(sp => sp.GetRequiredService<IMessageBroker>());
        services.TryAddSingleton<MessagingTopology>();
        services.TryAddSingleton<ConsumerMonitor>();
        services.TryAddSingleton<FlowRecorder>();
        services.TryAddSingleton<RouteMonitor>();

        // A transport's own service (an outbox relay) starts once the queues exist.
        services.TryAddSingleton(sp => new TransportService(sp.GetRequiredService<IOptions<CairnOptions>>().Value.TransportService?.Invoke(sp)));
        if (first)
        {
            // Registered with the first AddCairn, before any consumer or route, so hosts start it first: the queues,
            // topics and subscriptions exist before anything sends or receives.
            services.AddSingleton<IHostedService, MessagingSetupService>();
            services.AddSingleton<IHostedService>(sp => new TransportHostedService(sp.GetRequiredService<TransportService>().Inner));
        }
    }
}

/// <summary>Queues, topics, subscriptions, consumers and routes, added after <c>AddCairn</c>.</summary>
public sealed partial class CairnBuilder
{
    /// <summary>
    /// Declares a queue when the host starts (creating it, or updating its settings). Adding one queue again with the
    /// same settings adds nothing; with other settings it is refused (<see cref="InvalidOperationException"/>), since
    /// the later declaration would silently replace the earlier one's settings. A queue Cairn declares for a workflow
    /// takes the settings given here instead of its defaults, whichever is added first.
    /// </summary>
    public CairnBuilder AddQueue(QueueDefinition queue)
    {
        ArgumentNullException.ThrowIfNull(queue);
        queue.Validate();
        if (Topology.Queues.FindIndex(q => q.Name == queue.Name) is var index and >= 0)
        {
            var earlier = Topology.Queues[index];
            if (Topology.DefaultQueues.Remove(queue.Name))
            {
                // A queue Cairn declared for a part it hosts (a workflow's) takes the settings the application gives it.
                Topology.Queues[index] = queue;
                return this;
            }

            return earlier == queue
                ? this
                : throw new InvalidOperationException($"The queue '{queue.Name}' is added twice with different settings ({earlier} and {queue}); add it once, since the later declaration would replace the earlier one's settings.");
        }

        Topology.Queues.Add(queue);
        return this;
    }

    /// <summary>Declares a queue a hosted part needs (a workflow's) with its default settings, unless the application declares it itself.</summary>
    private void AddDefaultQueue(QueueDefinition queue)
    {
        if (!Topology.Queues.Exists(q => q.Name == queue.Name))
        {
            Topology.Queues.Add(queue);
            Topology.DefaultQueues.Add(queue.Name);
        }
    }

    /// <summary>Declares a queue with settings changed from the defaults.</summary>
    public CairnBuilder AddQueue(QueueName queue, Func<QueueDefinition, QueueDefinition>? configure = null) =>
        AddQueue(configure?.Invoke(new QueueDefinition(queue)) ?? new QueueDefinition(queue));

    /// <summary>Declares a topic when the host starts.</summary>
    public CairnBuilder AddTopic(TopicName topic)
    {
        Topology.Topics.Add(topic);
        return this;
    }

    /// <summary>
    /// Subscribes a queue to a topic when the host starts, with an optional filter rule in the EventBridge pattern
    /// language, matched against the envelope rendered as JSON. A malformed rule is refused here, with its path. A
    /// subscription's name is unique within its topic: adding the same subscription again adds nothing, and one of the
    /// same name with another queue or rule is refused (<see cref="InvalidOperationException"/>), since it would
    /// replace the first.
    /// </summary>
    public CairnBuilder AddTopicSubscription(TopicName topic, string name, QueueName queue, string? rule = null)
    {
        var subscription = new TopicSubscription(topic, name, queue, rule is null ? null : FilterRule.Parse(rule));
        if (Topology.Subscriptions.Find(s => s.Topic == topic && s.Name == subscription.Name) is { } earlier)
        {
            return earlier.Queue == queue && SameRule(earlier.Rule, subscription.Rule)
                ? this
                : throw new InvalidOperationException($"The subscription '{subscription.Name}' of topic '{topic}' is added twice, to queue '{earlier.Queue}' and to queue '{queue}' or with another rule; each subscription of a topic needs its own name.");
        }

        Topology.Subscriptions.Add(subscription);
        return this;
    }

    /// <summary>Whether two rules say the same: their JSON equal, however it is spaced or its fields ordered.</summary>
    private static bool SameRule(FilterRule? a, FilterRule? b) =>
        a is null || b is null
            ? a is null && b is null
            : System.Text.Json.Nodes.JsonNode.DeepEquals(System.Text.Json.Nodes.JsonNode.Parse(a.ToString()), System.Text.Json.Nodes.JsonNode.Parse(b.ToString()));

    /// <summary>Routes appended events that pass <paramref name="filter"/> to a topic, through the log as outbox.</summary>
    public CairnBuilder AddEventRoute(string name, EventFilter filter, TopicName topic, Func<EventRoute, EventRoute>? configure = null)
    {
        var route = new EventRoute(name, filter, topic);
        route = configure?.Invoke(route) ?? route;
        route.Validate();
        ClaimCheckpoint(route.CheckpointKey, $"The route '{route.Name}'");
        Topology.Routes.Add(route);
        Services.AddSingleton<IHostedService>(sp =>
        {
            var router = new EventRouter(
                sp.GetRequiredService<IEventStore>(),
                sp.GetRequiredService<IMessageBroker>(),
                sp.GetRequiredService<ICheckpointStore>(),
                route,
                sp.GetService<ILogger<EventRouter>>(),
                sp.GetService<TimeProvider>());
            sp.GetRequiredService<RouteMonitor>().Add(router);
            return new EventRouterHostedService(router);
        });
        return this;
    }

    /// <summary>Hosts a consumer of a queue whose handler is a delegate.</summary>
    public CairnBuilder AddConsumer(QueueName queue, Func<MessageHandlerContext, CancellationToken, ValueTask> handler, Func<ConsumerOptions, ConsumerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return AddConsumer(queue, _ => handler, configure, null);
    }

    /// <summary>Hosts a consumer whose handler is made per message from the message's service scope.</summary>
    public CairnBuilder AddConsumer<THandler>(QueueName queue, Func<ConsumerOptions, ConsumerOptions>? configure = null)
        where THandler : class, IMessageHandler =>
        AddConsumer(queue, _ => (context, ct) => HandleWithAsync<THandler>(context, handler => handler.HandleAsync(context, ct)), configure, null);

    /// <summary>
    /// Hosts a consumer whose handler takes messages deserialized into <typeparamref name="TMessage"/>; a message of
    /// another type, or whose data does not fit, is dead-lettered as non-retryable.
    /// </summary>
    public CairnBuilder AddConsumer<TMessage, THandler>(QueueName queue, Func<ConsumerOptions, ConsumerOptions>? configure = null)
        where THandler : class, IMessageHandler<TMessage> =>
        AddConsumer(queue, _ => (context, ct) => HandleWithAsync<THandler>(context, handler => handler.HandleAsync(context.Read<TMessage>(), context, ct)), configure, typeof(TMessage));

    /// <summary>
    /// Runs a handler made for the message from its DI scope: the registered one, or one made here, which the scope does
    /// not track, so it is disposed here once it has handled the message.
    /// </summary>
    private static async ValueTask HandleWithAsync<THandler>(MessageHandlerContext context, Func<THandler, ValueTask> handle)
        where THandler : class
    {
        var registered = context.Services.GetService<THandler>();
        var handler = registered ?? ActivatorUtilities.CreateInstance<THandler>(context.Services);
        try
        {
            await handle(handler).ConfigureAwait(false);
        }
        finally
        {
            if (registered is null)
            {
                if (handler is IAsyncDisposable asyncDisposable)
                {
                    await asyncDisposable.DisposeAsync().ConfigureAwait(false);
                }
                else if (handler is IDisposable disposable)
                {
                    disposable.Dispose();
                }
            }
        }
    }

    private CairnBuilder AddConsumer(QueueName queue, Func<IServiceProvider, Func<MessageHandlerContext, CancellationToken, ValueTask>> handler, Func<ConsumerOptions, ConsumerOptions>? configure, Type? messageType)
    {
        var options = new ConsumerOptions(queue);
        options = configure?.Invoke(options) ?? options;
        options.Validate();
        if (Topology.WorkflowQueues.TryGetValue(queue, out var workflow))
        {
            throw MessagingTopology.WorkflowQueueTaken(options.Name, queue, workflow);
        }

        Topology.Consumers.Add(new ConsumerDeclaration(options.Name, queue, messageType));
        Services.AddSingleton<IHostedService>(sp =>
        {
            var consumer = new QueueConsumer(
                sp.GetRequiredService<IMessageBroker>(),
                options,
                handler(sp),
                sp,
                sp.GetService<EventSerializer>(),
                sp.GetService<ILogger<QueueConsumer>>(),
                sp.GetService<TimeProvider>(),
                sp.GetService<FlowRecorder>());
            sp.GetRequiredService<ConsumerMonitor>().Add(consumer);
            return new ConsumerHostedService(consumer);
        });
        return this;
    }

    /// <summary>
    /// Claims a route's or a subscription's checkpoint: two of one key would share it, and the one ahead would move it
    /// past what the other has not handled (a subscription's key is its name, so one named <c>route:x</c> is route x's).
    /// </summary>
    private void ClaimCheckpoint(string key, string what)
    {
        if (!Topology.Checkpoints.Add(key))
        {
            throw new ArgumentException($"{what} uses the checkpoint '{key}', which another route or subscription of this host uses already: give each its own name.", nameof(key));
        }
    }

    private MessagingTopology Topology
    {
        get
        {
            var existing = Services.FirstOrDefault(d => d.ServiceType == typeof(MessagingTopology) && d.ImplementationInstance is not null);
            if (existing?.ImplementationInstance is MessagingTopology topology)
            {
                return topology;
            }

            topology = new MessagingTopology();
            Services.RemoveAll<MessagingTopology>();
            Services.AddSingleton(topology);
            return topology;
        }
    }
}

/// <summary>The queues, topics and subscriptions declared when the host starts.</summary>
internal sealed class MessagingTopology
{
    public List<QueueDefinition> Queues { get; } = [];

    /// <summary>The queues declared with a hosted part's default settings, which the application's own declaration replaces.</summary>
    public HashSet<QueueName> DefaultQueues { get; } = [];

    public List<TopicName> Topics { get; } = [];

    public List<TopicSubscription> Subscriptions { get; } = [];

    /// <summary>The routes added, known before the host makes their routers: what describes the service reads them.</summary>
    public List<EventRoute> Routes { get; } = [];

    /// <summary>The consumers added, with the message type a typed consumer takes.</summary>
    public List<ConsumerDeclaration> Consumers { get; } = [];

    /// <summary>The queue of each workflow added, which its coordinator alone consumes, and the workflow's name.</summary>
    public Dictionary<QueueName, string> WorkflowQueues { get; } = [];

    /// <summary>The checkpoints the routes added use, one route each.</summary>
    public HashSet<string> Checkpoints { get; } = new(StringComparer.Ordinal);

    public bool IsEmpty => Queues.Count == 0 && Topics.Count == 0 && Subscriptions.Count == 0;

    /// <summary>
    /// The refusal of a consumer of a workflow's queue: the coordinator takes the replies, timers and start messages
    /// that arrive there, and another consumer would take and settle some of them instead, leaving instances waiting.
    /// </summary>
    public static ArgumentException WorkflowQueueTaken(string consumer, QueueName queue, string workflow) =>
        new($"The consumer '{consumer}' takes from the queue '{queue}', which is the workflow '{workflow}''s own: its coordinator alone consumes it (replies, timers and start messages arrive there). Give the consumer a queue of its own.", nameof(queue));
}

/// <summary>A consumer as added: its name, its queue, and the class its handler takes (null for an untyped handler).</summary>
internal sealed record ConsumerDeclaration(string Name, QueueName Queue, Type? MessageType);

/// <summary>Lists the hosted consumers of the process and what each has done.</summary>
public sealed class ConsumerMonitor
{
    private readonly NamedList<QueueConsumer> _consumers = new(c => c.Options.Name, "consumers", "its inbox key");

    /// <summary>The status of each consumer.</summary>
    public IReadOnlyList<ConsumerStatus> Statuses => _consumers.Select(c => c.Status);

    /// <summary>Finds a consumer by name.</summary>
    public QueueConsumer? Find(string name) => _consumers.Find(name);

    internal void Add(QueueConsumer consumer) => _consumers.Add(consumer);
}

/// <summary>Lists the hosted routes of the process, so their position can be shown and awaited.</summary>
public sealed class RouteMonitor
{
    private readonly NamedList<EventRouter> _routers = new(r => r.Route.Name, "routes", "its checkpoint key");

    /// <summary>The status of each route.</summary>
    public IReadOnlyList<EventRouteStatus> Statuses => _routers.Select(r => r.Status);

    /// <summary>Finds a route by name.</summary>
    public EventRouter? Find(string name) => _routers.Find(name);

    internal void Add(EventRouter router) => _routers.Add(router);
}

internal sealed class MessagingSetupService(IServiceProvider services, MessagingTopology topology) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (topology.IsEmpty)
        {
            return;
        }

        var broker = services.GetRequiredService<IMessageBroker>();
        foreach (var queue in topology.Queues)
        {
            await broker.DeclareQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        }

        foreach (var topic in topology.Topics)
        {
            await broker.DeclareTopicAsync(topic, cancellationToken).ConfigureAwait(false);
        }

        foreach (var subscription in topology.Subscriptions)
        {
            await broker.SubscribeAsync(subscription, cancellationToken).ConfigureAwait(false);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

internal sealed class ConsumerHostedService(QueueConsumer consumer) : IHostedService, IAsyncDisposable, IDisposable
{
    public Task StartAsync(CancellationToken cancellationToken) => consumer.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => consumer.StopAsync(cancellationToken);

    public ValueTask DisposeAsync() => consumer.DisposeAsync();

    /// <summary>For a container disposed synchronously: waits for <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}

internal sealed class EventRouterHostedService(EventRouter router) : IHostedService, IAsyncDisposable, IDisposable
{
    public Task StartAsync(CancellationToken cancellationToken) => router.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => router.StopAsync(cancellationToken);

    public ValueTask DisposeAsync() => router.DisposeAsync();

    /// <summary>For a container disposed synchronously: waits for <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}

/// <summary>The configured transport's service (an outbox relay), when there is one: made once, run by the host, asked by the health check.</summary>
internal sealed record TransportService(IHostedService? Inner) : IAsyncDisposable, IDisposable
{
    /// <summary>
    /// The container owns the transport's service: a host disposed without a stop (one whose start failed, one built
    /// for a command) ends it here, or its loops and connection would outlive the host.
    /// </summary>
    public ValueTask DisposeAsync() => Disposal.DisposeAsync(Inner);

    /// <inheritdoc cref="DisposeAsync"/>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}

/// <summary>Runs the configured transport's service, when there is one.</summary>
internal sealed class TransportHostedService(IHostedService? inner) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => inner?.StartAsync(cancellationToken) ?? Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => inner?.StopAsync(cancellationToken) ?? Task.CompletedTask;
}
