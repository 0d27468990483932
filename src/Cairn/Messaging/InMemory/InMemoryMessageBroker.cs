using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Messaging.InMemory;

/// <summary>
/// Queues, topics, dead letters and the inbox held in memory beside an <see cref="InMemoryEventStore"/>, for tests and
/// throwaway tools. It keeps every promise of the messaging conformance suite except durability. One lock serialises
/// everything that reads or changes the broker; a transaction checks every part under it and appends to the store
/// under the store's own lock, so it commits all of it or nothing.
/// </summary>
public sealed partial class InMemoryMessageBroker : IMessageBroker, Diagnostics.ICorrelationTraceReader
{
    private readonly Lock _gate = new();
    private readonly InMemoryEventStore _store;
    private readonly ICheckpointStore _checkpoints;
    private readonly EventStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly QueueSignal _signal = new();
    private readonly Dictionary<string, QueueState> _queues = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SortedDictionary<string, TopicSubscription>> _topics = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Consumer, MessageId MessageId), (long Ticks, HandledMessage? Message)> _inbox = [];
    private long _lastSequence;

    /// <summary>
    /// Uses the store's clock and options, and writes a transaction's checkpoints to <paramref name="checkpoints"/>
    /// (the <see cref="InMemoryCheckpointStore"/> of the same application, which never fails a write).
    /// </summary>
    public InMemoryMessageBroker(InMemoryEventStore store, ICheckpointStore checkpoints)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(checkpoints);
        _store = store;
        _checkpoints = checkpoints;
        _options = store.Options;
        _time = _options.TimeProvider;
    }

    /// <inheritdoc />
    public Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(queue);
            queue.Validate();
            return Run(cancellationToken, touched =>
            {
                if (!_queues.TryGetValue(queue.Name.Value, out var existing))
                {
                    _queues.Add(queue.Name.Value, new QueueState(queue));
                    return;
                }

                if (existing.Definition.Fifo != queue.Fifo)
                {
                    throw new QueueDefinitionConflictException(queue.Name, $"it exists as a {(existing.Definition.Fifo ? "FIFO" : "standard")} queue, and that cannot change");
                }

                var change = QueueKeeping.Change(existing.Definition, queue);
                if (change.Retention != 0)
                {
                    foreach (var message in existing.Messages.Values)
                    {
                        message.ExpiresAt += change.Retention;
                    }
                }

                if (change.ForgetDeduplication)
                {
                    existing.Deduplication.Clear();
                }
                else if (change.DeduplicationWindow != 0)
                {
                    foreach (var id in existing.Deduplication.Keys.ToList())
                    {
                        existing.Deduplication[id] += change.DeduplicationWindow;
                    }
                }

                // New settings may make messages due sooner: waiting receivers look again.
                existing.Definition = queue;
                touched.Add(queue.Name.Value);
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            return Run(cancellationToken, _ => FindQueue(queue)?.Definition);
        }
        catch (Exception ex)
        {
            return Refusal.Of<QueueDefinition?>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken)
    {
        try
        {
            return Run<IReadOnlyList<QueueDefinition>>(cancellationToken, _ => [.. _queues.Values.Select(q => q.Definition).OrderBy(d => d.Name.Value, StringComparer.Ordinal)]);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<QueueDefinition>>(ex);
        }
    }

    /// <inheritdoc />
    public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            return Run(cancellationToken, _ => _topics.TryAdd(topic.Value, new SortedDictionary<string, TopicSubscription>(StringComparer.Ordinal)));
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(subscription);
            return Run(cancellationToken, _ =>
            {
                var subscriptions = RequireTopic(subscription.Topic);
                RequireQueue(subscription.Queue);
                subscriptions[subscription.Name] = subscription;
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            MessagingNames.Validate("subscription", subscription);
            return Run(cancellationToken, _ => RequireTopic(topic).Remove(subscription));
        }
        catch (Exception ex)
        {
            return Refusal.Of<bool>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(topic.Value, "topic");
            return Run<IReadOnlyList<TopicSubscription>>(cancellationToken, _ => [.. RequireTopic(topic).Values]);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<TopicSubscription>>(ex);
        }
    }

    /// <inheritdoc />
    public Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
    {
        try
        {
            MessagingNames.RequirePresent(queue.Value, "queue");
            return Run(cancellationToken, _ =>
            {
                var now = _time.GetUtcNow().UtcTicks;
                var state = RequireQueue(queue);
                long visible = 0, leased = 0, delayed = 0, dead = 0;
                long? oldest = null;
                Dictionary<string, long>? parkedSince = null;
                foreach (var m in state.Messages.Values)
                {
                    if (m.IsDeadLetter)
                    {
                        dead++;
                        if (m.State == MessageState.ParkingGroup && m.GroupKey is { } group)
                        {
                            parkedSince ??= new Dictionary<string, long>(StringComparer.Ordinal);
                            parkedSince.TryAdd(group, m.Sequence);
                        }

                        continue;
                    }

                    // Past its retention and not held: the next receive drops it, so it no longer counts.
                    if (m.IsExpired(now))
                    {
                        continue;
                    }

                    if (m.VisibleAt <= now)
                    {
                        visible++;
                    }
                    else if (m.State == MessageState.Leased)
                    {
                        leased++;
                    }
                    else
                    {
                        // Delayed: waiting by design, so not what the oldest age measures.
                        delayed++;
                        continue;
                    }

                    // Parked behind a dead letter (met earlier: messages are in order): no receive can take it, so it
                    // says nothing of whether the consumers keep up; the dead letter is counted for itself.
                    if (parkedSince is not null && m.GroupKey is { } key && parkedSince.TryGetValue(key, out var deadAt) && deadAt < m.Sequence)
                    {
                        continue;
                    }

                    oldest = oldest is { } o ? Math.Min(o, m.EnqueuedAt) : m.EnqueuedAt;
                }

                // Parked: waiting behind a dead-lettered head of their group (the first one, as messages are in order).
                long parked = 0, parkedVisible = 0, parkedLeased = 0;
                if (state.Definition.Fifo && parkedSince is not null)
                {
                    foreach (var m in state.Messages.Values)
                    {
                        // One past its retention is dropped by the next receive, as above: not parked, nor visible.
                        if (!m.IsDeadLetter && m.GroupKey is { } group && parkedSince.TryGetValue(group, out var since) && since < m.Sequence
                            && !m.IsExpired(now))
                        {
                            parked++;
                            if (m.VisibleAt <= now)
                            {
                                parkedVisible++;
                            }
                            else if (m.State == MessageState.Leased)
                            {
                                parkedLeased++;
                            }
                        }
                    }
                }

                return QueueStats.Counted(queue, visible, leased, delayed, dead, parked, parkedVisible, parkedLeased, oldest, now);
            });
        }
        catch (Exception ex)
        {
            return Refusal.Of<QueueStats>(ex);
        }
    }

    /// <summary>
    /// The clock, as leases, delays and retention count from it (as the durable backends do): not held at a later time
    /// it used before, or a clock set back would keep every lease and delay from running out until it passed that time.
    /// </summary>
    private long Now() => _time.GetUtcNow().UtcTicks;

    private QueueState? FindQueue(QueueName queue) =>
        queue.Value is { } name && _queues.TryGetValue(name, out var state) ? state : null;

    private QueueState RequireQueue(QueueName queue) => FindQueue(queue) ?? throw new QueueNotFoundException(queue);

    private SortedDictionary<string, TopicSubscription> RequireTopic(TopicName topic) =>
        topic.Value is { } name && _topics.TryGetValue(name, out var subscriptions) ? subscriptions : throw new TopicNotFoundException(topic);


    /// <summary>
    /// Runs an operation under the lock, then wakes the receivers of the queues it put messages in (or let a FIFO group
    /// move on in). Its errors come back through the task.
    /// </summary>
    private Task<T> Run<T>(CancellationToken cancellationToken, Func<HashSet<string>, T> operation)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }

        var touched = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            T result;
            lock (_gate)
            {
                result = operation(touched);
            }

            return Task.FromResult(result);
        }
        catch (Exception error)
        {
            return Task.FromException<T>(error);
        }
        finally
        {
            foreach (var queue in touched)
            {
                _signal.Pulse(queue);
            }
        }
    }

    private Task Run(CancellationToken cancellationToken, Action<HashSet<string>> operation) =>
        Run(cancellationToken, touched =>
        {
            operation(touched);
            return true;
        });
}
