using System.Globalization;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Diagnostics;

/// <summary>What one entry of a correlation trace records.</summary>
public enum TraceEntryKind
{
    /// <summary>An event appended to a stream.</summary>
    EventAppended,

    /// <summary>A message handled by a consumer (its effects committed with the inbox record).</summary>
    MessageHandled,

    /// <summary>A message waiting in a queue: not yet received, delayed, or given back after a failure.</summary>
    MessageWaiting,

    /// <summary>A message leased to a receiver: being handled now.</summary>
    MessageInFlight,

    /// <summary>A message in a queue's dead-letter queue.</summary>
    MessageDeadLettered,
}

/// <summary>
/// One fact of a correlation trace: an event appended, or a message handled, waiting, in flight or dead-lettered. An
/// event routed to a topic keeps its id as a message, so one id can have several entries (appended, then handled by
/// each subscriber).
/// </summary>
public sealed record TraceEntry
{
    /// <summary>What happened.</summary>
    public required TraceEntryKind Kind { get; init; }

    /// <summary>The event's or message's id.</summary>
    public required string Id { get; init; }

    /// <summary>The event's or message's type.</summary>
    public required string Type { get; init; }

    /// <summary>
    /// When it happened: the commit of an append or of a handling, a message's entry into its queue, or its dead-lettering.
    /// </summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary>The id of the message or event whose handling caused it, if any.</summary>
    public string? CausationId { get; init; }

    /// <summary>For an event: its stream.</summary>
    public string? Stream { get; init; }

    /// <summary>For an event: its version in the stream.</summary>
    public long? StreamVersion { get; init; }

    /// <summary>For an event: its global position.</summary>
    public long? Position { get; init; }

    /// <summary>For a message: its queue.</summary>
    public string? Queue { get; init; }

    /// <summary>For a handled message: the consumer that handled it.</summary>
    public string? Consumer { get; init; }

    /// <summary>For a message still in a queue: how many times it was received.</summary>
    public int? ReceiveCount { get; init; }

    /// <summary>For a message still in a queue: the last failure recorded.</summary>
    public FailureInfo? Failure { get; init; }

    /// <summary>For a dead letter: why it was dead-lettered.</summary>
    public string? DeadLetterReason { get; init; }

    /// <summary>True for an event.</summary>
    public bool IsEvent => Kind == TraceEntryKind.EventAppended;

    /// <summary>What happened to it, without its type: <c>appended to order-1@0 at position 12</c>.</summary>
    public string Fact => Kind switch
    {
        TraceEntryKind.EventAppended => Invariant($"appended to {Stream}@{StreamVersion} at position {Position}"),
        TraceEntryKind.MessageHandled => $"handled by {Consumer} from queue {Queue}",
        TraceEntryKind.MessageWaiting => $"waiting in queue {Queue}{Attempts()}",
        TraceEntryKind.MessageInFlight => $"being handled from queue {Queue}{Attempts()}",
        _ => $"dead-lettered from queue {Queue}{Attempts()}: {DeadLetterReason}",
    };

    /// <summary>The entry as a sentence: <c>event order.placed appended to order-1@0 at position 12</c>.</summary>
    public string Describe() => $"{(IsEvent ? "event" : "message")} {Type} {Fact}";

    /// <inheritdoc />
    public override string ToString() => Describe();

    private string Attempts()
    {
        var text = ReceiveCount is > 0 and var n ? Invariant($" after {n} receive{(n == 1 ? "" : "s")}") : "";
        return Failure is { } failure && Kind != TraceEntryKind.MessageDeadLettered ? $"{text}, last failure {failure.Type}: {failure.Message}" : text;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>The entry of a recorded event.</summary>
    public static TraceEntry From(RecordedEvent recorded)
    {
        ArgumentNullException.ThrowIfNull(recorded);
        return new TraceEntry
        {
            Kind = TraceEntryKind.EventAppended,
            Id = recorded.Id.ToString(),
            Type = recorded.Type,
            Time = recorded.Time,
            CausationId = recorded.CausationId,
            Stream = recorded.Stream.Value,
            StreamVersion = recorded.Version,
            Position = recorded.Position.Value,
        };
    }

    /// <summary>The entry of an inbox record.</summary>
    public static TraceEntry From(InboxRecord handled)
    {
        ArgumentNullException.ThrowIfNull(handled);
        return new TraceEntry
        {
            Kind = TraceEntryKind.MessageHandled,
            Id = handled.MessageId.ToString(),
            Type = handled.Message.Type,
            Time = handled.HandledAt,
            CausationId = handled.Message.CausationId,
            Queue = handled.Message.Queue.Value,
            Consumer = handled.Consumer,
        };
    }

    /// <summary>The entry of a message still in a queue.</summary>
    public static TraceEntry From(QueuedMessageRecord queued)
    {
        ArgumentNullException.ThrowIfNull(queued);
        return new TraceEntry
        {
            Kind = queued.State switch
            {
                QueuedMessageState.Waiting => TraceEntryKind.MessageWaiting,
                QueuedMessageState.InFlight => TraceEntryKind.MessageInFlight,
                _ => TraceEntryKind.MessageDeadLettered,
            },
            Id = queued.Message.Id.ToString(),
            Type = queued.Message.Type,
            Time = queued.Time,
            CausationId = queued.Message.CausationId,
            Queue = queued.Queue.Value,
            ReceiveCount = queued.ReceiveCount,
            Failure = queued.Failure,
            DeadLetterReason = queued.DeadLetterReason,
        };
    }
}

/// <summary>
/// A node of the causation tree: one id (an event, a message, or an event routed as a message) with its entries, and
/// the nodes its handling caused.
/// </summary>
public sealed class TraceNode
{
    private readonly List<TraceEntry> _entries = [];
    private readonly List<TraceNode> _children = [];

    internal TraceNode(string id) => Id = id;

    /// <summary>The id.</summary>
    public string Id { get; }

    /// <summary>The type (of its first entry).</summary>
    public string Type => _entries[0].Type;

    /// <summary>Its entries, in timeline order.</summary>
    public IReadOnlyList<TraceEntry> Entries => _entries;

    /// <summary>What its handling caused, in timeline order.</summary>
    public IReadOnlyList<TraceNode> Children => _children;

    /// <summary>The node that caused it; null for a root.</summary>
    public TraceNode? Parent { get; private set; }

    /// <summary>The id of what caused it, if any: for a root, a cause that is not in the trace.</summary>
    public string? CausationId { get; private set; }

    /// <summary>
    /// True for a root whose cause is not in the trace: a message handled by a consumer without an inbox, an inbox record
    /// pruned, a message acknowledged by hand, or a cause of another correlation.
    /// </summary>
    public bool CauseMissing => Parent is null && CausationId is not null && !CauseInLoop;

    /// <summary>
    /// True for a root made by breaking a loop of causes (ids used again, records written by hand): its cause is in the
    /// trace, but is caused by it in turn, so one of the loop had to be shown first.
    /// </summary>
    public bool CauseInLoop { get; private set; }

    /// <summary>True when any of its entries is a dead letter.</summary>
    public bool DeadLettered => _entries.Any(e => e.Kind == TraceEntryKind.MessageDeadLettered);

    /// <summary>True when it is still in a queue and was never handled: the flow has not got past it yet.</summary>
    public bool Pending => _entries.Any(e => e.Kind is TraceEntryKind.MessageWaiting or TraceEntryKind.MessageInFlight);

    /// <summary>Its description: its type, id and each entry's fact.</summary>
    public string Describe() => $"{Type} {Id}: {string.Join("; ", _entries.Select(e => e.Fact))}";

    /// <inheritdoc />
    public override string ToString() => Describe();

    internal List<TraceEntry> EntryList => _entries;

    internal void Attach(TraceNode? parent, string? causationId, bool inLoop = false)
    {
        Parent = parent;
        CausationId = causationId;
        CauseInLoop = inLoop;
    }

    internal void AddChild(TraceNode child) => _children.Add(child);
}

/// <summary>
/// The trace of one correlation id: every event appended and message handled, waiting or dead-lettered that it caused,
/// across streams, queues, consumers and services, as an ordered timeline and as a causation tree. Roots are entries
/// whose cause is absent from the trace; a node's children are the entries whose causation id is its id. Renders as
/// text, Mermaid and JSON.
/// </summary>
public sealed partial class CorrelationTrace
{
    private readonly Dictionary<string, TraceNode> _nodes;

    /// <summary>
    /// Builds the trace of <paramref name="entries"/>. The timeline is in time order, events of one commit by position,
    /// except that a cause always comes before its effects: when clocks of different services disagree, causality wins.
    /// </summary>
    public CorrelationTrace(string correlationId, IEnumerable<TraceEntry> entries, bool truncated = false)
    {
        ArgumentNullException.ThrowIfNull(correlationId);
        ArgumentNullException.ThrowIfNull(entries);
        CorrelationId = correlationId;
        Truncated = truncated;
        var all = entries.Select(e => e ?? throw new ArgumentException("A trace entry is null.", nameof(entries))).Distinct().ToList();
        all.Sort(EntryOrder.Instance);

        // One node per id; its cause is the first causation id its entries name.
        _nodes = new Dictionary<string, TraceNode>(StringComparer.Ordinal);
        var nodes = new List<TraceNode>();
        foreach (var entry in all)
        {
            if (!_nodes.TryGetValue(entry.Id, out var node))
            {
                _nodes[entry.Id] = node = new TraceNode(entry.Id);
                nodes.Add(node);
            }

            node.EntryList.Add(entry);
        }

        foreach (var node in nodes)
        {
            var cause = node.Entries.Select(e => e.CausationId).FirstOrDefault(c => c is not null);
            node.Attach(cause is not null && cause != node.Id && _nodes.TryGetValue(cause, out var parent) ? parent : null, cause, inLoop: cause == node.Id);
        }

        BreakCycles(nodes);
        var children = nodes.Where(n => n.Parent is not null).GroupBy(n => n.Parent!).ToDictionary(g => g.Key, g => g.ToList());
        Timeline = Order(nodes.Where(n => n.Parent is null), children);

        // Entries, children and roots follow the timeline.
        var rank = new Dictionary<TraceEntry, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < Timeline.Count; i++)
        {
            rank[Timeline[i]] = i;
        }

        foreach (var node in nodes)
        {
            node.EntryList.Sort((a, b) => rank[a].CompareTo(rank[b]));
        }

        foreach (var node in nodes.OrderBy(n => rank[n.Entries[0]]))
        {
            if (node.Parent is { } parent)
            {
                parent.AddChild(node);
            }
        }

        Roots = [.. nodes.Where(n => n.Parent is null).OrderBy(n => rank[n.Entries[0]])];
    }

    /// <summary>The correlation id.</summary>
    public string CorrelationId { get; }

    /// <summary>Every entry, in order.</summary>
    public IReadOnlyList<TraceEntry> Timeline { get; }

    /// <summary>The roots of the causation tree, in timeline order.</summary>
    public IReadOnlyList<TraceNode> Roots { get; }

    /// <summary>True when the backend held more records than the limit: the latest are missing.</summary>
    public bool Truncated { get; }

    /// <summary>True when nothing was found.</summary>
    public bool IsEmpty => Timeline.Count == 0;

    /// <summary>The time of the first entry, if any.</summary>
    public DateTimeOffset? Start => IsEmpty ? null : Timeline.Min(e => e.Time);

    /// <summary>The time from the first entry to the last.</summary>
    public TimeSpan Duration => IsEmpty ? TimeSpan.Zero : Timeline.Max(e => e.Time) - Start!.Value;

    /// <summary>Every node, in timeline order of its first entry.</summary>
    public IReadOnlyList<TraceNode> Nodes => [.. Walk()];

    /// <summary>The nodes whose message was dead-lettered.</summary>
    public IReadOnlyList<TraceNode> DeadLetters => [.. Walk().Where(n => n.DeadLettered)];

    /// <summary>The nodes still waiting in a queue or being handled.</summary>
    public IReadOnlyList<TraceNode> Pending => [.. Walk().Where(n => n.Pending)];

    /// <summary>The causes that roots name but the trace does not hold, in timeline order.</summary>
    public IReadOnlyList<string> MissingCauses => [.. Roots.Where(r => r.CauseMissing).Select(r => r.CausationId!).Distinct(StringComparer.Ordinal)];

    /// <summary>The node of an id, or null.</summary>
    public TraceNode? Find(string id) => _nodes.GetValueOrDefault(id);

    /// <summary>
    /// The trace of what a backend read: only records of <paramref name="correlationId"/> are kept (an event or message
    /// whose correlation id is its own id counts as the start of its own flow).
    /// </summary>
    public static CorrelationTrace From(string correlationId, CorrelationRecords records)
    {
        ArgumentNullException.ThrowIfNull(correlationId);
        ArgumentNullException.ThrowIfNull(records);
        var entries = records.Events.Where(e => e.CorrelationId == correlationId).Select(TraceEntry.From)
            .Concat(records.Handled.Where(h => h.Message.CorrelationId == correlationId).Select(TraceEntry.From))
            .Concat(records.Queued.Where(q => q.Message.CorrelationId == correlationId).Select(TraceEntry.From));
        return new CorrelationTrace(correlationId, entries, records.Truncated);
    }

    /// <summary>The nodes, depth first in timeline order, without recursion (a chain can be thousands deep).</summary>
    private IEnumerable<TraceNode> Walk() => WalkWithDepth().Select(n => n.Node);

    private IEnumerable<(TraceNode Node, int Depth)> WalkWithDepth()
    {
        var stack = new Stack<(TraceNode, int)>();
        for (var i = Roots.Count - 1; i >= 0; i--)
        {
            stack.Push((Roots[i], 0));
        }

        while (stack.Count > 0)
        {
            var (node, depth) = stack.Pop();
            yield return (node, depth);
            for (var i = node.Children.Count - 1; i >= 0; i--)
            {
                stack.Push((node.Children[i], depth + 1));
            }
        }
    }

    /// <summary>
    /// Malformed causation (a message naming itself through others) would leave nodes no root reaches: the earliest of
    /// them becomes a root, until every node is reached.
    /// </summary>
    private static void BreakCycles(List<TraceNode> nodes)
    {
        var children = nodes.Where(n => n.Parent is not null).ToLookup(n => n.Parent!);
        var reached = new HashSet<TraceNode>(ReferenceEqualityComparer.Instance);
        void Reach(TraceNode from)
        {
            var stack = new Stack<TraceNode>([from]);
            while (stack.Count > 0)
            {
                var node = stack.Pop();
                if (reached.Add(node))
                {
                    foreach (var child in children[node])
                    {
                        stack.Push(child);
                    }
                }
            }
        }

        foreach (var root in nodes.Where(n => n.Parent is null))
        {
            Reach(root);
        }

        foreach (var node in nodes)
        {
            if (!reached.Contains(node))
            {
                node.Attach(null, node.CausationId, inLoop: true);
                children = nodes.Where(n => n.Parent is not null).ToLookup(n => n.Parent!);
                Reach(node);
            }
        }
    }

    /// <summary>
    /// Time order that never puts an effect before its cause: an entry becomes eligible once the first entry of its
    /// cause is placed, and the earliest eligible entry goes next.
    /// </summary>
    private static List<TraceEntry> Order(IEnumerable<TraceNode> roots, Dictionary<TraceNode, List<TraceNode>> children)
    {
        var eligible = new PriorityQueue<(TraceEntry Entry, TraceNode Node), TraceEntry>(EntryOrder.Instance);
        void Open(TraceNode node)
        {
            foreach (var entry in node.Entries)
            {
                eligible.Enqueue((entry, node), entry);
            }
        }

        foreach (var root in roots)
        {
            Open(root);
        }

        var opened = new HashSet<TraceNode>(ReferenceEqualityComparer.Instance);
        var timeline = new List<TraceEntry>();
        while (eligible.TryDequeue(out var next, out _))
        {
            timeline.Add(next.Entry);
            if (opened.Add(next.Node) && children.TryGetValue(next.Node, out var caused))
            {
                foreach (var child in caused)
                {
                    Open(child);
                }
            }
        }

        return timeline;
    }

    /// <summary>By time, then position (events of one commit share a time), then kind and id, for a stable order.</summary>
    private sealed class EntryOrder : IComparer<TraceEntry>
    {
        public static readonly EntryOrder Instance = new();

        public int Compare(TraceEntry? x, TraceEntry? y)
        {
            if (ReferenceEquals(x, y))
            {
                return 0;
            }

            if (x is null || y is null)
            {
                return x is null ? -1 : 1;
            }

            var c = x.Time.CompareTo(y.Time);
            if (c == 0) c = (x.Position ?? long.MaxValue).CompareTo(y.Position ?? long.MaxValue);
            if (c == 0) c = x.Kind.CompareTo(y.Kind);
            if (c == 0) c = string.CompareOrdinal(x.Id, y.Id);
            if (c == 0) c = string.CompareOrdinal(x.Queue, y.Queue);
            if (c == 0) c = string.CompareOrdinal(x.Consumer, y.Consumer);
            return c;
        }
    }
}
