namespace Cairn.Messaging;

/// <summary>
/// What declaring a queue again with another <see cref="QueueDefinition.Retention"/> or
/// <see cref="QueueDefinition.DeduplicationWindow"/> does to what the queue already holds, the same on every backend
/// that keeps the times as deadlines: a message is kept the new retention from when it was sent (or redriven), and a
/// deduplication id remembered the new window from when it was seen. Each deadline moves by the difference.
/// </summary>
/// <param name="Retention">Ticks to add to each message's expiry (negative for a shorter retention).</param>
/// <param name="DeduplicationWindow">Ticks to add to each remembered deduplication id's expiry.</param>
/// <param name="ForgetDeduplication">
/// Deduplication is turned off or on (a window of 0 on one side): the ids remembered are forgotten, or turning it on
/// again would bring back ones seen before it was off, and not checked while it was.
/// </param>
internal readonly record struct QueueKeeping(long Retention, long DeduplicationWindow, bool ForgetDeduplication)
{
    /// <summary>The change from <paramref name="before"/> to <paramref name="after"/>.</summary>
    public static QueueKeeping Change(QueueDefinition before, QueueDefinition after) => new(
        after.Retention.Ticks - before.Retention.Ticks,
        after.DeduplicationWindow.Ticks - before.DeduplicationWindow.Ticks,
        after.DeduplicationWindow != before.DeduplicationWindow && (after.DeduplicationWindow == TimeSpan.Zero || before.DeduplicationWindow == TimeSpan.Zero));
}
