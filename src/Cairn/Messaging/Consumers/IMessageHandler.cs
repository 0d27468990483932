namespace Cairn.Messaging.Consumers;

/// <summary>
/// Handles the messages of a queue. What the handler appends, sends and publishes through the context commits in one
/// transaction with the delivery's acknowledgement and the consumer's inbox record, after the handler returns.
/// </summary>
public interface IMessageHandler
{
    /// <summary>Handles one delivery; throwing leads to a retry, or to the dead-letter queue for a non-retryable error.</summary>
    ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken);
}

/// <summary>Handles messages deserialized into <typeparamref name="TMessage"/> by the type registry.</summary>
public interface IMessageHandler<in TMessage>
{
    /// <summary>Handles one message; throwing leads to a retry, or to the dead-letter queue for a non-retryable error.</summary>
    ValueTask HandleAsync(TMessage message, MessageHandlerContext context, CancellationToken cancellationToken);
}
