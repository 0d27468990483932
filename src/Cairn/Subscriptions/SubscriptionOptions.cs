using Cairn.EventStore;

namespace Cairn.Subscriptions;

/// <summary>Where a subscription with no stored checkpoint begins.</summary>
public enum SubscriptionStart
{
    /// <summary>From the first event of the log.</summary>
    Beginning,

    /// <summary>
    /// From the events committed after the subscription first starts: the head it finds then is stored as its
    /// checkpoint at once, so a retry or a later start goes on from there.
    /// </summary>
    End,
}

/// <summary>The settings of a catch-up subscription.</summary>
public sealed record SubscriptionOptions
{
    /// <summary>The subscription's name, also its checkpoint key.</summary>
    public required string Name { get; init; }

    /// <summary>Which events it receives: <c>$all</c>, a category, a stream or event types.</summary>
    public EventFilter Filter { get; init; } = EventFilter.All;

    /// <summary>Where it begins when no checkpoint is stored.</summary>
    public SubscriptionStart Start { get; init; } = SubscriptionStart.Beginning;

    /// <summary>How many events may wait, read but not handled: the bound on its memory.</summary>
    public int BufferSize { get; init; } = 1024;

    /// <summary>Store the checkpoint after this many handled events (and on stop).</summary>
    public int CheckpointEvery { get; init; } = 100;

    /// <summary>Store the checkpoint at least this often while events are handled.</summary>
    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The first delay before a failed subscription resumes; it doubles up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The longest delay between resumptions; above zero when <see cref="MaxRetries"/> is null.</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How many times it resumes after a failure before it stays stopped (status <see cref="SubscriptionState.Stopped"/>):
    /// it stops at the failure after these, <c>MaxRetries + 1</c> in a row; null to retry forever.
    /// </summary>
    public int? MaxRetries { get; init; }

    /// <summary>The longest <see cref="CheckpointInterval"/> and <see cref="MaxRetryDelay"/>: 30 days.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromDays(30);

    /// <summary>Refuses impossible settings.</summary>
    public void Validate()
    {
        CheckpointKeys.Validate(Name);
        ArgumentNullException.ThrowIfNull(Filter);
        if (!Enum.IsDefined(Start))
        {
            throw new ArgumentOutOfRangeException(nameof(Start), Start, "Start must be one of SubscriptionStart's values.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(BufferSize, 1, nameof(BufferSize));
        ArgumentOutOfRangeException.ThrowIfLessThan(CheckpointEvery, 1, nameof(CheckpointEvery));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(CheckpointInterval, TimeSpan.Zero, nameof(CheckpointInterval));
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryDelay, TimeSpan.Zero, nameof(RetryDelay));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRetryDelay, RetryDelay, nameof(MaxRetryDelay));

        // Each is waited out with a timer, and a timer waits at most about 49 days.
        ArgumentOutOfRangeException.ThrowIfGreaterThan(CheckpointInterval, MaxWait, nameof(CheckpointInterval));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxRetryDelay, MaxWait, nameof(MaxRetryDelay));
        if (MaxRetries is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRetries), MaxRetries, "MaxRetries must be 0 or more, or null.");
        }

        // Retrying forever with no pause would spin a core on a handler that keeps failing, and flood the log.
        if (MaxRetries is null && MaxRetryDelay == TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRetryDelay), MaxRetryDelay, $"Subscription '{Name}': MaxRetryDelay must be above zero when MaxRetries is null (resuming forever), or a failing handler would be retried in a tight loop.");
        }
    }
}

/// <summary>What a subscription is doing.</summary>
public enum SubscriptionState
{
    /// <summary>Not started, stopped by its owner, or given up after <see cref="SubscriptionOptions.MaxRetries"/>.</summary>
    Stopped,

    /// <summary>Reading history.</summary>
    CatchingUp,

    /// <summary>Caught up; handling events as they are committed.</summary>
    Live,

    /// <summary>Failed (see <see cref="SubscriptionStatus.LastError"/>) and waiting to resume from its checkpoint.</summary>
    Faulted,
}

/// <summary>A snapshot of a subscription's state.</summary>
/// <param name="Name">The subscription.</param>
/// <param name="State">What it is doing.</param>
/// <param name="Position">The position of the last event it handled.</param>
/// <param name="Failures">Failures in a row since its last success.</param>
/// <param name="LastError">The error of its last failure, if any.</param>
/// <param name="LastErrorAt">When that failure happened.</param>
public sealed record SubscriptionStatus(string Name, SubscriptionState State, GlobalPosition Position, int Failures, Exception? LastError, DateTimeOffset? LastErrorAt);
