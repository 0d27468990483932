using System.Text.Json;
using Cairn.Envelopes;
using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>Reads and writes the envelope columns of <c>messages</c>.</summary>
internal static class PostgresMessageRows
{
    /// <summary>The envelope columns over <c>messages m</c>, in the order <see cref="Read"/> expects.</summary>
    public const string Columns = "m.id, m.type, m.source, m.time_ticks, m.content_type, m.data_schema, m.subject, m.correlation_id, m.causation_id, m.trace_parent, m.group_key, m.metadata, m.data";

    /// <summary>How many columns <see cref="Columns"/> names.</summary>
    public const int Count = 13;

    /// <summary>
    /// Whether a waiting or leased row of <c>messages m</c> is past its queue's retention and not held under a running
    /// lease, where <c>$2</c> is now: a receive drops such a row rather than delivering it, and the statistics do not
    /// count it.
    /// </summary>
    public const string Expired = "(m.expires_ticks <= $2 AND NOT (m.state = 1 AND m.visible_at > $2))";

    /// <summary>The type under which a message whose stored envelope cannot be read is shown.</summary>
    public const string UnreadableType = "cairn.unreadable";

    /// <summary>The columns an insert of <see cref="Parameters"/> fills, in order.</summary>
    public const string InsertColumns = "id, type, source, time_ticks, content_type, data_schema, subject, correlation_id, causation_id, trace_parent, group_key, metadata, data";

    /// <summary>The values of <see cref="InsertColumns"/> for a message committed at <paramref name="timeTicks"/>.</summary>
    public static IEnumerable<NpgsqlParameter> Parameters(PreparedMessage m, long timeTicks) =>
    [
        Pg.Uuid(m.Id.Value),
        Pg.Text(m.Type),
        Pg.Text(m.Source),
        Pg.Long(timeTicks),
        Pg.Text(m.ContentType),
        Pg.Text(m.DataSchema),
        Pg.Text(m.Subject),

        // A message without a correlation starts a flow of its own: its id is its correlation.
        Pg.Text(m.CorrelationId ?? m.Id.ToString()),
        Pg.Text(m.CausationId),
        Pg.Text(m.TraceParent),
        Pg.Text(m.GroupKey),
        Pg.Bytes(m.Metadata is { Count: > 0 } metadata ? JsonSerializer.SerializeToUtf8Bytes(metadata, CairnJsonContext.Default.IReadOnlyDictionaryStringString) : null),
        Pg.Bytes(m.Data.ToArray()),
    ];

    /// <summary>Reads the envelope columns starting at <paramref name="at"/>; the data only when <paramref name="withData"/>.</summary>
    public static Message Read(NpgsqlDataReader reader, int at, bool withData = true)
    {
        var id = new MessageId(reader.GetGuid(at));
        return new Message(
            id,
            reader.GetString(at + 1),
            reader.GetString(at + 2),
            new DateTimeOffset(reader.GetInt64(at + 3), TimeSpan.Zero),
            reader.GetString(at + 4),
            withData ? reader.GetFieldValue<byte[]>(at + 12) : ReadOnlyMemory<byte>.Empty)
        {
            DataSchema = TextOrNull(reader, at + 5),
            Subject = TextOrNull(reader, at + 6),
            CorrelationId = reader.GetString(at + 7),
            CausationId = TextOrNull(reader, at + 8),
            TraceParent = TextOrNull(reader, at + 9),
            GroupKey = TextOrNull(reader, at + 10),
            Metadata = reader.IsDBNull(at + 11)
                ? Message.NoMetadata
                : JsonSerializer.Deserialize(reader.GetFieldValue<byte[]>(at + 11), CairnJsonContext.Default.IReadOnlyDictionaryStringString) ?? Message.NoMetadata,
        };
    }

    /// <summary>
    /// What is shown of a message whose envelope cannot be read: its id and raw data, so the dead letter or trace that
    /// holds it can still be inspected and purged.
    /// </summary>
    public static Message Unreadable(NpgsqlDataReader reader, int at, DateTimeOffset time, bool withData = true) =>
        new(new MessageId(reader.GetGuid(at)), UnreadableType, "urn:cairn:unreadable", time, "application/octet-stream", withData ? reader.GetFieldValue<byte[]>(at + 12) : ReadOnlyMemory<byte>.Empty)
        {
            CorrelationId = reader.GetString(at + 7),
        };

    public static FailureInfo? Failure(NpgsqlDataReader reader, int column) =>
        reader.IsDBNull(column) ? null : JsonSerializer.Deserialize(reader.GetString(column), CairnJsonContext.Default.FailureInfo);

    /// <summary>
    /// Whether reading a stored message failed on what the row holds (a damaged envelope: an id, a time or an attribute
    /// out of range, JSON that does not parse), as opposed to the connection: such a row is shown as unreadable, or
    /// dead-lettered, rather than failing every read that meets it.
    /// </summary>
    public static bool IsUnreadable(Exception error) =>
        error is EventStore.CairnException or JsonException or ArgumentException or FormatException or InvalidCastException;

    public static string? FailureJson(FailureInfo? failure) =>
        failure is null ? null : JsonSerializer.Serialize(failure, CairnJsonContext.Default.FailureInfo);

    public static string? TextOrNull(NpgsqlDataReader reader, int column) => reader.IsDBNull(column) ? null : reader.GetString(column);

    public static long? LongOrNull(NpgsqlDataReader reader, int column) => reader.IsDBNull(column) ? null : reader.GetInt64(column);
}
