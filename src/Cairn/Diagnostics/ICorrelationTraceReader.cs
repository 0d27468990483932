using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Diagnostics;

/// <summary>
/// A backend's records of one correlation id: the events in the log, the inbox records of handled messages, and the
/// messages still in a queue (waiting, in flight or dead-lettered). <see cref="CorrelationTracer"/> turns them into a
/// <see cref="CorrelationTrace"/>.
/// </summary>
public interface ICorrelationTraceReader
{
    /// <summary>
    /// Reads everything the backend holds of <paramref name="correlationId"/>: at most <paramref name="limit"/> records
    /// in all, the earliest first, read from one consistent view. An empty correlation id, one longer than
    /// <see cref="CorrelationTraceLimits.MaxCorrelationIdLength"/> or with control characters or unpaired surrogates, and a limit outside 1 to
    /// <see cref="CorrelationTraceLimits.MaxLimit"/> are refused with <see cref="InvalidTraceRequestException"/>.
    /// A trace carries envelopes, not payloads: the events' and messages' data are empty, so its memory stays bounded.
    /// </summary>
    Task<CorrelationRecords> ReadAsync(string correlationId, int limit, CancellationToken cancellationToken);
}

/// <summary>What a backend holds of one correlation id.</summary>
/// <param name="Events">The events whose correlation id it is (an event that started a flow has its own id as correlation).</param>
/// <param name="Handled">The inbox records of messages with that correlation id: which consumer handled what, when.</param>
/// <param name="Queued">The messages with that correlation id still in a queue, dead letters included.</param>
/// <param name="Truncated">True when there were more records than the limit; the latest were left out.</param>
public sealed record CorrelationRecords(
    IReadOnlyList<RecordedEvent> Events,
    IReadOnlyList<InboxRecord> Handled,
    IReadOnlyList<QueuedMessageRecord> Queued,
    bool Truncated)
{
    /// <summary>How many records in all.</summary>
    public int Count => Events.Count + Handled.Count + Queued.Count;

    /// <summary>
    /// Keeps the earliest <paramref name="limit"/> records (by time, events by position), and says whether any were
    /// left out. Records of one time come causes first: a handling commits the events and messages it made at its own
    /// time, and a trace cut there must keep the handling rather than its effects. Backends read up to one more than the
    /// limit of each kind and call this.
    /// </summary>
    public static CorrelationRecords Earliest(IEnumerable<RecordedEvent> events, IEnumerable<InboxRecord> handled, IEnumerable<QueuedMessageRecord> queued, int limit)
    {
        var all = events.Select(e => new Ranked(e.Time, e.Position.Value, e.Id.ToString(), e.CausationId, e))
            .Concat(handled.Select(h => new Ranked(h.HandledAt, long.MaxValue, h.MessageId.ToString(), h.Message.CausationId, h)))
            .Concat(queued.Select(q => new Ranked(q.Time, long.MaxValue, q.Message.Id.ToString(), q.Message.CausationId, q)))
            .ToList();
        var ordered = all.GroupBy(r => r.Time)
            .OrderBy(g => g.Key)
            .SelectMany(g => CausesFirst(g.ToList()))
            .ToList();
        var kept = ordered.Take(limit).Select(r => r.Record).ToList();
        return new CorrelationRecords(
            [.. kept.OfType<RecordedEvent>()],
            [.. kept.OfType<InboxRecord>()],
            [.. kept.OfType<QueuedMessageRecord>()],
            all.Count > limit);
    }

    /// <summary>Records of one time by how many of their causes are among them, then by position.</summary>
    private static IEnumerable<Ranked> CausesFirst(List<Ranked> tied)
    {
        if (tied.Count == 1)
        {
            return tied;
        }

        var ids = tied.Select(r => r.Id).ToHashSet(StringComparer.Ordinal);
        var causes = tied.GroupBy(r => r.Id, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Select(r => r.CausationId).FirstOrDefault(c => c is not null), StringComparer.Ordinal);
        int Depth(Ranked record)
        {
            // Up the causation chain while it stays among the tied records; a loop of causes ends the walk.
            var depth = 0;
            var seen = new HashSet<string>(StringComparer.Ordinal) { record.Id };
            for (var cause = record.CausationId; cause is not null && ids.Contains(cause) && seen.Add(cause); cause = causes[cause])
            {
                depth++;
            }

            return depth;
        }

        return tied.Select(r => (Record: r, Depth: Depth(r))).OrderBy(x => x.Depth).ThenBy(x => x.Record.Position).Select(x => x.Record);
    }

    private sealed record Ranked(DateTimeOffset Time, long Position, string Id, string? CausationId, object Record);
}

/// <summary>An inbox record with what it keeps of the message: a consumer handled it, and its effects committed then.</summary>
/// <param name="Consumer">The consumer (its inbox key).</param>
/// <param name="MessageId">The message's id.</param>
/// <param name="HandledAt">When the handling committed.</param>
/// <param name="Message">The queue, type, correlation and causation of the message.</param>
public sealed record InboxRecord(string Consumer, MessageId MessageId, DateTimeOffset HandledAt, HandledMessage Message);

/// <summary>Where a message still in a queue stands.</summary>
public enum QueuedMessageState
{
    /// <summary>Waiting to be received (perhaps delayed, or given back after a failure).</summary>
    Waiting,

    /// <summary>Leased to a receiver: being handled now.</summary>
    InFlight,

    /// <summary>In the queue's dead-letter queue.</summary>
    DeadLettered,
}

/// <summary>A message still in a queue, with where it stands.</summary>
/// <param name="Message">The message.</param>
/// <param name="Queue">The queue.</param>
/// <param name="Sequence">Its place in the queue.</param>
/// <param name="State">Waiting, in flight or dead-lettered.</param>
/// <param name="EnqueuedAt">When it entered the queue.</param>
public sealed record QueuedMessageRecord(Message Message, QueueName Queue, long Sequence, QueuedMessageState State, DateTimeOffset EnqueuedAt)
{
    /// <summary>How many times it was received.</summary>
    public int ReceiveCount { get; init; }

    /// <summary>The last failure recorded, if any.</summary>
    public FailureInfo? Failure { get; init; }

    /// <summary>When it was dead-lettered, for a dead letter.</summary>
    public DateTimeOffset? DeadLetteredAt { get; init; }

    /// <summary>Why it was dead-lettered, for a dead letter.</summary>
    public string? DeadLetterReason { get; init; }

    /// <summary>Where it stands on the timeline: when it was dead-lettered, or else when it entered the queue.</summary>
    public DateTimeOffset Time => DeadLetteredAt ?? EnqueuedAt;
}

/// <summary>The bounds of a correlation trace.</summary>
public static class CorrelationTraceLimits
{
    /// <summary>The longest correlation id: the envelope's limit.</summary>
    public const int MaxCorrelationIdLength = 256;

    /// <summary>The most records one trace reads.</summary>
    public const int MaxLimit = 10_000;

    /// <summary>The records a trace reads when no limit is given.</summary>
    public const int DefaultLimit = 1_000;

    /// <summary>Refuses a correlation id or a limit out of bounds, naming the field and the rule.</summary>
    public static void Validate(string? correlationId, int limit)
    {
        if (string.IsNullOrWhiteSpace(correlationId))
        {
            throw new InvalidTraceRequestException("correlationId", "it must not be empty");
        }

        if (correlationId.Length > MaxCorrelationIdLength)
        {
            throw new InvalidTraceRequestException("correlationId", $"it has {correlationId.Length} characters; at most {MaxCorrelationIdLength} are allowed");
        }

        if (StoredText.Refuses(correlationId))
        {
            throw new InvalidTraceRequestException("correlationId", $"it must not contain {StoredText.Refused}");
        }

        if (limit is < 1 or > MaxLimit)
        {
            throw new InvalidTraceRequestException("limit", $"it is {limit}; it must be between 1 and {MaxLimit:N0}");
        }
    }
}

/// <summary>A correlation trace was asked for with a bad correlation id or limit; nothing was read.</summary>
public sealed class InvalidTraceRequestException(string field, string rule)
    : CairnException($"A correlation trace cannot be read: {field} is refused, {rule}.")
{
    /// <summary>The field refused: <c>correlationId</c> or <c>limit</c>.</summary>
    public string Field { get; } = field;

    /// <summary>The rule it broke.</summary>
    public string Rule { get; } = rule;
}

/// <summary>
/// Traces one correlation id: the ordered timeline of every event and message it caused, across streams, queues and
/// consumers, with the causation tree. <c>AddCairn</c> registers it for backends that can trace.
/// </summary>
public sealed class CorrelationTracer(ICorrelationTraceReader reader)
{
    private readonly ICorrelationTraceReader _reader = reader ?? throw new ArgumentNullException(nameof(reader));

    /// <summary>Traces <paramref name="correlationId"/>, reading at most <see cref="CorrelationTraceLimits.DefaultLimit"/> records.</summary>
    public Task<CorrelationTrace> TraceAsync(string correlationId, CancellationToken cancellationToken) =>
        TraceAsync(correlationId, CorrelationTraceLimits.DefaultLimit, cancellationToken);

    /// <summary>
    /// Traces <paramref name="correlationId"/>, reading at most <paramref name="limit"/> records (the earliest);
    /// <see cref="CorrelationTrace.Truncated"/> says when there were more.
    /// </summary>
    public async Task<CorrelationTrace> TraceAsync(string correlationId, int limit, CancellationToken cancellationToken)
    {
        CorrelationTraceLimits.Validate(correlationId, limit);
        using var activity = CairnDiagnostics.MessagingSource.StartActivity("trace correlation");
        activity?.SetTag("cairn.correlation_id", correlationId);
        var records = await _reader.ReadAsync(correlationId, limit, cancellationToken).ConfigureAwait(false);
        var trace = CorrelationTrace.From(correlationId, records);
        activity?.SetTag("cairn.trace_entries", trace.Timeline.Count);
        return trace;
    }
}
