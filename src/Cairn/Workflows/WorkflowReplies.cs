using Cairn.Messaging;
using Cairn.Messaging.Consumers;

namespace Cairn.Workflows;

/// <summary>What a service that takes a workflow's commands uses to answer them.</summary>
public static class WorkflowReplies
{
    /// <summary>
    /// Sends <paramref name="reply"/> to the queue the handled command names in its <c>replyto</c> attribute, when the
    /// handling commits. It carries the command's correlation id, which finds the workflow instance.
    /// </summary>
    /// <exception cref="NonRetryableMessageException">The handled message names no queue to reply to.</exception>
    public static MessageHandlerContext Reply(this MessageHandlerContext context, object reply)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(reply);
        if (!context.Message.Metadata.TryGetValue(WorkflowDecider.ReplyToKey, out var queue))
        {
            throw new NonRetryableMessageException($"Message {context.Message.Id} ({context.Message.Type}) names no queue to reply to (no '{WorkflowDecider.ReplyToKey}' attribute).");
        }

        return context.Send(new QueueName(queue), reply);
    }

    /// <summary>
    /// The idempotency key of a workflow's command: the same on every attempt of one step of one instance, so the
    /// service can do the work once and answer each attempt. Null for a message no workflow sent.
    /// </summary>
    public static string? IdempotencyKey(this Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return message.Metadata.TryGetValue(WorkflowDecider.IdempotencyKey, out var key) ? key : null;
    }
}
