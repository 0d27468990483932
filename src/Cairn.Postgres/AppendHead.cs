namespace Cairn.Postgres;

/// <summary>
/// Where the log ends as a writer sees it: the head read under the append lock (or, for an optimistic append, read
/// before it and checked under it), moved on by every append planned since, and the last commit time, which never goes
/// backwards along the log.
/// </summary>
internal sealed class AppendHead
{
    /// <summary>The last position written, or committed before: -1 until the head has been read.</summary>
    public long Head { get; private set; } = -1;

    /// <summary>The commit time of the last event at or before <see cref="Head"/>.</summary>
    public long LastTicks { get; private set; } = long.MinValue;

    /// <summary>The position of the last event planned here, or 0 when none was.</summary>
    public long LastAppended { get; private set; }

    /// <summary>Whether the head has been read.</summary>
    public bool IsKnown => Head >= 0;

    /// <summary>Records the head as read.</summary>
    public void Read(long head, long lastTicks)
    {
        Head = head;
        LastTicks = lastTicks;
    }

    /// <summary>The commit time for the next append: never before one already in the log.</summary>
    public long NextTicks(long now) => LastTicks = Math.Max(now, LastTicks);

    /// <summary>Moves the head past events just planned.</summary>
    public void Appended(long lastPosition)
    {
        Head = lastPosition;
        LastAppended = lastPosition;
    }

    /// <summary>Goes back to an earlier state (the work since was undone).</summary>
    public void Restore(long head, long lastTicks, long lastAppended)
    {
        Head = head;
        LastTicks = lastTicks;
        LastAppended = lastAppended;
    }
}
