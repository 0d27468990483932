using System.Collections.Concurrent;
using Cairn.Envelopes;
using Cairn.EventStore;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>Turns rows into envelopes and back: ids, stream metadata, and the event columns.</summary>
internal static class SqliteRows
{
    /// <summary>The event columns, in the order <see cref="EventReader.Read"/> expects them.</summary>
    public const string EventColumns = "e.position, e.envelope, e.data";

    /// <summary>Big-endian, so version 7 ids sort by time and insert at the end of the id index.</summary>
    public static void WriteId(MessageId id, Span<byte> destination) => id.Value.TryWriteBytes(destination, bigEndian: true, out _);

    /// <summary>The id as <see cref="WriteId"/> writes it, in an array of its own (for a value bound once, or kept).</summary>
    public static byte[] IdBytes(MessageId id)
    {
        var bytes = new byte[16];
        WriteId(id, bytes);
        return bytes;
    }

    public static StreamMetadata ReadMetadata(RawStatement row, int first) => new()
    {
        MaxCount = row.IsNull(first) ? null : row.Int64(first),
        MaxAge = row.IsNull(first + 1) ? null : TimeSpan.FromTicks(row.Int64(first + 1)),
        TruncateBefore = row.IsNull(first + 2) ? null : row.Int64(first + 2),
    };
}

/// <summary>
/// Materialises event rows. Stream names and interned strings are cached per store, so a long read allocates little
/// more than each event's own data.
/// </summary>
internal sealed class EventReader
{
    private const int MaxCachedStreams = 100_000;

    private readonly BoundedCache<StreamName> _streams = new(MaxCachedStreams);
    private readonly BoundedCache<string> _names = new(MaxCachedStreams);
    private static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();

    public RecordedEvent Read(RawStatement row, sqlite3 db)
    {
        var envelope = EnvelopeCodec.Read(row.Blob(1));
        return new RecordedEvent(
            envelope.Id,
            StreamOf(envelope.StreamId, db),
            envelope.Version,
            new GlobalPosition(row.Int64(0)),
            NameOf(envelope.TypeId, db),
            NameOf(envelope.SourceId, db),
            new DateTimeOffset(envelope.TimeTicks, TimeSpan.Zero),
            NameOf(envelope.ContentTypeId, db),
            row.Blob(2).ToArray())
        {
            DataSchema = envelope.DataSchema,
            CorrelationId = envelope.CorrelationId,
            CausationId = envelope.CausationId,
            TraceParent = envelope.TraceParent,
            Tags = envelope.Tags ?? [],
            Metadata = envelope.Metadata ?? NoMetadata,
        };
    }

    private StreamName StreamOf(long id, sqlite3 db)
    {
        if (_streams.TryGetValue(id, out var name))
        {
            return name;
        }

        using var statement = new RawStatement(db, "SELECT name FROM cairn_streams WHERE id = ?1");
        statement.Bind(1, id);
        name = new StreamName(statement.Step() ? statement.Text(0) : throw new CairnException($"The event store file has an event of stream {id}, which is missing."));
        _streams.Add(id, name);
        return name;
    }

    private string NameOf(long id, sqlite3 db)
    {
        if (_names.TryGetValue(id, out var name))
        {
            return name;
        }

        using var statement = new RawStatement(db, "SELECT value FROM cairn_names WHERE id = ?1");
        statement.Bind(1, id);
        name = statement.Step() ? statement.Text(0) : throw new CairnException($"The event store file has an event naming string {id}, which is missing.");
        _names.Add(id, name);
        return name;
    }
}

/// <summary>
/// A cache by row id shared by concurrent readers, emptied whenever it reaches its bound. It counts what it adds
/// itself: <see cref="ConcurrentDictionary{TKey, TValue}.Count"/> takes every lock of the dictionary, and a read of a
/// new stream (every workflow instance is one) would take them all on each miss.
/// </summary>
internal sealed class BoundedCache<TValue>(int bound)
{
    private readonly ConcurrentDictionary<long, TValue> _entries = new();
    private int _added;

    public bool TryGetValue(long id, out TValue value) => _entries.TryGetValue(id, out value!);

    public void Add(long id, TValue value)
    {
        if (_entries.TryAdd(id, value) && Interlocked.Increment(ref _added) >= bound)
        {
            Interlocked.Exchange(ref _added, 0);
            _entries.Clear();
        }
    }
}
