using System.Collections.Concurrent;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

/// <summary>Turns rows into envelopes and back: ids, stream metadata, and the event columns.</summary>
internal static class SqliteRows
{
    /// <summary>The event columns, in the order <see cref="EventReader.Read"/> expects them.</summary>
    public const string EventColumns =
        "e.position, e.stream_id, e.version, e.id, e.type_id, e.source_id, e.content_type_id, e.time_ticks, e.data, e.data_schema, e.correlation_id, e.causation_id, e.traceparent, e.tags, e.metadata";

    /// <summary>Big-endian, so version 7 ids sort by time and insert at the end of the id index.</summary>
    public static byte[] IdBytes(MessageId id)
    {
        var bytes = new byte[16];
        id.Value.TryWriteBytes(bytes, bigEndian: true, out _);
        return bytes;
    }

    public static StreamMetadata ReadMetadata(SqliteDataReader reader, int first) => new()
    {
        MaxCount = reader.IsDBNull(first) ? null : reader.GetInt64(first),
        MaxAge = reader.IsDBNull(first + 1) ? null : TimeSpan.FromTicks(reader.GetInt64(first + 1)),
        TruncateBefore = reader.IsDBNull(first + 2) ? null : reader.GetInt64(first + 2),
    };
}

/// <summary>
/// Materialises event rows. Stream names and interned strings are cached per store, so a long read allocates little
/// more than each event's own data.
/// </summary>
internal sealed class EventReader
{
    private const int MaxCachedStreams = 100_000;

    private readonly ConcurrentDictionary<long, StreamName> _streams = new();
    private readonly ConcurrentDictionary<long, string> _names = new();
    private static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();

    public RecordedEvent Read(SqliteDataReader row, SqliteConnection connection, byte[] idBuffer)
    {
        row.GetBytes(3, 0, idBuffer, 0, 16);
        var recorded = new RecordedEvent(
            new MessageId(new Guid(idBuffer, bigEndian: true)),
            StreamOf(row.GetInt64(1), connection),
            row.GetInt64(2),
            new GlobalPosition(row.GetInt64(0)),
            NameOf(row.GetInt64(4), connection),
            NameOf(row.GetInt64(5), connection),
            new DateTimeOffset(row.GetInt64(7), TimeSpan.Zero),
            NameOf(row.GetInt64(6), connection),
            row.GetFieldValue<byte[]>(8))
        {
            DataSchema = row.IsDBNull(9) ? null : row.GetString(9),
            CorrelationId = row.IsDBNull(10) ? null : row.GetString(10),
            CausationId = row.IsDBNull(11) ? null : row.GetString(11),
            TraceParent = row.IsDBNull(12) ? null : row.GetString(12),
            Tags = row.IsDBNull(13) ? [] : JsonSerializer.Deserialize(row.GetString(13), CairnJsonContext.Default.StringArray) ?? [],
            Metadata = row.IsDBNull(14) ? NoMetadata : JsonSerializer.Deserialize(row.GetFieldValue<byte[]>(14), CairnJsonContext.Default.IReadOnlyDictionaryStringString) ?? NoMetadata,
        };
        return recorded;
    }

    private StreamName StreamOf(long id, SqliteConnection connection)
    {
        if (_streams.TryGetValue(id, out var name))
        {
            return name;
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM cairn_streams WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        name = new StreamName((string)command.ExecuteScalar()!);
        if (_streams.Count >= MaxCachedStreams)
        {
            _streams.Clear();
        }

        _streams[id] = name;
        return name;
    }

    private string NameOf(long id, SqliteConnection connection)
    {
        if (_names.TryGetValue(id, out var name))
        {
            return name;
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT value FROM cairn_names WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        name = (string)command.ExecuteScalar()!;
        _names[id] = name;
        return name;
    }
}
