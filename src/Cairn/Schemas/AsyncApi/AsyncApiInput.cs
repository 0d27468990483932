using Cairn.Messaging;
using Cairn.Messaging.Routing;

namespace Cairn.Schemas;

/// <summary>
/// What <see cref="AsyncApiGenerator"/> describes: a service's topics, queues, subscriptions, routes, consumers,
/// workflows and sends, and the registered schemas of its event types. A plain value, so a document can be made
/// without a host; <see cref="AsyncApiDescriber"/> fills one from a host's container.
/// </summary>
public sealed record AsyncApiInput
{
    /// <summary>The document's <c>info.title</c>: the service's name.</summary>
    public required string Title { get; init; }

    /// <summary>The document's <c>info.version</c>: the version of the service's API (1.0.0 by default).</summary>
    public string Version { get; init; } = "1.0.0";

    /// <summary>The document's <c>info.description</c>, if any.</summary>
    public string? Description { get; init; }

    /// <summary>The CloudEvents <c>source</c> of what the service writes, if known (written as <c>info.x-cairn-source</c>).</summary>
    public string? Source { get; init; }

    /// <summary>The topics declared by the service.</summary>
    public IReadOnlyList<TopicName> Topics { get; init; } = [];

    /// <summary>The queues declared by the service; when one is declared twice, the last declaration wins, as it does at start.</summary>
    public IReadOnlyList<QueueDefinition> Queues { get; init; } = [];

    /// <summary>The subscriptions of queues to topics, with their filter rules.</summary>
    public IReadOnlyList<TopicSubscription> Subscriptions { get; init; } = [];

    /// <summary>The routes from the log to topics.</summary>
    public IReadOnlyList<EventRoute> Routes { get; init; } = [];

    /// <summary>The hosted consumers of queues.</summary>
    public IReadOnlyList<AsyncApiConsumer> Consumers { get; init; } = [];

    /// <summary>The hosted workflows.</summary>
    public IReadOnlyList<AsyncApiWorkflow> Workflows { get; init; } = [];

    /// <summary>
    /// Messages the service sends or publishes by its own code (through <c>IMessageSender</c> or a transaction), which
    /// Cairn cannot see from its registrations.
    /// </summary>
    public IReadOnlyList<AsyncApiSend> Sends { get; init; } = [];

    /// <summary>
    /// The event type names the service knows (its <c>EventTypeRegistry</c>). A route whose filter names no event
    /// types may publish any of them, so they are the messages of its topic.
    /// </summary>
    public IReadOnlyList<string> EventTypes { get; init; } = [];

    /// <summary>The registered schema versions of the event types; a type's highest version is its latest.</summary>
    public IReadOnlyList<RegisteredSchema> Schemas { get; init; } = [];
}

/// <summary>Whether a channel is a queue or a topic.</summary>
public enum AsyncApiChannelKind
{
    /// <summary>A durable queue: its messages are received by consumers.</summary>
    Queue,

    /// <summary>A topic: what is published to it is copied into the queues of the subscriptions whose rules it passes.</summary>
    Topic,
}

/// <summary>A queue or a topic, by name.</summary>
/// <param name="Kind">Queue or topic.</param>
/// <param name="Name">Its name, as <see cref="MessagingNames"/> allows.</param>
public sealed record AsyncApiDestination(AsyncApiChannelKind Kind, string Name)
{
    /// <summary>A queue.</summary>
    public static AsyncApiDestination Queue(QueueName queue) => new(AsyncApiChannelKind.Queue, queue.Value);

    /// <summary>A topic.</summary>
    public static AsyncApiDestination Topic(TopicName topic) => new(AsyncApiChannelKind.Topic, topic.Value);
}

/// <summary>A hosted consumer of a queue.</summary>
/// <param name="Name">The consumer's name (its inbox key), unique in the service.</param>
/// <param name="Queue">The queue it consumes.</param>
/// <param name="MessageTypes">
/// The message types it takes (one for <c>AddConsumer&lt;TMessage, THandler&gt;</c>), or null when it takes whatever the
/// queue holds.
/// </param>
public sealed record AsyncApiConsumer(string Name, QueueName Queue, IReadOnlyList<string>? MessageTypes = null);

/// <summary>Messages the service sends to a queue or publishes to a topic by its own code.</summary>
/// <param name="Name">A name for the operation, unique among the sends.</param>
/// <param name="To">Where they go.</param>
/// <param name="MessageTypes">Their types.</param>
public sealed record AsyncApiSend(string Name, AsyncApiDestination To, IReadOnlyList<string> MessageTypes);

/// <summary>A message a workflow step sends or publishes.</summary>
/// <param name="To">Where it goes.</param>
/// <param name="MessageType">Its type, or null when the step declares a base type whose concrete type is known only at run time.</param>
public sealed record AsyncApiStepMessage(AsyncApiDestination To, string? MessageType);

/// <summary>A workflow step: what it sends, the replies it waits for, and its compensation.</summary>
/// <param name="Name">The step's name.</param>
public sealed record AsyncApiWorkflowStep(string Name)
{
    /// <summary>The command it sends or the event it publishes, if any.</summary>
    public AsyncApiStepMessage? Sends { get; init; }

    /// <summary>The reply types it waits for on the workflow's queue.</summary>
    public IReadOnlyList<string> Replies { get; init; } = [];

    /// <summary>The message that undoes its effect, if any.</summary>
    public AsyncApiStepMessage? Compensation { get; init; }

    /// <summary>The reply that confirms the compensation, if one is awaited.</summary>
    public string? CompensationConfirmation { get; init; }
}

/// <summary>A hosted workflow: its queue, the messages that start instances, and its steps.</summary>
/// <param name="Name">The workflow's name.</param>
/// <param name="Queue">The queue its coordinator consumes (replies, timers and start messages arrive there).</param>
public sealed record AsyncApiWorkflow(string Name, QueueName Queue)
{
    /// <summary>The message types that start an instance when they arrive on the queue.</summary>
    public IReadOnlyList<string> StartTypes { get; init; } = [];

    /// <summary>The steps, in the order declared.</summary>
    public IReadOnlyList<AsyncApiWorkflowStep> Steps { get; init; } = [];

    /// <summary>Whether the workflow arms durable timers (waits, timeouts, retries), delayed messages to its own queue.</summary>
    public bool UsesTimers { get; init; }
}
