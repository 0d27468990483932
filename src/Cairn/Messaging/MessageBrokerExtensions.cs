using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>Shorthands over <see cref="IMessageBroker"/>.</summary>
public static class MessageBrokerExtensions
{
    /// <summary>Sends one message to a queue.</summary>
    public static Task<CommitResult> SendAsync(this IMessageSender broker, QueueName queue, OutgoingMessage message, CancellationToken cancellationToken = default) =>
        Commit(broker, () => new MessageTransaction().Send(queue, message), cancellationToken);

    /// <summary>Sends a batch of messages to a queue, in one commit.</summary>
    public static Task<CommitResult> SendBatchAsync(this IMessageSender broker, QueueName queue, IEnumerable<OutgoingMessage> messages, CancellationToken cancellationToken = default) =>
        Commit(
            broker,
            () =>
            {
                ArgumentNullException.ThrowIfNull(messages);
                var transaction = new MessageTransaction();
                foreach (var message in messages)
                {
                    transaction.Send(queue, message);
                }

                return transaction;
            },
            cancellationToken);

    /// <summary>Publishes one message to a topic: a copy goes to each subscription whose rule it passes.</summary>
    public static Task<CommitResult> PublishAsync(this IMessageSender broker, TopicName topic, OutgoingMessage message, CancellationToken cancellationToken = default) =>
        Commit(broker, () => new MessageTransaction().Publish(topic, message), cancellationToken);

    /// <summary>Acknowledges one delivery.</summary>
    public static Task AcknowledgeAsync(this IMessageReceiver broker, LeaseToken lease, CancellationToken cancellationToken = default) =>
        broker.AcknowledgeAsync([lease], cancellationToken);

    /// <summary>Declares a queue with default settings but its name.</summary>
    public static Task DeclareQueueAsync(this IMessagingAdmin broker, QueueName queue, CancellationToken cancellationToken = default) =>
        broker.DeclareQueueAsync(new QueueDefinition(queue), cancellationToken);

    /// <summary>Appends events and sends messages in one commit.</summary>
    public static Task<CommitResult> AppendAndSendAsync(this IMessageSender broker, AppendRequest append, QueueName queue, OutgoingMessage message, CancellationToken cancellationToken = default) =>
        Commit(broker, () => new MessageTransaction().Append(append).Send(queue, message), cancellationToken);

    /// <summary>Commits the transaction <paramref name="build"/> makes; what building it refuses (a null message, say) comes through the task.</summary>
    private static Task<CommitResult> Commit(IMessageSender broker, Func<MessageTransaction> build, CancellationToken cancellationToken)
    {
        MessageTransaction transaction;
        try
        {
            ArgumentNullException.ThrowIfNull(broker);
            transaction = build();
        }
        catch (Exception ex)
        {
            return Refusal.Of<CommitResult>(ex);
        }

        return broker.CommitAsync(transaction, cancellationToken);
    }
}
