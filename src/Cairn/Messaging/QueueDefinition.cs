namespace Cairn.Messaging;

/// <summary>A durable queue's settings. Declaring a queue again updates every setting but <see cref="Fifo"/>.</summary>
public sealed record QueueDefinition
{
    /// <summary>The default limit on a message's data and metadata: 256 KiB.</summary>
    public const int DefaultMaxMessageSize = 256 * 1024;

    /// <summary>Creates the settings of a queue.</summary>
    public QueueDefinition(QueueName name) => Name = name;

    /// <summary>The queue's name.</summary>
    public QueueName Name { get; init; }

    /// <summary>
    /// FIFO delivery: messages of one group (<see cref="OutgoingMessage.GroupKey"/>) are delivered one at a time, in the
    /// order sent, while groups run in parallel; a dead-lettered head parks the rest of its group behind it.
    /// </summary>
    public bool Fifo { get; init; }

    /// <summary>How many receives a message gets before it is dead-lettered (5 by default).</summary>
    public int MaxReceiveCount { get; init; } = 5;

    /// <summary>How long a received message stays hidden from other receivers unless settled (30 s by default).</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an undelivered message is kept (14 days by default); older ones are dropped, not delivered.</summary>
    public TimeSpan Retention { get; init; } = TimeSpan.FromDays(14);

    /// <summary>The largest message accepted, in bytes of data and metadata.</summary>
    public int MaxMessageSize { get; init; } = DefaultMaxMessageSize;

    /// <summary>How long a deduplication id is remembered (5 minutes by default).</summary>
    public TimeSpan DeduplicationWindow { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>A delay applied to every message sent without one of its own.</summary>
    public TimeSpan DefaultDelay { get; init; } = TimeSpan.Zero;

    /// <summary>Refuses impossible settings with <see cref="InvalidMessageException"/> naming the setting.</summary>
    public void Validate()
    {
        if (Name == default)
        {
            throw new InvalidMessageException("A queue definition has no name.");
        }

        Check(MaxReceiveCount is >= 1 and <= 1000, nameof(MaxReceiveCount), $"is {MaxReceiveCount}; it must be between 1 and 1000");
        Check(Lease >= TimeSpan.FromMilliseconds(1) && Lease <= TimeSpan.FromHours(12), nameof(Lease), $"is {Lease}; it must be between 1 ms and 12 hours");
        Check(Retention >= TimeSpan.FromSeconds(1) && Retention <= TimeSpan.FromDays(3650), nameof(Retention), $"is {Retention}; it must be between 1 s and 10 years");
        Check(MaxMessageSize is >= 1 and <= 256 * 1024 * 1024, nameof(MaxMessageSize), $"is {MaxMessageSize}; it must be between 1 byte and 256 MiB");
        Check(DeduplicationWindow >= TimeSpan.Zero && DeduplicationWindow <= TimeSpan.FromDays(7), nameof(DeduplicationWindow), $"is {DeduplicationWindow}; it must be between 0 and 7 days");
        Check(DefaultDelay >= TimeSpan.Zero && DefaultDelay <= TimeSpan.FromDays(365), nameof(DefaultDelay), $"is {DefaultDelay}; it must be between 0 and 365 days");
        Check(DefaultDelay < Retention, nameof(DefaultDelay), $"is {DefaultDelay}, not shorter than the retention of {Retention}: every message would expire before it could be received");
    }

    private void Check(bool ok, string setting, string fault)
    {
        if (!ok)
        {
            throw new InvalidMessageException($"Queue '{Name}': {setting} {fault}.");
        }
    }
}

/// <summary>How to receive: how many messages at most, how long to lease them, how long to wait for one.</summary>
public sealed record ReceiveOptions
{
    /// <summary>The most messages returned (10 by default, at most 1,000).</summary>
    public int MaxMessages { get; init; } = 10;

    /// <summary>The lease of each delivery; the queue's when null.</summary>
    public TimeSpan? Lease { get; init; }

    /// <summary>
    /// Long polling: how long to wait when no message is visible (none by default, at most 5 minutes). A waiting
    /// receive is woken by the commit that makes a message visible, not by polling.
    /// </summary>
    public TimeSpan Wait { get; init; } = TimeSpan.Zero;

    /// <summary>Refuses impossible settings.</summary>
    public void Validate()
    {
        if (MaxMessages is < 1 or > 1000)
        {
            throw new InvalidMessageException($"ReceiveOptions.MaxMessages is {MaxMessages}; it must be between 1 and 1000.");
        }

        if (Lease is { } lease && (lease < TimeSpan.FromMilliseconds(1) || lease > TimeSpan.FromHours(12)))
        {
            throw new InvalidMessageException($"ReceiveOptions.Lease is {lease}; it must be between 1 ms and 12 hours.");
        }

        if (Wait < TimeSpan.Zero || Wait > TimeSpan.FromMinutes(5))
        {
            throw new InvalidMessageException($"ReceiveOptions.Wait is {Wait}; it must be between 0 and 5 minutes.");
        }
    }
}

/// <summary>What a queue holds right now.</summary>
public sealed record QueueStats
{
    /// <summary>The queue.</summary>
    public required QueueName Queue { get; init; }

    /// <summary>
    /// Messages whose delay or lease is over, not parked. In a FIFO queue this counts the messages waiting behind a
    /// leased head too, though a receive returns only each group's head.
    /// </summary>
    public long Visible { get; init; }

    /// <summary>Messages leased to a receiver, not parked.</summary>
    public long Leased { get; init; }

    /// <summary>Messages hidden until a later time, not parked: delayed, scheduled, or released with a delay.</summary>
    public long Delayed { get; init; }

    /// <summary>Messages in the queue's dead-letter queue.</summary>
    public long DeadLettered { get; init; }

    /// <summary>
    /// FIFO messages waiting behind a dead-lettered head of their group, whatever their own state: a parked message
    /// is counted here and not as visible, leased or delayed, so the counts add up to what the queue holds.
    /// </summary>
    public long Parked { get; init; }

    /// <summary>
    /// How long the oldest message that is due or leased has waited since it was sent, or null when there is none:
    /// delayed messages wait by design and dead letters are counted apart, so neither makes it grow.
    /// </summary>
    public TimeSpan? OldestAge { get; init; }

    /// <summary>
    /// False when the backend sees only part of the queue, so the counts are a lower bound and an empty reading does not
    /// mean an empty queue: over RabbitMQ, deliveries another process has taken or holds are counted by none.
    /// </summary>
    public bool Exact { get; init; } = true;

    /// <summary>
    /// The statistics from a backend's counts by state (<paramref name="visible"/>, <paramref name="leased"/> and
    /// <paramref name="delayed"/> including the parked messages in each state): a parked message is counted as parked
    /// alone, whatever its own state, so that the counts add up to the queue.
    /// </summary>
    internal static QueueStats Counted(QueueName queue, long visible, long leased, long delayed, long deadLettered, long parked, long parkedVisible, long parkedLeased, long? oldestEnqueuedTicks, long nowTicks) => new()
    {
        Queue = queue,
        Visible = visible - parkedVisible,
        Leased = leased - parkedLeased,
        Delayed = delayed - (parked - parkedVisible - parkedLeased),
        DeadLettered = deadLettered,
        Parked = parked,
        OldestAge = oldestEnqueuedTicks is { } ticks ? TimeSpan.FromTicks(Math.Max(0, nowTicks - ticks)) : null,
    };
}
