using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>A queue, topic, subscription or consumer name broke a rule; nothing was written.</summary>
public sealed class InvalidMessagingNameException(string kind, string? name, string reason)
    : ArgumentException($"Invalid {kind} name '{Printable(name)}': {reason}.")
{
    /// <summary>What was being named: queue, topic, subscription or consumer.</summary>
    public string Kind { get; } = kind;

    /// <summary>The refused name.</summary>
    public string? Name { get; } = name;

    /// <summary>The rule it broke.</summary>
    public string Reason { get; } = reason;

    private static string Printable(string? name) =>
        name is null ? "(null)" : new string([.. (name.Length > 64 ? name[..64] + "…" : name).Select(c => char.IsControl(c) ? '?' : c)]);
}

/// <summary>A message or a queue setting broke a rule; nothing was written.</summary>
public sealed class InvalidMessageException(string message) : CairnException(message);

/// <summary>No queue of that name is declared; nothing was written.</summary>
public sealed class QueueNotFoundException(QueueName queue)
    : CairnException($"The queue '{queue}' does not exist; declare it first (DeclareQueueAsync, or AddQueue when registering Cairn).")
{
    /// <summary>The unknown queue.</summary>
    public QueueName Queue { get; } = queue;
}

/// <summary>No topic of that name is declared; nothing was written.</summary>
public sealed class TopicNotFoundException(TopicName topic)
    : CairnException($"The topic '{topic}' does not exist; declare it first (DeclareTopicAsync, or AddTopic when registering Cairn).")
{
    /// <summary>The unknown topic.</summary>
    public TopicName Topic { get; } = topic;
}

/// <summary>A message is larger than its queue accepts; nothing was written.</summary>
public sealed class MessageTooLargeException(MessageId id, QueueName queue, long size, long limit)
    : CairnException($"Message {id} is {size} bytes, over the {limit}-byte limit of queue '{queue}'.")
{
    /// <summary>The message.</summary>
    public MessageId MessageId { get; } = id;

    /// <summary>The queue whose limit it broke.</summary>
    public QueueName Queue { get; } = queue;

    /// <summary>The message's size in bytes of data and metadata.</summary>
    public long Size { get; } = size;

    /// <summary>The queue's limit.</summary>
    public long Limit { get; } = limit;
}

/// <summary>
/// A lease is no longer held: it expired and the message was delivered again, or the message was acknowledged,
/// dead-lettered or purged meanwhile. Whatever the call would have written was not written.
/// </summary>
public sealed class LeaseLostException(LeaseToken lease, string reason)
    : CairnException($"The lease {lease} is no longer held: {reason}. Nothing was written; the message's current holder decides its fate.")
{
    /// <summary>The lost lease.</summary>
    public LeaseToken Lease { get; } = lease;
}

/// <summary>A queue was declared again with a setting that cannot change (such as FIFO ordering).</summary>
public sealed class QueueDefinitionConflictException(QueueName queue, string reason)
    : CairnException($"The queue '{queue}' cannot be declared this way: {reason}.")
{
    /// <summary>The queue.</summary>
    public QueueName Queue { get; } = queue;
}

/// <summary>
/// Thrown by a handler (or wrapping the error it raises) when a message can never succeed, however often it is
/// retried: a validation error, say. The consumer dead-letters it at once instead of retrying.
/// </summary>
public class NonRetryableMessageException : CairnException
{
    /// <summary>Creates the exception.</summary>
    public NonRetryableMessageException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    public NonRetryableMessageException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// A commit's checkpoint was not where the commit expected it (<see cref="MessageTransaction.SetCheckpoint(string, Cairn.EventStore.GlobalPosition, Cairn.EventStore.GlobalPosition)"/>):
/// another process moved it first. Nothing of the commit was written.
/// </summary>
public sealed class CheckpointConflictException(string key, Cairn.EventStore.GlobalPosition expected, Cairn.EventStore.GlobalPosition actual)
    : CairnException($"The checkpoint '{key}' is at {actual.Value}, not at {expected.Value} as the commit expected: another process moved it first. Nothing was written.")
{
    /// <summary>The checkpoint's key.</summary>
    public string Key { get; } = key;

    /// <summary>Where the commit expected it.</summary>
    public Cairn.EventStore.GlobalPosition Expected { get; } = expected;

    /// <summary>Where it is.</summary>
    public Cairn.EventStore.GlobalPosition Actual { get; } = actual;
}
