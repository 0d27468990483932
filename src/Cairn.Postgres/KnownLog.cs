namespace Cairn.Postgres;

/// <summary>
/// What a writer knows of the log from its own optimistic commits: the head it left and the rows of the streams it read
/// or wrote since. It is true only while no other writer appends, so a write that relies on it commits only if, under
/// the append lock, the head is still <see cref="Head"/>, and the streams it takes for new are not in the log: then it
/// needs no read before it. Any other outcome drops it, and the next write reads the log again.
/// </summary>
internal sealed class KnownLog
{
    /// <summary>The most stream rows kept; beyond it they are dropped, which costs a read at worst, never a wrong answer.</summary>
    public const int MaxStreams = 4096;

    public KnownLog(long head, long lastTicks, Dictionary<string, StreamRow> streams)
    {
        Head = head;
        LastTicks = lastTicks;
        Streams = streams;
    }

    /// <summary>The last position in the log when the writer last committed.</summary>
    public long Head { get; }

    /// <summary>The commit time of the event at <see cref="Head"/>.</summary>
    public long LastTicks { get; }

    /// <summary>The rows of streams as they are at <see cref="Head"/>; a stream not here may or may not exist.</summary>
    public Dictionary<string, StreamRow> Streams { get; }
}
