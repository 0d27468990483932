using Cairn.Messaging.Filtering;

namespace Cairn.Messaging;

/// <summary>
/// A subscription of a queue to a topic: each message published to the topic that passes <see cref="Rule"/> is copied
/// into <see cref="Queue"/>. The rule sees the message's envelope rendered as JSON, attributes at the top and the
/// payload under <c>data</c>.
/// </summary>
public sealed record TopicSubscription
{
    /// <summary>Creates a subscription.</summary>
    /// <exception cref="InvalidMessagingNameException">The name is invalid, or the topic or queue is a default name, which names none.</exception>
    public TopicSubscription(TopicName topic, string name, QueueName queue, FilterRule? rule = null)
    {
        MessagingNames.RequirePresent(topic.Value, "topic");
        MessagingNames.RequirePresent(queue.Value, "queue");
        Topic = topic;
        Name = MessagingNames.Validate("subscription", name);
        Queue = queue;
        Rule = rule;
    }

    /// <summary>The topic.</summary>
    public TopicName Topic { get; }

    /// <summary>The subscription's name, unique within its topic.</summary>
    public string Name { get; }

    /// <summary>The queue that receives the copies.</summary>
    public QueueName Queue { get; }

    /// <summary>The filter rule; every message passes when null.</summary>
    public FilterRule? Rule { get; }
}
