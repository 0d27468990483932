using Cairn.Messaging;
using Microsoft.Extensions.Logging;

namespace Cairn.RabbitMQ;

public sealed partial class RabbitMqMessageBroker
{
    /// <summary>
    /// Commits a transaction in one backend transaction: its appends, inbox record and checkpoints, and its sends and
    /// publishes into the backend's outbox. Every acknowledged lease is checked first (a lost one fails the commit,
    /// writing nothing); the RabbitMQ deliveries are acknowledged once the backend has committed. Should an
    /// acknowledgement be lost then (the channel closed), RabbitMQ delivers the message again and the inbox, written
    /// in the commit, recognises it.
    /// </summary>
    public async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        CheckDistinct(transaction.Acknowledgements);
        var held = transaction.Acknowledgements.Select(Peek).ToList();
        var outboxes = new HashSet<QueueName>();
        var backend = new MessageTransaction();
        foreach (var append in transaction.Appends)
        {
            backend.Append(append);
        }

        foreach (var (queue, message) in transaction.Sends)
        {
            await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false);
            backend.Send(OutboxOf(queue), message);
            outboxes.Add(queue);
        }

        foreach (var (topic, message) in transaction.Publishes)
        {
            backend.Publish(topic, message);
        }

        foreach (var (key, position) in transaction.Checkpoints)
        {
            backend.SetCheckpoint(key, position);
        }

        if (transaction.Inbox is var (consumer, messageId))
        {
            var handled = held.FirstOrDefault(h => h.Delivery.Message.Id == messageId);
            if (transaction.InboxMessage is not null && handled is not null)
            {
                backend.MarkProcessed(consumer, handled.Delivery);
            }
            else
            {
                backend.MarkProcessed(consumer, messageId);
            }
        }

        CommitResult result;
        try
        {
            result = backend.IsEmpty ? new CommitResult() : await _backend.CommitAsync(backend, cancellationToken).ConfigureAwait(false);
        }
        catch (QueueNotFoundException ex) when (QueueOfOutbox(ex.Queue) is { } queue)
        {
            throw new QueueNotFoundException(queue);
        }
        catch (MessageTooLargeException ex) when (QueueOfOutbox(ex.Queue) is { } queue)
        {
            throw new MessageTooLargeException(ex.MessageId, queue, ex.Size, ex.Limit);
        }

        foreach (var lease in transaction.Acknowledgements)
        {
            if (_leases.TryRemove(lease.Sequence, out var ack) && ack.Current)
            {
                await SafelyAsync(() => ack.Reader.Channel.BasicAckAsync(ack.Buffered.Tag, false, CancellationToken.None).AsTask(), "acknowledge a delivery after its commit").ConfigureAwait(false);
            }
            else
            {
                _logger.LogDebug("The lease {Lease} ran out while its commit ran; RabbitMQ delivers the message again and the inbox recognises it.", lease);
            }
        }

        if (transaction.Publishes.Count > 0)
        {
            foreach (var queue in _queues.Keys)
            {
                outboxes.Add(queue);
            }
        }

        if (outboxes.Count > 0)
        {
            OutboxWritten?.Invoke(outboxes);
        }

        return result;
    }
}
