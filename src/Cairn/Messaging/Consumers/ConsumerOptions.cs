namespace Cairn.Messaging.Consumers;

/// <summary>How a consumer retries a failed message.</summary>
public sealed record RetryPolicy
{
    /// <summary>Retries in process, at once, before the message is given back (2 by default).</summary>
    public int ImmediateRetries { get; init; } = 2;

    /// <summary>The redelivery delay after the first failed receive (1 s by default); it doubles each time.</summary>
    public TimeSpan InitialDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest redelivery delay (5 minutes by default).</summary>
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>The growth of the delay per receive (2 by default).</summary>
    public double BackoffFactor { get; init; } = 2;

    /// <summary>The random spread of each delay, as a fraction (0.2: ±20%), so retries of many messages do not stampede.</summary>
    public double Jitter { get; init; } = 0.2;

    /// <summary>
    /// Exceptions that can never succeed on a retry: the message goes straight to the dead-letter queue. A thrown
    /// exception matches when it, or any exception it wraps, is of one of these types.
    /// <see cref="NonRetryableMessageException"/> always matches.
    /// </summary>
    public IReadOnlyList<Type> NonRetryable { get; init; } = [];

    /// <summary>
    /// Whether a failure may be retried: not when it, or any exception it wraps (every inner exception of an
    /// <see cref="AggregateException"/>, not only the first), is non-retryable.
    /// </summary>
    public bool IsRetryable(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        var pending = new Stack<Exception>();
        pending.Push(exception);
        // Bounded: an exception graph is a tree in practice, but one built by hand could hold a cycle.
        for (var seen = 0; pending.Count > 0 && seen < 1000; seen++)
        {
            var e = pending.Pop();
            if (e is NonRetryableMessageException || NonRetryable.Any(t => t.IsInstanceOfType(e)))
            {
                return false;
            }

            if (e is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions)
                {
                    pending.Push(inner);
                }
            }
            else if (e.InnerException is { } inner)
            {
                pending.Push(inner);
            }
        }

        return true;
    }

    /// <summary>The redelivery delay after the given receive failed, with jitter from <paramref name="random"/>.</summary>
    public TimeSpan DelayAfter(int receiveCount, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        var exponent = Math.Clamp(receiveCount - 1, 0, 62);
        var ticks = Math.Min(InitialDelay.Ticks * Math.Pow(BackoffFactor, exponent), MaxDelay.Ticks);
        var spread = 1 + (Jitter * ((random.NextDouble() * 2) - 1));
        return TimeSpan.FromTicks((long)Math.Clamp(ticks * spread, 0, MaxDelay.Ticks));
    }

    /// <summary>
    /// The time a message failing on every receive spends given back before its last allowed receive, without
    /// jitter: the sum of the delays after receives 1 to <paramref name="maxReceiveCount"/> - 1.
    /// </summary>
    internal TimeSpan BackoffBeforeLastReceive(int maxReceiveCount)
    {
        double ticks = 0;
        for (var receive = 1; receive < maxReceiveCount; receive++)
        {
            ticks += Math.Min(InitialDelay.Ticks * Math.Pow(BackoffFactor, Math.Min(receive - 1, 62)), MaxDelay.Ticks);
        }

        return TimeSpan.FromTicks((long)Math.Min(ticks, TimeSpan.MaxValue.Ticks));
    }

    /// <summary>Refuses impossible settings.</summary>
    public void Validate()
    {
        Check(ImmediateRetries is >= 0 and <= 100, $"ImmediateRetries is {ImmediateRetries}; it must be between 0 and 100");
        Check(InitialDelay >= TimeSpan.Zero && MaxDelay >= InitialDelay && MaxDelay <= TimeSpan.FromDays(365), $"InitialDelay ({InitialDelay}) and MaxDelay ({MaxDelay}) must satisfy 0 <= InitialDelay <= MaxDelay <= 365 days");
        Check(BackoffFactor is >= 1 and <= 100, $"BackoffFactor is {BackoffFactor}; it must be between 1 and 100");
        Check(Jitter is >= 0 and <= 1, $"Jitter is {Jitter}; it must be between 0 and 1");
        Check(NonRetryable is not null, "NonRetryable is null; leave it out for none");
        Check(NonRetryable!.All(t => typeof(Exception).IsAssignableFrom(t)), "NonRetryable lists a type that is not an exception");
    }

    private static void Check(bool ok, string fault)
    {
        if (!ok)
        {
            throw new InvalidMessageException($"Retry policy: {fault}.");
        }
    }
}

/// <summary>A hosted consumer's settings.</summary>
public sealed record ConsumerOptions
{
    /// <summary>Creates the settings of a consumer of a queue; its name defaults to the queue's.</summary>
    public ConsumerOptions(QueueName queue, string? name = null)
    {
        Queue = queue;
        Name = MessagingNames.Validate("consumer", name ?? queue.Value);
    }

    /// <summary>The queue consumed.</summary>
    public QueueName Queue { get; }

    /// <summary>The consumer's name: its inbox key, and its tag in metrics and logs. Two consumers of one queue need two names.</summary>
    public string Name
    {
        get;
        init => field = MessagingNames.Validate("consumer", value);
    }

    /// <summary>How many messages are handled at once (the processor count by default).</summary>
    public int Concurrency { get; init; } = Environment.ProcessorCount;

    /// <summary>How many messages the consumer holds leased at once, handled or waiting (twice the concurrency by default, at most 1,000).</summary>
    public int? Prefetch { get; init; }

    /// <summary>The lease of each delivery; the queue's when null.</summary>
    public TimeSpan? Lease { get; init; }

    /// <summary>
    /// Extends the lease of each message the consumer holds, waiting for a worker or being handled, so neither a slow
    /// handler nor a wait behind slow handlers is raced by a redelivery (on by default).
    /// </summary>
    public bool ExtendLeaseWhileHandling { get; init; } = true;

    /// <summary>
    /// How long a handler may run before it is cancelled and its message retried (1 minute by default; at most 30 days,
    /// or <see cref="Timeout.InfiniteTimeSpan"/> for no limit).
    /// </summary>
    public TimeSpan HandlerTimeout { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Records handled ids in the inbox with the handler's effects, so a redelivery has no second effect (on by default).</summary>
    public bool UseInbox { get; init; } = true;

    /// <summary>
    /// How long the inbox remembers a handled message (14 days by default, the default retention of a queue): the
    /// consumer forgets older records about once an hour. Keep it at least as long as the queue's retention. A minute
    /// to 3,650 days.
    /// </summary>
    public TimeSpan InboxRetention { get; init; } = TimeSpan.FromDays(14);

    /// <summary>The retry policy.</summary>
    public RetryPolicy Retry { get; init; } = new();

    /// <summary>How long one receive waits for messages before it asks again (20 s by default); woken at once by a send.</summary>
    public TimeSpan PollWait { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The effective prefetch.</summary>
    internal int EffectivePrefetch => Prefetch ?? Math.Min(Concurrency * 2, MaxPrefetch);

    /// <summary>The most messages a consumer holds leased at once, and so the most it handles at once.</summary>
    private const int MaxPrefetch = 1000;

    /// <summary>The longest <see cref="HandlerTimeout"/> short of none: well inside what a timer can wait (about 49 days).</summary>
    private static readonly TimeSpan MaxHandlerTimeout = TimeSpan.FromDays(30);

    /// <summary>The longest <see cref="InboxRetention"/>: ten years, far inside what a time can go back from now.</summary>
    private static readonly TimeSpan MaxInboxRetention = TimeSpan.FromDays(3650);

    /// <summary>Refuses impossible settings, naming them.</summary>
    public void Validate()
    {
        if (Concurrency is < 1 or > MaxPrefetch)
        {
            throw new InvalidMessageException($"Consumer '{Name}': Concurrency is {Concurrency}; it must be between 1 and {MaxPrefetch}.");
        }

        if (EffectivePrefetch < Concurrency || EffectivePrefetch > MaxPrefetch)
        {
            throw new InvalidMessageException($"Consumer '{Name}': Prefetch is {EffectivePrefetch}; it must be between the concurrency ({Concurrency}) and {MaxPrefetch}.");
        }

        if (HandlerTimeout != Timeout.InfiniteTimeSpan && (HandlerTimeout <= TimeSpan.Zero || HandlerTimeout > MaxHandlerTimeout))
        {
            throw new InvalidMessageException($"Consumer '{Name}': HandlerTimeout is {HandlerTimeout}; it must be positive and at most {MaxHandlerTimeout.TotalDays} days, or Timeout.InfiniteTimeSpan for none.");
        }

        if (PollWait <= TimeSpan.Zero || PollWait > TimeSpan.FromMinutes(5))
        {
            throw new InvalidMessageException($"Consumer '{Name}': PollWait is {PollWait}; it must be between 0 and 5 minutes.");
        }

        if (InboxRetention < TimeSpan.FromMinutes(1) || InboxRetention > MaxInboxRetention)
        {
            throw new InvalidMessageException($"Consumer '{Name}': InboxRetention is {InboxRetention}; it must be between a minute and {MaxInboxRetention.TotalDays:0} days.");
        }

        if (Retry is null)
        {
            throw new InvalidMessageException($"Consumer '{Name}': Retry is null; leave it out for the default policy.");
        }

        new ReceiveOptions { Lease = Lease }.Validate();
        Retry.Validate();
    }
}

/// <summary>A handler ran past its consumer's <see cref="ConsumerOptions.HandlerTimeout"/> and was cancelled.</summary>
public sealed class HandlerTimeoutException(string consumer, TimeSpan timeout)
    : TimeoutException($"The handler of consumer '{consumer}' ran past its timeout of {timeout} and was cancelled.");

/// <summary>A message's data could not be turned into the type registered for its type name; retrying cannot help.</summary>
public sealed class MessageDeserializationException(Message message, string reason, Exception? inner)
    : NonRetryableMessageException($"Message {message.Id} ({message.Type}) could not be deserialized: {reason}", inner)
{
    /// <summary>The message that failed.</summary>
    public Message FailedMessage { get; } = message;
}
