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

/// <summary>Reads events from rows of <c>events</c>.</summary>
internal static class EventRows
{
    /// <summary>
    /// The columns <see cref="Read"/> expects, in order, over <c>events e</c>. An untagged event has null tags and a JSON
    /// event a null content type (migration 7; rows written before have an empty list and the type spelled out), so
    /// the common row sends and decodes neither.
    /// </summary>
    public const string Columns = "e.position, e.id, e.stream, e.version, e.type, e.source, e.time_ticks, e.content_type, e.data_schema, e.correlation_id, e.causation_id, e.trace_parent, e.tags, e.metadata, e.data";

    private static readonly IReadOnlyDictionary<string, string> NoMetadata = new Dictionary<string, string>();

    /// <summary>
    /// Reads the row's columns in their order: the reader keeps a row's columns as they came, and going back to an
    /// earlier column costs a seek from the row's start.
    /// </summary>
    public static RecordedEvent Read(NpgsqlDataReader reader)
    {
        var position = reader.GetInt64(0);
        var id = reader.GetGuid(1);
        var stream = reader.GetString(2);
        var version = reader.GetInt64(3);
        var type = reader.GetString(4);
        var source = reader.GetString(5);
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
        return new RecordedEvent(new MessageId(id), new StreamName(stream), version, new GlobalPosition(position), type, source, new DateTimeOffset(timeTicks, TimeSpan.Zero), contentType, data)
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

    /// <summary>Appends the predicate of an <see cref="EventFilter"/> over <c>events e</c>, each part starting with <c> AND</c>.</summary>
    public void AppendFilter(EventFilter filter)
    {
        if (!filter.IncludeSystemEvents)
        {
            Sql.Append(" AND NOT e.is_system");
        }

        if (filter.Stream is { } stream)
        {
            Sql.Append(" AND e.stream = ").Append(Add(stream));
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
