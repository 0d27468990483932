using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Cairn.Messaging;

namespace Cairn.Diagnostics;

/// <summary>
/// The names under which Cairn records metrics and traces, so OpenTelemetry picks them up with
/// <c>AddMeter("Cairn.*")</c> and <c>AddSource("Cairn.*")</c> and no further glue.
/// </summary>
public static class CairnDiagnostics
{
    /// <summary>The meter and activity source of the event store.</summary>
    public const string EventStoreName = "Cairn.EventStore";

    /// <summary>The meter and activity source of subscriptions.</summary>
    public const string SubscriptionsName = "Cairn.Subscriptions";

    /// <summary>The meter and activity source of queues, topics and consumers.</summary>
    public const string MessagingName = "Cairn.Messaging";

    /// <summary>The meter of projections.</summary>
    public const string ProjectionsName = "Cairn.Projections";

    internal static readonly ActivitySource EventStoreSource = new(EventStoreName);
    internal static readonly ActivitySource MessagingSource = new(MessagingName);
    internal static readonly ActivitySource SubscriptionSource = new(SubscriptionsName);

    private static readonly Meter EventStoreMeter = new(EventStoreName);
    private static readonly Meter SubscriptionMeter = new(SubscriptionsName);
    private static readonly Meter MessagingMeter = new(MessagingName);

    internal static readonly Counter<long> MessagesSent = MessagingMeter.CreateCounter<long>("cairn.messaging.sent", "{message}", "Message copies put in queues by sends and publishes.");
    internal static readonly Counter<long> MessagesReceived = MessagingMeter.CreateCounter<long>("cairn.messaging.received", "{message}", "Deliveries leased to receivers.");
    internal static readonly Counter<long> MessagesAcknowledged = MessagingMeter.CreateCounter<long>("cairn.messaging.acknowledged", "{message}", "Deliveries acknowledged (deleted).");
    internal static readonly Counter<long> MessagesRetried = MessagingMeter.CreateCounter<long>("cairn.messaging.retried", "{message}", "Deliveries released with a failure (one released on its last allowed receive, which the broker dead-letters, counts in dead_lettered too), and immediate retries by consumers.");
    internal static readonly Counter<long> MessagesDeadLettered = MessagingMeter.CreateCounter<long>("cairn.messaging.dead_lettered", "{message}", "Messages moved to a dead-letter queue.");
    internal static readonly Counter<long> LeaseExpiries = MessagingMeter.CreateCounter<long>("cairn.messaging.lease_expiries", "{message}", "Deliveries whose lease ran out before they were settled.");
    internal static readonly Histogram<double> HandlerDuration = MessagingMeter.CreateHistogram<double>("cairn.messaging.handler.duration", "s", "Time a consumer's handler took for one message, by outcome.");

    internal static readonly Counter<long> RelayPublished = MessagingMeter.CreateCounter<long>("cairn.messaging.relay.published", "{message}", "Outbox messages the relay published and the broker confirmed.");
    internal static readonly Counter<long> RelayReturned = MessagingMeter.CreateCounter<long>("cairn.messaging.relay.returned", "{message}", "Outbox messages the relay gave back to the outbox untried, the broker not having confirmed them.");
    internal static readonly Histogram<double> RelayConfirmDuration = MessagingMeter.CreateHistogram<double>("cairn.messaging.relay.confirm.duration", "s", "Time from publishing a batch of outbox messages to the broker's last answer for it.");

    /// <summary>
    /// The statistics of the queues declared through each instrumented broker, read afresh by each gauge that reports
    /// them: one more read of a queue's statistics per collection costs less than a reading shared with a stale one.
    /// </summary>
    private static readonly ConcurrentDictionary<object, Func<IEnumerable<QueueStats>>> QueueSources = new();

    /// <summary>The statistics of the outbox of each queue a relay publishes, named by the queue it publishes to.</summary>
    private static readonly ConcurrentDictionary<object, Func<IEnumerable<QueueStats>>> OutboxSources = new();

    internal static readonly Counter<long> Appends = EventStoreMeter.CreateCounter<long>("cairn.eventstore.appends", "{append}", "Appends attempted, by outcome.");
    internal static readonly Counter<long> EventsAppended = EventStoreMeter.CreateCounter<long>("cairn.eventstore.events_appended", "{event}", "Events written.");
    internal static readonly Counter<long> Conflicts = EventStoreMeter.CreateCounter<long>("cairn.eventstore.conflicts", "{append}", "Appends refused for a wrong expected version or a failed condition.");
    internal static readonly Histogram<double> AppendDuration = EventStoreMeter.CreateHistogram<double>("cairn.eventstore.append.duration", "s", "Time from the call to the durable commit.");

    internal static readonly Counter<long> SubscriptionEvents = SubscriptionMeter.CreateCounter<long>("cairn.subscription.events", "{event}", "Events delivered to subscription handlers.");
    internal static readonly Counter<long> SubscriptionFailures = SubscriptionMeter.CreateCounter<long>("cairn.subscription.failures", "{failure}", "Subscription stops: a handler threw or the store failed.");
    internal static readonly Histogram<double> SubscriptionHandlerDuration = SubscriptionMeter.CreateHistogram<double>("cairn.subscription.handler.duration", "s", "Time a handler took for one event.");

    private static readonly ConcurrentDictionary<object, Func<Measurement<long>>> LagSources = new();

    private static readonly Meter ProjectionMeter = new(ProjectionsName);
    private static readonly ConcurrentDictionary<object, Func<Projections.ProjectionStatus>> ProjectionSources = new();
    internal static readonly Counter<long> ProjectionEvents = ProjectionMeter.CreateCounter<long>("cairn.projection.events", "{event}", "Events applied by projections (batches, catch-ups and rebuilds).");
    internal static readonly Counter<long> ProjectionFailures = ProjectionMeter.CreateCounter<long>("cairn.projection.failures", "{failure}", "Failed attempts to apply an event to a projection.");
    internal static readonly Counter<long> ProjectionDeadLetters = ProjectionMeter.CreateCounter<long>("cairn.projection.dead_lettered", "{event}", "Events a projection skipped and recorded as dead letters.");

    internal static void TrackProjection(object owner, Func<Projections.ProjectionStatus> measure) => ProjectionSources[owner] = measure;

    internal static void UntrackProjection(object owner) => ProjectionSources.TryRemove(owner, out _);

    static CairnDiagnostics()
    {
        SubscriptionMeter.CreateObservableGauge("cairn.subscription.lag", () => LagSources.Values.Select(f => f()), "{event}", "Events in the log not yet handled by the subscription.");
        ProjectionGauge("cairn.projection.position", "{position}", "The position the projection's serving read model has reached.", s => s.Position.Value);
        ProjectionGauge("cairn.projection.lag", "{event}", "Events in the log the projection has not applied yet.", s => s.LagEvents);
        ProjectionGauge("cairn.projection.lag.seconds", "s", "How long the oldest event the projection has not applied has waited.", s => s.LagSeconds);
        ProjectionGauge("cairn.projection.rate", "{event}/s", "Events applied per second over the last ten seconds.", s => s.EventsPerSecond);
        ProjectionGauge("cairn.projection.rebuild.progress", "1", "The share of the log a rebuild has covered, 0 to 1; 1 when none runs.", s => s.Rebuild?.Fraction ?? 1);
        MessagingMeter.CreateObservableGauge("cairn.messaging.queue.depth", () => Read(QueueSources).SelectMany(Depth), "{message}", "Messages in a queue, by state (visible, leased, delayed, dead_lettered, parked).");
        MessagingMeter.CreateObservableGauge("cairn.messaging.queue.oldest_age", () => Read(QueueSources).SelectMany(OldestAge), "s", "How long the oldest due or leased message in a queue has waited since it was sent; 0 when there is none, nothing when the statistics are not exact.");
        MessagingMeter.CreateObservableGauge("cairn.messaging.relay.backlog", () => Read(OutboxSources).SelectMany(Backlog), "{message}", "Messages waiting in the outbox of a queue, by state (due, in_flight, delayed, dead_lettered).");
        MessagingMeter.CreateObservableGauge("cairn.messaging.relay.oldest_age", () => Read(OutboxSources).SelectMany(OldestAge), "s", "How long the oldest due or in-flight message in the outbox of a queue has waited since it was sent; 0 when there is none.");
    }

    /// <summary>What every source reads now; a source that fails is left out of this reading (a gauge never throws).</summary>
    private static List<QueueStats> Read(ConcurrentDictionary<object, Func<IEnumerable<QueueStats>>> sources)
    {
        var read = new List<QueueStats>();
        foreach (var source in sources.Values)
        {
            try
            {
                read.AddRange(source());
            }
            catch (Exception)
            {
                // Its broker is closing or its backend unreachable: the next collection reads it again.
            }
        }

        return read;
    }

    private static IEnumerable<Measurement<long>> Depth(QueueStats stats)
    {
        var queue = new KeyValuePair<string, object?>("queue", stats.Queue.Value);
        yield return new(stats.Visible, queue, new("state", "visible"));
        yield return new(stats.Leased, queue, new("state", "leased"));
        yield return new(stats.Delayed, queue, new("state", "delayed"));
        yield return new(stats.DeadLettered, queue, new("state", "dead_lettered"));
        yield return new(stats.Parked, queue, new("state", "parked"));
    }

    private static IEnumerable<Measurement<long>> Backlog(QueueStats stats)
    {
        var queue = new KeyValuePair<string, object?>("queue", stats.Queue.Value);
        yield return new(stats.Visible, queue, new("state", "due"));
        yield return new(stats.Leased, queue, new("state", "in_flight"));
        yield return new(stats.Delayed, queue, new("state", "delayed"));
        yield return new(stats.DeadLettered, queue, new("state", "dead_lettered"));
    }

    /// <summary>
    /// The oldest due or leased message's age, 0 when there is none; nothing when the backend cannot tell, as over
    /// RabbitMQ, where an empty reading may hide what another process holds (a wrong 0 would hide a stall).
    /// </summary>
    private static IEnumerable<Measurement<double>> OldestAge(QueueStats stats)
    {
        if (stats.OldestAge is { } age)
        {
            yield return new(age.TotalSeconds, new KeyValuePair<string, object?>("queue", stats.Queue.Value));
        }
        else if (stats.Exact)
        {
            yield return new(0, new KeyValuePair<string, object?>("queue", stats.Queue.Value));
        }
    }

    private static void ProjectionGauge(string name, string unit, string description, Func<Projections.ProjectionStatus, double> value) =>
        ProjectionMeter.CreateObservableGauge(name, () => ProjectionSources.Values.Select(f => f()).Select(s => new Measurement<double>(value(s), new KeyValuePair<string, object?>("projection", s.Name))), unit, description);

    internal static void TrackLag(object owner, Func<Measurement<long>> measure) => LagSources[owner] = measure;

    internal static void UntrackLag(object owner) => LagSources.TryRemove(owner, out _);

    /// <summary>The longest a gauge waits for its queues' statistics.</summary>
    internal static readonly TimeSpan StatisticsTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Reads queues' statistics for a gauge. A gauge callback cannot await, so the reads block the collection, and every
    /// metric of the process waits with it: they all start at once, each on the thread pool (a backend may block before
    /// it returns its task: SQLite's reads wait for a lock there), and a backend that hangs (a RabbitMQ stopped but not
    /// gone) holds the collection no longer than <see cref="StatisticsTimeout"/> however many queues it has. A queue whose
    /// read fails or runs out of time is left out of this reading; the next tries again.
    /// </summary>
    internal static List<QueueStats> ReadForGauge<TKey>(IEnumerable<TKey> keys, Func<TKey, CancellationToken, Task<QueueStats>> read)
    {
        using var timeout = new CancellationTokenSource();
        // The token, not its source: a read the pool starts late, after the source is disposed, still gets one (cancelled).
        var token = timeout.Token;
        var readings = keys.Select(key => Task.Run(() => read(key, token), CancellationToken.None)).ToArray();
        try
        {
            if (!Task.WaitAll(readings, StatisticsTimeout))
            {
                // Time is up: the reads that heed the token stop; those that do not are not waited for.
                timeout.Cancel();
            }
        }
        catch (AggregateException)
        {
            // A read failed (closed, or its backend or RabbitMQ away): it is left out below.
        }

        var stats = new List<QueueStats>(readings.Length);
        foreach (var reading in readings)
        {
            if (reading.IsCompletedSuccessfully)
            {
                stats.Add(reading.Result);
            }
            else
            {
                // A late failure is observed, not left to the unobserved-exception event.
                reading.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        return stats;
    }

    /// <summary>Reports the queues <paramref name="read"/> gives in <c>cairn.messaging.queue.*</c> until untracked.</summary>
    internal static void TrackQueues(object owner, Func<IEnumerable<QueueStats>> read) => QueueSources[owner] = read;

    internal static void UntrackQueues(object owner) => QueueSources.TryRemove(owner, out _);

    /// <summary>
    /// Reports the outboxes <paramref name="read"/> gives in <c>cairn.messaging.relay.*</c> until untracked, each
    /// <see cref="QueueStats.Queue"/> naming the queue the outbox is for.
    /// </summary>
    internal static void TrackOutboxes(object owner, Func<IEnumerable<QueueStats>> read) => OutboxSources[owner] = read;

    internal static void UntrackOutboxes(object owner) => OutboxSources.TryRemove(owner, out _);

    /// <summary>The meter of deciders and their snapshots.</summary>
    public const string DomainName = "Cairn.Domain";

    private static readonly Meter DomainMeter = new(DomainName);
    internal static readonly Counter<long> SnapshotsTaken = DomainMeter.CreateCounter<long>("cairn.snapshots.taken", "{snapshot}", "Decider snapshots saved, by kind.");
    internal static readonly Counter<long> SnapshotsUsed = DomainMeter.CreateCounter<long>("cairn.snapshots.used", "{snapshot}", "Decider loads that started from a snapshot, by kind.");
    internal static readonly Counter<long> SnapshotsIgnored = DomainMeter.CreateCounter<long>("cairn.snapshots.ignored", "{snapshot}", "Snapshots a load passed over, by kind and reason (schema_version, unreadable, beyond_stream, history_changed).");
}
