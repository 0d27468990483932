using System.Text.Json;
using Cairn.EventStore;

namespace Cairn.Messaging.InMemory;

public sealed partial class InMemoryMessageBroker
{
    /// <summary>How many deduplication ids a queue remembers between sweeps of the expired ones.</summary>
    private const int DeduplicationSweep = 1024;

    /// <inheritdoc />
    public async Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
    {
        var prepared = PreparedTransaction.Prepare(transaction, _options);
        if (transaction.IsEmpty)
        {
            return new CommitResult();
        }

        var pending = new List<Task>();
        var result = await Run(cancellationToken, touched => Commit(prepared, touched, pending)).ConfigureAwait(false);
        await Task.WhenAll(pending).ConfigureAwait(false);

        return result;
    }

    /// <summary>
    /// Checks every part that can fail (leases, queues, topics, sizes, group keys, and last the appends, which the store
    /// takes back if anything after them fails), then applies the rest, which cannot fail.
    /// </summary>
    private CommitResult Commit(PreparedTransaction transaction, HashSet<string> touched, List<Task> pendingCheckpoints)
    {
        var now = Now();
        if (transaction.Inbox is { } inbox && _inbox.ContainsKey(inbox))
        {
            // Handled before: the effects were committed then. Settle the delivery and write nothing else.
            Acknowledge(HeldLeases(transaction.Acknowledgements), touched);
            return CommitResult.Duplicate;
        }

        foreach (var (key, expected) in transaction.CheckpointExpectations)
        {
            // The in-memory checkpoint store answers at once, under its own lock.
            var read = _checkpoints.GetAsync(key, CancellationToken.None);
            var stored = (read.IsCompletedSuccessfully ? read.Result : read.AsTask().GetAwaiter().GetResult()) ?? GlobalPosition.Start;
            if (stored != expected)
            {
                throw new CheckpointConflictException(key, expected, stored);
            }
        }

        // The order of the checks is the SQLite backend's, so a transaction with several faults fails with the same one.
        var settled = HeldLeases(transaction.Acknowledgements);
        var copies = new List<(QueueState Queue, PreparedMessage Message)>();
        void CheckMessages() => CheckCopies(transaction, now, copies);
        AppendResult[] appends = [];
        if (transaction.Appends.Count == 0)
        {
            CheckMessages();
        }
        else
        {
            appends = _store.AppendAll(transaction.Appends, CheckMessages);
        }

        Acknowledge(settled, touched);
        int enqueued = 0, deduplicated = 0;
        foreach (var (queue, message) in copies)
        {
            if (Enqueue(queue, message, now, touched))
            {
                enqueued++;
            }
            else
            {
                deduplicated++;
            }
        }

        if (transaction.Inbox is { } record)
        {
            _inbox[record] = (now, transaction.InboxMessage);
        }

        foreach (var (key, position) in transaction.Checkpoints)
        {
            // Past the point of no return, so not cancelled. The in-memory checkpoint store completes at once, under the
            // lock; another store's write is awaited after it.
            var write = _checkpoints.SetAsync(key, position, CancellationToken.None);
            if (write.IsCompletedSuccessfully)
            {
                write.GetAwaiter().GetResult();
            }
            else
            {
                pendingCheckpoints.Add(write.AsTask());
            }
        }

        return new CommitResult { Appends = appends, MessagesEnqueued = enqueued, MessagesDeduplicated = deduplicated };
    }

    /// <summary>Finds the queue of every copy the sends and publishes put in, refusing what a queue would not take.</summary>
    private void CheckCopies(PreparedTransaction transaction, long now, List<(QueueState Queue, PreparedMessage Message)> copies)
    {
        foreach (var (queueName, message) in transaction.Sends)
        {
            var queue = RequireQueue(queueName);
            CheckCopy(queue, message, now);
            copies.Add((queue, message));
        }

        foreach (var (topicName, message) in transaction.Publishes)
        {
            var subscriptions = RequireTopic(topicName);
            JsonDocument? rendered = null;
            try
            {
                foreach (var subscription in subscriptions.Values)
                {
                    if (subscription.Rule is { } rule)
                    {
                        rendered ??= message.RenderDocument(new DateTimeOffset(now, TimeSpan.Zero));
                        if (!rule.Matches(rendered.RootElement))
                        {
                            continue;
                        }
                    }

                    var queue = RequireQueue(subscription.Queue);
                    CheckCopy(queue, message, now);
                    copies.Add((queue, message));
                }
            }
            finally
            {
                rendered?.Dispose();
            }
        }
    }

    private static void CheckCopy(QueueState queue, PreparedMessage message, long now)
    {
        if (message.RefusalBy(queue.Definition, now) is { } refusal)
        {
            throw refusal;
        }
    }

    /// <summary>Puts a checked message in a queue; false when its deduplication id was seen within the window.</summary>
    private bool Enqueue(QueueState queue, PreparedMessage message, long now, HashSet<string> touched)
    {
        var definition = queue.Definition;
        if (message.DeduplicationId is { } deduplicationId && definition.DeduplicationWindow > TimeSpan.Zero)
        {
            if (queue.Deduplication.TryGetValue(deduplicationId, out var expires) && expires > now)
            {
                return false;
            }

            queue.Deduplication[deduplicationId] = now + definition.DeduplicationWindow.Ticks;
            if (++queue.DeduplicationWrites >= DeduplicationSweep)
            {
                queue.DeduplicationWrites = 0;
                foreach (var (id, until) in queue.Deduplication.ToList())
                {
                    if (until <= now)
                    {
                        queue.Deduplication.Remove(id);
                    }
                }
            }
        }

        var sequence = ++_lastSequence;
        queue.Messages.Add(sequence, new QueuedMessage(sequence, ToMessage(message, now), message.GroupKey)
        {
            State = MessageState.Ready,
            VisibleAt = message.VisibleAtTicks(now, definition.DefaultDelay),
            EnqueuedAt = now,
            ExpiresAt = now + definition.Retention.Ticks,
        });
        touched.Add(definition.Name.Value);
        return true;
    }

    private static Message ToMessage(PreparedMessage m, long now) =>
        new(m.Id, m.Type, m.Source, new DateTimeOffset(now, TimeSpan.Zero), m.ContentType, m.Data)
        {
            DataSchema = m.DataSchema,
            Subject = m.Subject,
            CorrelationId = m.CorrelationId,
            CausationId = m.CausationId,
            TraceParent = m.TraceParent,
            GroupKey = m.GroupKey,
            Metadata = m.Metadata ?? Message.NoMetadata,
        };
}
