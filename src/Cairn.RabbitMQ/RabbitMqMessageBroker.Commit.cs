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
        var backend = new MessageTransaction();
        var delivered = new List<LeaseToken>(transaction.Acknowledgements.Count);
        foreach (var lease in transaction.Acknowledgements)
        {
            if (lease.Queue == default)
            {
                throw new InvalidMessageException("An acknowledgement names no queue.");
            }

            // A FIFO queue's lease is the backend's, acknowledged in its transaction; a RabbitMQ delivery once it committed.
            if (await IsKeptAsync(lease.Queue, cancellationToken).ConfigureAwait(false))
            {
                backend.Acknowledge(lease);
            }
            else
            {
                Peek(lease);
                delivered.Add(lease);
            }
        }

        var outboxes = new HashSet<QueueName>();
        foreach (var append in transaction.Appends)
        {
            backend.Append(append);
        }

        foreach (var (queue, message) in transaction.Sends)
        {
            if (queue == default)
            {
                throw new InvalidMessageException("A send names no queue.");
            }

            if ((await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false)).Fifo)
            {
                backend.Send(queue, message);
                continue;
            }

            if (AmqpMessageCodec.HeaderFault(message) is { } fault)
            {
                throw new InvalidMessageException(fault);
            }

            backend.Send(OutboxOf(queue), message);
            outboxes.Add(queue);
        }

        foreach (var (topic, message) in transaction.Publishes)
        {
            // Refused only when the topic feeds a queue in RabbitMQ: the backend's own queues take any message.
            if (AmqpMessageCodec.HeaderFault(message) is { } fault
                && (await _backend.ListSubscriptionsAsync(topic, cancellationToken).ConfigureAwait(false)).Any(s => QueueOfOutbox(s.Queue) is not null))
            {
                throw new InvalidMessageException($"{fault} It is published to topic '{topic}', which feeds a queue in RabbitMQ.");
            }

            backend.Publish(topic, message);
        }

        var expectations = transaction.CheckpointExpectations.ToDictionary(e => e.Key, e => e.Expected, StringComparer.Ordinal);
        foreach (var (key, position) in transaction.Checkpoints)
        {
            _ = expectations.TryGetValue(key, out var expected) ? backend.SetCheckpoint(key, position, expected) : backend.SetCheckpoint(key, position);
        }

        if (transaction.Inbox is var (consumer, messageId))
        {
            backend.MarkProcessed(consumer, messageId, transaction.InboxMessage);
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
        catch (InvalidMessageException ex) when (ex.Message.Contains($"queue '{OutboxPrefix}", StringComparison.Ordinal))
        {
            // A refusal by the outbox's settings (a delay past the retention, say) names the queue the caller sent to.
            throw new InvalidMessageException(ex.Message.Replace($"queue '{OutboxPrefix}", "queue '", StringComparison.Ordinal));
        }

        // All asked for at once, so the reader writes them together.
        var acknowledgements = new List<Task>(delivered.Count);
        foreach (var lease in delivered)
        {
            if (_leases.TryRemove(lease.Sequence, out var ack) && ack.Current)
            {
                acknowledgements.Add(SafelyAsync(() => ack.Reader.AcknowledgeAsync(ack.Buffered), "acknowledge a delivery after its commit"));
            }
            else
            {
                _logger.LogDebug("The lease {Lease} ran out while its commit ran; RabbitMQ delivers the message again and the inbox recognises it.", lease);
            }
        }

        await Task.WhenAll(acknowledgements).ConfigureAwait(false);

        if (transaction.Publishes.Count > 0)
        {
            foreach (var (queue, definition) in _queues)
            {
                if (!definition.Fifo)
                {
                    outboxes.Add(queue);
                }
            }
        }

        if (outboxes.Count > 0)
        {
            OutboxWritten?.Invoke(outboxes);
        }

        return result;
    }
}
