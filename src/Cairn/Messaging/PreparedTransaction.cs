using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>A transaction whose every part passed the checks that need no storage, prepared on the caller's flow.</summary>
internal sealed record PreparedTransaction(
    IReadOnlyList<PreparedAppend> Appends,
    IReadOnlyList<(QueueName Queue, PreparedMessage Message)> Sends,
    IReadOnlyList<(TopicName Topic, PreparedMessage Message)> Publishes,
    IReadOnlyList<LeaseToken> Acknowledgements,
    IReadOnlyList<(string Key, GlobalPosition Position)> Checkpoints,
    (string Consumer, MessageId MessageId)? Inbox,
    HandledMessage? InboxMessage)
{
    /// <summary>Where checkpoints must still be for the commit to go ahead (<see cref="MessageTransaction.SetCheckpoint(string, GlobalPosition, GlobalPosition)"/>).</summary>
    public IReadOnlyList<(string Key, GlobalPosition Expected)> CheckpointExpectations { get; init; } = [];

    public static PreparedTransaction Prepare(MessageTransaction transaction, EventStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var ids = new HashSet<(string, MessageId)>();
        var sends = new List<(QueueName, PreparedMessage)>(transaction.Sends.Count);
        foreach (var (queue, message) in transaction.Sends)
        {
            Require(queue != default, "A send names no queue.");
            if (!ids.Add(("q:" + queue.Value, message.Id)))
            {
                throw new InvalidMessageException($"Message {message.Id} is sent to queue '{queue}' twice in one transaction.");
            }

            sends.Add((queue, PreparedMessage.Prepare(message, options)));
        }

        var publishes = new List<(TopicName, PreparedMessage)>(transaction.Publishes.Count);
        foreach (var (topic, message) in transaction.Publishes)
        {
            Require(topic != default, "A publish names no topic.");
            if (!ids.Add(("t:" + topic.Value, message.Id)))
            {
                throw new InvalidMessageException($"Message {message.Id} is published to topic '{topic}' twice in one transaction.");
            }

            publishes.Add((topic, PreparedMessage.Prepare(message, options)));
        }

        var leases = new HashSet<LeaseToken>();
        foreach (var lease in transaction.Acknowledgements)
        {
            Require(lease.Queue != default, "An acknowledgement names no queue.");
            if (!leases.Add(lease))
            {
                throw new InvalidMessageException($"The lease {lease} is acknowledged twice in one transaction.");
            }
        }

        transaction.InboxMessage?.Validate();
        return new PreparedTransaction(
            [.. transaction.Appends.Select(a => PreparedAppend.Prepare(a, options))],
            sends,
            publishes,
            [.. transaction.Acknowledgements],
            [.. transaction.Checkpoints],
            transaction.Inbox,
            transaction.InboxMessage)
        {
            CheckpointExpectations = [.. transaction.CheckpointExpectations],
        };
    }

    private static void Require(bool condition, string fault)
    {
        if (!condition)
        {
            throw new InvalidMessageException(fault);
        }
    }
}
