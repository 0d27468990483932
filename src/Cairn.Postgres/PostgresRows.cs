using System.Text;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// A stream as its row of <c>streams</c> and its events give it: its lifecycle state and metadata from the row, its last
/// version from its events.
/// </summary>
internal sealed record StreamRow(string Name, StreamState State, long? LastVersion, StreamMetadata Metadata)
{
    /// <summary>
    /// The columns <see cref="Read"/> expects, in order, over <c>streams t</c> in schema <paramref name="s"/>. The last
    /// version is the greatest of the stream's events (one probe of the (stream, version) index): events are never
    /// deleted, so it never goes back, and an append need not write the row of a stream that stays active.
    /// </summary>
    public static string ColumnsOf(string s) =>
        $"t.name, t.state, (SELECT max(e.version) FROM {s}.events e WHERE e.stream_id = t.id), t.max_count, t.max_age_ticks, t.truncate_before";

    public static StreamRow Read(NpgsqlDataReader reader) => new(
        reader.GetString(0),
        (StreamState)reader.GetInt16(1),
        reader.IsDBNull(2) ? null : reader.GetInt64(2),
        new StreamMetadata
        {
            MaxCount = reader.IsDBNull(3) ? null : reader.GetInt64(3),
            MaxAge = reader.IsDBNull(4) ? null : TimeSpan.FromTicks(reader.GetInt64(4)),
            TruncateBefore = reader.IsDBNull(5) ? null : reader.GetInt64(5),
        });
}

/// <summary>The columns of <c>events</c> that a read selects, in the order <see cref="EventRowReader"/> reads them.</summary>
internal static class EventRows
{
    /// <summary>
    /// The columns <see cref="EventRowReader.Read"/> expects, in order, over <c>events e</c>. An untagged event has null
    /// tags and a JSON event a null content type (migration 7; rows written before have an empty list and the type
    /// spelled out), so the common row sends and decodes neither.
    /// </summary>
    public const string Columns = "e.position, e.id, e.stream, e.version, e.type, e.source, e.time_ticks, e.content_type, e.data_schema, e.correlation_id, e.causation_id, e.trace_parent, e.tags, e.metadata, e.data";
}

/// <summary>
/// Reads events from rows of <c>events</c> (<see cref="EventRows.Columns"/>) through a reader opened without
/// <see cref="System.Data.CommandBehavior.SequentialAccess"/>. One instance serves the rows of one read, one row at a
/// time. A stream's name, an event's type and its source repeat from row to row, so past its first
/// <see cref="RowsBeforeCaching"/> rows a read keeps the values it has decoded, and a repeated one costs neither a
/// decoding nor a string; a short read (an aggregate's few events) pays nothing for the caches.
/// </summary>
internal sealed class EventRowReader
{
    /// <summary>Rows read before the caches are made: fewer are read without them.</summary>
    private const int RowsBeforeCaching = 64;

    private static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();

    private int _rows;
    private RepeatedText<StreamName>? _streams;
    private RepeatedText<string>? _types;
    private RepeatedText<string>? _sources;

    /// <summary>Reads the current row's columns in their order.</summary>
    public RecordedEvent Read(NpgsqlDataReader reader)
    {
        if (++_rows == RowsBeforeCaching)
        {
            _streams = new RepeatedText<StreamName>(256, static name => new StreamName(name));
            _types = new RepeatedText<string>(64, static type => type);
            _sources = new RepeatedText<string>(16, static source => source);
        }

        var position = reader.GetInt64(0);
        var id = reader.GetGuid(1);
        var stream = _streams is null ? new StreamName(reader.GetString(2)) : _streams.Read(reader, 2);
        var version = reader.GetInt64(3);
        var type = _types is null ? reader.GetString(4) : _types.Read(reader, 4);
        var source = _sources is null ? reader.GetString(5) : _sources.Read(reader, 5);
        var timeTicks = reader.GetInt64(6);
        var contentType = reader.IsDBNull(7) ? EventData.JsonContentType : reader.GetString(7);
        var dataSchema = reader.IsDBNull(8) ? null : reader.GetString(8);
        var correlationId = reader.IsDBNull(9) ? null : reader.GetString(9);
        var causationId = reader.IsDBNull(10) ? null : reader.GetString(10);
        var traceParent = reader.IsDBNull(11) ? null : reader.GetString(11);
        var tags = reader.IsDBNull(12) ? [] : reader.GetFieldValue<string[]>(12);
        var metadata = reader.IsDBNull(13)
            ? NoMetadata
            : JsonSerializer.Deserialize(reader.GetFieldValue<byte[]>(13), CairnJsonContext.Default.IReadOnlyDictionaryStringString) ?? NoMetadata;
        var data = reader.GetFieldValue<byte[]>(14);
        return new RecordedEvent(new MessageId(id), stream, version, new GlobalPosition(position), type, source, new DateTimeOffset(timeTicks, TimeSpan.Zero), contentType, data)
        {
            DataSchema = dataSchema,
            CorrelationId = correlationId,
            CausationId = causationId,
            TraceParent = traceParent,
            Tags = tags,
            Metadata = metadata,
        };
    }
}

/// <summary>
/// A text column whose values repeat from row to row, read through a small cache of the values decoded before: the
/// column's bytes as the server sent them are looked up by their hash in a table of <c>slots</c> entries, one value per
/// entry, and only a value not found there is decoded (by Npgsql, as any string, so in the connection's encoding) and
/// made into a <typeparamref name="T"/> by <c>create</c>. A value too long for the cache is decoded every time. The
/// column is read twice on a miss, so the reader must not be opened with
/// <see cref="System.Data.CommandBehavior.SequentialAccess"/>.
/// </summary>
/// <typeparam name="T">What a value becomes: a string, or a type made from one whose checks need run only once.</typeparam>
internal sealed class RepeatedText<T>(int slots, Func<string, T> create)
{
    /// <summary>The longest value kept, in bytes: longer ones are rare and cost the comparison more than it saves.</summary>
    public const int MaxBytes = 512;

    private readonly byte[]?[] _keys = new byte[]?[slots];
    private readonly T[] _values = new T[slots];

    /// <summary>One byte more than <see cref="MaxBytes"/>: a value that fills it is too long to keep.</summary>
    private readonly byte[] _scratch = new byte[MaxBytes + 1];

    /// <summary>The value of column <paramref name="ordinal"/> of the reader's current row, which must not be null.</summary>
    public T Read(NpgsqlDataReader reader, int ordinal)
    {
        var length = (int)reader.GetBytes(ordinal, 0, _scratch, 0, _scratch.Length);
        if (length > MaxBytes)
        {
            return create(reader.GetString(ordinal));
        }

        var bytes = _scratch.AsSpan(0, length);
        var hash = new HashCode();
        hash.AddBytes(bytes);
        var slot = (int)((uint)hash.ToHashCode() % (uint)_keys.Length);
        if (_keys[slot] is { } key && bytes.SequenceEqual(key))
        {
            return _values[slot];
        }

        var value = create(reader.GetString(ordinal));
        _keys[slot] = bytes.ToArray();
        _values[slot] = value;
        return value;
    }
}

/// <summary>SQL built with positional parameters, never with spliced values.</summary>
internal sealed class PostgresQuery(string start)
{
    private readonly List<object> _values = [];

    public StringBuilder Sql { get; } = new(start);

    /// <summary>Adds a parameter and returns its placeholder.</summary>
    public string Add(object value)
    {
        _values.Add(value);
        return "$" + _values.Count;
    }

    /// <summary>
    /// Appends the predicate of an <see cref="EventFilter"/> over <c>events e</c> of the quoted schema <paramref name="s"/>,
    /// each part starting with <c> AND</c>.
    /// </summary>
    public void AppendFilter(EventFilter filter, string s)
    {
        if (!filter.IncludeSystemEvents)
        {
            Sql.Append(" AND NOT e.is_system");
        }

        if (filter.Stream is { } stream)
        {
            // By the stream's id, so that the (stream_id, version) index finds its events rather than a scan of the log.
            Sql.Append(" AND e.stream_id = (SELECT t.id FROM ").Append(s).Append(".streams t WHERE t.name = ").Append(Add(stream)).Append(')');
        }

        if (filter.Category is { } category)
        {
            Sql.Append(" AND e.category = ").Append(Add(category));
        }

        if (filter.EventTypes is { } types)
        {
            Sql.Append(" AND e.type = ANY(").Append(Add(types.ToArray())).Append(')');
        }
    }

    /// <summary>Appends the predicate of a tag and type query over <c>events e</c>: user events only.</summary>
    public void AppendQueryPredicate(EventQuery query)
    {
        Sql.Append("NOT e.is_system");
        if (query.MatchesAll)
        {
            return;
        }

        Sql.Append(" AND (");
        for (var i = 0; i < query.Items.Count; i++)
        {
            var item = query.Items[i];
            Sql.Append(i == 0 ? "(TRUE" : " OR (TRUE");
            if (item.Types.Count > 0)
            {
                Sql.Append(" AND e.type = ANY(").Append(Add(item.Types.ToArray())).Append(')');
            }

            if (item.Tags.Count > 0)
            {
                // The tags index holds tagged events only; saying the events are tagged lets the planner use it.
                Sql.Append(" AND e.tags <> '{}' AND e.tags @> ").Append(Add(item.Tags.ToArray())).Append("::text[]");
            }

            Sql.Append(')');
        }

        Sql.Append(')');
    }

    /// <summary>A command of this SQL with fresh parameters (a parameter belongs to one command at a time).</summary>
    public NpgsqlCommand ToCommand(NpgsqlConnection connection, NpgsqlTransaction? transaction = null, params object[] extra)
    {
        var command = new NpgsqlCommand(Sql.ToString(), connection, transaction);
        foreach (var value in _values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        foreach (var value in extra)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value });
        }

        return command;
    }

    /// <summary>The placeholder the next parameter will have, for values passed to <see cref="ToCommand"/> as extras.</summary>
    public string Next(int offset = 0) => "$" + (_values.Count + 1 + offset);
}
