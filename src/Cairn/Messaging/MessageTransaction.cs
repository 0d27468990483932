using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>
/// Writes that commit together or not at all: appends to the event store, messages sent to queues and published to
/// topics (the outbox), settlements of leased deliveries, the inbox record of a handled message, and checkpoints. A
/// handler's or command's effects go through one of these, so there is never a dual write.
/// </summary>
public sealed class MessageTransaction
{
    private readonly List<AppendRequest> _appends = [];
    private readonly List<(QueueName Queue, OutgoingMessage Message)> _sends = [];
    private readonly List<(TopicName Topic, OutgoingMessage Message)> _publishes = [];
    private readonly List<LeaseToken> _acknowledgements = [];
    private readonly List<(string Key, GlobalPosition Position)> _checkpoints = [];

    /// <summary>The appends, in order.</summary>
    public IReadOnlyList<AppendRequest> Appends => _appends;

    /// <summary>The sends, in order.</summary>
    public IReadOnlyList<(QueueName Queue, OutgoingMessage Message)> Sends => _sends;

    /// <summary>The publishes, in order.</summary>
    public IReadOnlyList<(TopicName Topic, OutgoingMessage Message)> Publishes => _publishes;

    /// <summary>The deliveries acknowledged (deleted from their queue) by the commit.</summary>
    public IReadOnlyList<LeaseToken> Acknowledgements => _acknowledgements;

    /// <summary>The checkpoints stored by the commit.</summary>
    public IReadOnlyList<(string Key, GlobalPosition Position)> Checkpoints => _checkpoints;

    /// <summary>Where checkpoints set with an expected position must still be for the commit to go ahead.</summary>
    internal IReadOnlyList<(string Key, GlobalPosition Expected)> CheckpointExpectations => _checkpointExpectations;

    private readonly List<(string Key, GlobalPosition Expected)> _checkpointExpectations = [];

    /// <summary>The inbox record: the consumer and the id of the message it handled; null when none.</summary>
    public (string Consumer, MessageId MessageId)? Inbox { get; private set; }

    /// <summary>What the inbox record keeps of the handled message for tracing; null when it keeps only the id.</summary>
    public HandledMessage? InboxMessage { get; private set; }

    /// <summary>True when the transaction holds nothing to write.</summary>
    public bool IsEmpty => _appends.Count == 0 && _sends.Count == 0 && _publishes.Count == 0 && _acknowledgements.Count == 0 && _checkpoints.Count == 0 && Inbox is null;

    /// <summary>Adds an append.</summary>
    public MessageTransaction Append(AppendRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        _appends.Add(request);
        return this;
    }

    /// <summary>Adds a message sent to a queue.</summary>
    public MessageTransaction Send(QueueName queue, OutgoingMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        _sends.Add((queue, message));
        return this;
    }

    /// <summary>Adds a message published to a topic.</summary>
    public MessageTransaction Publish(TopicName topic, OutgoingMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        _publishes.Add((topic, message));
        return this;
    }

    /// <summary>Acknowledges a delivery in the same commit: it fails with <see cref="LeaseLostException"/>, writing nothing, if the lease is gone.</summary>
    public MessageTransaction Acknowledge(LeaseToken lease)
    {
        _acknowledgements.Add(lease);
        return this;
    }

    /// <summary>
    /// Records that <paramref name="consumer"/> handled <paramref name="messageId"/>. When the inbox already holds that
    /// record, the commit writes nothing but its acknowledgements and reports <see cref="CommitResult.AlreadyProcessed"/>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="messageId"/> is <c>default</c> (no message has that id: every
    /// handling marked with it would look like a repeat of the first), or <paramref name="consumer"/> is no valid name.</exception>
    public MessageTransaction MarkProcessed(string consumer, MessageId messageId)
    {
        if (messageId.Value == Guid.Empty)
        {
            throw new ArgumentException("The inbox record needs the handled message's id; default(MessageId) is none.", nameof(messageId));
        }

        Inbox = (MessagingNames.Validate("consumer", consumer), messageId);
        InboxMessage = null;
        return this;
    }

    /// <summary>
    /// Records that <paramref name="consumer"/> handled <paramref name="delivery"/>'s message, keeping its queue, type,
    /// correlation and causation beside its id, so a correlation trace still shows it once it has left its queue.
    /// </summary>
    public MessageTransaction MarkProcessed(string consumer, Delivery delivery)
    {
        ArgumentNullException.ThrowIfNull(delivery);
        MarkProcessed(consumer, delivery.Message.Id);
        InboxMessage = HandledMessage.From(delivery);
        return this;
    }

    /// <summary>Records the inbox record of another transaction as it is: for a transport that hands a commit on.</summary>
    internal MessageTransaction MarkProcessed(string consumer, MessageId messageId, HandledMessage? message)
    {
        MarkProcessed(consumer, messageId);
        InboxMessage = message;
        return this;
    }

    /// <summary>Stores a checkpoint in the same commit.</summary>
    public MessageTransaction SetCheckpoint(string key, GlobalPosition position)
    {
        _checkpoints.Add((Subscriptions.CheckpointKeys.Validate(key), position));
        return this;
    }

    /// <summary>
    /// Stores a checkpoint in the same commit, only if it is still at <paramref name="expected"/> (<see cref="GlobalPosition.Start"/>
    /// when none is stored): otherwise the whole commit fails with <see cref="CheckpointConflictException"/> and writes
    /// nothing. For work that several processes may run over one checkpoint (a route): the one that finds it moved on
    /// knows another did the work.
    /// </summary>
    public MessageTransaction SetCheckpoint(string key, GlobalPosition position, GlobalPosition expected)
    {
        SetCheckpoint(key, position);
        _checkpointExpectations.Add((key, expected));
        return this;
    }
}

/// <summary>What a committed <see cref="MessageTransaction"/> wrote.</summary>
public sealed record CommitResult
{
    /// <summary>Nothing written because the inbox already recorded the message (acknowledgements were still applied).</summary>
    public static readonly CommitResult Duplicate = new() { AlreadyProcessed = true };

    /// <summary>The result of each append, in order.</summary>
    public IReadOnlyList<AppendResult> Appends { get; init; } = [];

    /// <summary>How many message copies went into queues (sends, and publishes once per matching subscription).</summary>
    public int MessagesEnqueued { get; init; }

    /// <summary>Sends dropped because their deduplication id was seen within the window.</summary>
    public int MessagesDeduplicated { get; init; }

    /// <summary>True when the inbox already held the record, so the effects were not written again.</summary>
    public bool AlreadyProcessed { get; init; }
}
