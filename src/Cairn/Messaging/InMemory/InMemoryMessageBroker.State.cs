namespace Cairn.Messaging.InMemory;

public sealed partial class InMemoryMessageBroker
{
    /// <summary>Where a message stands in its queue.</summary>
    private enum MessageState
    {
        /// <summary>Waiting to be received, from <see cref="QueuedMessage.VisibleAt"/>.</summary>
        Ready,

        /// <summary>Leased to a receiver until <see cref="QueuedMessage.VisibleAt"/>.</summary>
        Leased,

        /// <summary>Dead-lettered from a FIFO queue: the later messages of its group wait behind it.</summary>
        ParkingGroup,

        /// <summary>Dead-lettered from a standard queue.</summary>
        DeadLettered,
    }

    /// <summary>A queue's settings, its messages (dead letters included) in sequence order, and its deduplication ids.</summary>
    private sealed class QueueState(QueueDefinition definition)
    {
        public QueueDefinition Definition { get; set; } = definition;

        public SortedDictionary<long, QueuedMessage> Messages { get; } = [];

        /// <summary>Each deduplication id seen, with when it is forgotten.</summary>
        public Dictionary<string, long> Deduplication { get; } = new(StringComparer.Ordinal);

        /// <summary>Deduplication ids remembered since expired ones were last forgotten.</summary>
        public int DeduplicationWrites { get; set; }
    }

    /// <summary>A message in a queue, with its delivery history; times are UTC ticks.</summary>
    private sealed class QueuedMessage(long sequence, Message message, string? groupKey)
    {
        public long Sequence { get; } = sequence;

        public Message Message { get; } = message;

        /// <summary>The FIFO group; a message redriven into a FIFO queue without one gets a group of its own.</summary>
        public string? GroupKey { get; } = groupKey;

        public MessageState State { get; set; }

        /// <summary>When a ready message becomes visible, or a lease runs out; unused for dead letters.</summary>
        public long VisibleAt { get; set; }

        public int ReceiveCount { get; set; }

        /// <summary>How many leases were ever given out: a lease token names the delivery it was given for.</summary>
        public long Deliveries { get; set; }

        public long EnqueuedAt { get; init; }

        /// <summary>When the message falls out of the queue's retention and is dropped rather than delivered.</summary>
        public long ExpiresAt { get; set; }

        public long? FirstReceivedAt { get; set; }

        public long? LastReceivedAt { get; set; }

        public int Redrives { get; set; }

        public FailureInfo? Failure { get; set; }

        public string? DeadReason { get; set; }

        public long? DeadLetteredAt { get; set; }

        public bool IsDeadLetter => State is MessageState.ParkingGroup or MessageState.DeadLettered;

        /// <summary>
        /// Past the queue's retention and not held under a running lease: the next receive that reaches it drops it
        /// rather than delivering it, so it no longer counts as waiting anywhere.
        /// </summary>
        public bool IsExpired(long now) => ExpiresAt <= now && !(State == MessageState.Leased && VisibleAt > now);
    }
}
