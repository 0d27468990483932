using Cairn.Envelopes;

namespace Cairn.Messaging;

/// <summary>The exception behind a failed delivery: its type, message and stack trace, as text that survives a restart.</summary>
public sealed record FailureInfo(string Type, string Message, string? StackTrace)
{
    /// <summary>The longest stack trace kept.</summary>
    public const int MaxStackTraceLength = 16 * 1024;

    /// <summary>
    /// Captures an exception: its type and message, and as the stack trace its full text, inner exceptions included
    /// (cut at <see cref="MaxStackTraceLength"/> characters).
    /// </summary>
    public static FailureInfo From(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        var stack = exception.ToString();
        if (stack.Length > MaxStackTraceLength)
        {
            stack = stack[..MaxStackTraceLength];
        }

        return new FailureInfo(exception.GetType().FullName ?? exception.GetType().Name, exception.Message, stack);
    }
}

/// <summary>A message in a queue's dead-letter queue, with why and when it got there.</summary>
public sealed class DeadLetter(Message message, QueueName queue, long sequence)
{
    /// <summary>The message, unchanged.</summary>
    public Message Message { get; } = message;

    /// <summary>The queue it was dead-lettered from.</summary>
    public QueueName Queue { get; } = queue;

    /// <summary>Its place in the queue; a redrive back to the same queue keeps it, so FIFO order survives.</summary>
    public long Sequence { get; } = sequence;

    /// <summary>Why it was dead-lettered.</summary>
    public required string Reason { get; init; }

    /// <summary>The last failure recorded, if any.</summary>
    public FailureInfo? Failure { get; init; }

    /// <summary>How many times it was received before it was dead-lettered.</summary>
    public int Attempts { get; init; }

    /// <summary>When it was first received, if ever.</summary>
    public DateTimeOffset? FirstReceivedAt { get; init; }

    /// <summary>When it was last received, if ever.</summary>
    public DateTimeOffset? LastReceivedAt { get; init; }

    /// <summary>When it was dead-lettered.</summary>
    public DateTimeOffset DeadLetteredAt { get; init; }

    /// <summary>When it entered the queue.</summary>
    public DateTimeOffset EnqueuedAt { get; init; }

    /// <summary>How many times it was redriven before.</summary>
    public int Redrives { get; init; }

    /// <summary>For a FIFO queue: the later messages of its group wait behind it until it is redriven or purged.</summary>
    public bool ParksGroup { get; init; }

    /// <inheritdoc />
    public override string ToString() => $"{Message} dead-lettered from {Queue}: {Reason}";
}

/// <summary>Which dead letters to move, where to, and how fast.</summary>
public sealed record RedriveRequest
{
    /// <summary>The dead letters to redrive, by message id; all of them when null.</summary>
    public IReadOnlyList<MessageId>? MessageIds { get; init; }

    /// <summary>The queue to move them to; the queue they came from when null.</summary>
    public QueueName? Target { get; init; }

    /// <summary>The most messages moved per second, at least one a day; no limit when null.</summary>
    public double? MessagesPerSecond { get; init; }

    /// <summary>The slowest pace: one message a day. A slower one's pause between messages would not fit a timer.</summary>
    private const double MinMessagesPerSecond = 1.0 / 86_400;

    /// <summary>Refuses impossible settings.</summary>
    /// <exception cref="InvalidMessageException">A setting is out of range.</exception>
    /// <exception cref="InvalidMessagingNameException"><see cref="Target"/> is a default <see cref="QueueName"/>.</exception>
    public void Validate()
    {
        if (MessagesPerSecond is { } rate && (double.IsNaN(rate) || rate < MinMessagesPerSecond || double.IsInfinity(rate)))
        {
            throw new InvalidMessageException($"RedriveRequest.MessagesPerSecond is {rate}; it must be at least one a day ({MinMessagesPerSecond:G4}), or null for no limit.");
        }

        if (MessageIds is { Count: 0 })
        {
            throw new InvalidMessageException("RedriveRequest.MessageIds is empty; pass null to redrive every dead letter.");
        }

        if (Target is { } target)
        {
            // A default QueueName names no queue: bad input, not a queue that does not exist.
            MessagingNames.RequirePresent(target.Value, "queue");
        }
    }
}

/// <summary>The page size of a dead-letter listing, the same on every backend.</summary>
internal static class DeadLetterListing
{
    /// <summary>The largest page <see cref="IDeadLetterQueue.ListDeadLettersAsync"/> returns.</summary>
    public const int MaxLimit = 10_000;

    /// <summary>Refuses a page size outside 1–<see cref="MaxLimit"/>.</summary>
    /// <exception cref="InvalidMessageException">The limit is out of range.</exception>
    public static void CheckLimit(int limit)
    {
        if (limit is < 1 or > MaxLimit)
        {
            throw new InvalidMessageException($"A dead-letter listing limit of {limit} is refused; it must be between 1 and 10,000.");
        }
    }
}

/// <summary>The reason a dead letter is stored with, the same on every backend.</summary>
internal static class DeadLetterReason
{
    /// <summary>
    /// Checks a reason and returns it as backends store it. It is free text (new lines and tabs stay, since reasons are
    /// often built from an exception's message), but a NUL, which PostgreSQL's text cannot hold, and an unpaired UTF-16
    /// surrogate, which no UTF-8 text can, become U+FFFD: a reason built from any message never fails the move.
    /// </summary>
    /// <exception cref="InvalidMessageException">The reason is null, empty or white space.</exception>
    public static string Check(string? reason)
    {
        if (string.IsNullOrWhiteSpace(reason))
        {
            throw new InvalidMessageException("A dead letter needs a reason.");
        }

        return StoredText.Storable(reason);
    }
}
