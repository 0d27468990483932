using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

internal sealed partial class SqliteWriteContext
{
    /// <summary>Appends a prepared request in the transaction in hand: checks first, then writes.</summary>
    public AppendResult Append(PreparedAppend append)
    {
        // A retry repeats its first ids; only then is the full idempotency check worth its look-ups.
        foreach (var part in append.Streams)
        {
            if (LookupId(part.Events[0].Id) is not null)
            {
                return StreamRules.CheckRetry(append, LookupId)!;
            }
        }

        var rows = new StreamRow[append.Streams.Count];
        var firstVersions = new long[append.Streams.Count];
        for (var s = 0; s < append.Streams.Count; s++)
        {
            var part = append.Streams[s];
            rows[s] = GetStream(part.Stream);
            firstVersions[s] = StreamRules.NextVersion(part.Stream, part.ExpectedVersion, rows[s].State, rows[s].LastVersion);
        }

        if (append.Condition is { } condition)
        {
            CheckCondition(condition);
        }

        var results = new StreamAppendResult[append.Streams.Count];
        var firstPosition = Head + 1;
        for (var s = 0; s < append.Streams.Count; s++)
        {
            var part = append.Streams[s];
            var row = rows[s];
            if (row.Id == 0)
            {
                InsertStream(part.Stream, row);
            }

            var version = firstVersions[s];
            foreach (var e in part.Events)
            {
                InsertEvent(row.Id, version++, e);
            }

            row.LastVersion = version - 1;
            row.State = StreamState.Active;
            UpdateStream(row);
            results[s] = new StreamAppendResult(part.Stream, firstVersions[s], version - 1);
        }

        return new AppendResult(results, new GlobalPosition(firstPosition), new GlobalPosition(Head), WasDuplicate: false);
    }

    /// <summary>Changes a stream's lifecycle and records the change in its metadata stream.</summary>
    public bool ChangeLifecycle(StreamName stream, ExpectedVersion expected, StreamRules.LifecycleChange change, StreamMetadata? metadata, Func<StreamState, StreamMetadata, PreparedAppend> record)
    {
        var row = GetStream(stream);
        if (StreamRules.ApplyLifecycle(stream, expected, change, row.State, row.LastVersion, row.Metadata, metadata) is not { } next)
        {
            return false;
        }

        Append(record(next.State, next.Metadata));
        if (row.Id == 0)
        {
            InsertStream(stream, row);
        }

        row.State = next.State;
        row.Metadata = next.Metadata;
        UpdateStream(row);
        return true;
    }

    private StreamRow GetStream(StreamName stream)
    {
        if (_streams.TryGetValue(stream.Value, out var cached))
        {
            return cached;
        }

        var row = new StreamRow();
        _selectStream.Parameters[0].Value = stream.Value;
        using (var reader = _selectStream.ExecuteReader())
        {
            if (reader.Read())
            {
                row.Id = reader.GetInt64(0);
                row.LastVersion = reader.IsDBNull(1) ? null : reader.GetInt64(1);
                row.State = (StreamState)reader.GetInt32(2);
                row.Metadata = SqliteRows.ReadMetadata(reader, 3);
            }
        }

        if (_streams.Count >= MaxCachedStreams)
        {
            _streams.Clear();
        }

        _streams[stream.Value] = row;
        return row;
    }

    private void InsertStream(StreamName stream, StreamRow row)
    {
        Wrote();
        _insertStream.Parameters[0].Value = stream.Value;
        _insertStream.Parameters[1].Value = stream.Category;
        row.Id = (long)_insertStream.ExecuteScalar()!;
    }

    private void UpdateStream(StreamRow row)
    {
        Wrote();
        var p = _updateStream.Parameters;
        p[0].Value = (object?)row.LastVersion ?? DBNull.Value;
        p[1].Value = (int)row.State;
        p[2].Value = (object?)row.Metadata.MaxCount ?? DBNull.Value;
        p[3].Value = (object?)row.Metadata.MaxAge?.Ticks ?? DBNull.Value;
        p[4].Value = (object?)row.Metadata.TruncateBefore ?? DBNull.Value;
        p[5].Value = row.Id;
        _updateStream.ExecuteNonQuery();
    }

    private void InsertEvent(long streamId, long version, PreparedEvent e)
    {
        Wrote();
        var position = Head + 1;
        var p = _eventParameters;
        p[0].Value = position;
        p[1].Value = streamId;
        p[2].Value = version;
        p[3].Value = SqliteRows.IdBytes(e.Id);
        p[4].Value = NameId(e.Type);
        p[5].Value = NameId(e.Source);
        p[6].Value = NameId(e.ContentType);
        p[7].Value = TimeTicks;
        p[8].Value = AsArray(e.Data);
        p[9].Value = (object?)e.DataSchema ?? DBNull.Value;
        p[10].Value = e.CorrelationId;
        p[11].Value = (object?)e.CausationId ?? DBNull.Value;
        p[12].Value = (object?)e.TraceParent ?? DBNull.Value;
        p[13].Value = e.Tags.Count == 0 ? DBNull.Value : JsonSerializer.Serialize(e.Tags.ToArray(), CairnJsonContext.Default.StringArray);
        p[14].Value = (object?)e.MetadataJson ?? DBNull.Value;
        try
        {
            _insertEvent.ExecuteNonQuery();
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19 && ex.Message.Contains("cairn_events.id", StringComparison.Ordinal))
        {
            throw new DuplicateEventIdException(e.Id, "was already appended, and this append is not a retry of the one that wrote it");
        }

        Head = position;
        foreach (var tag in e.Tags)
        {
            _insertTag.Parameters[0].Value = tag;
            _insertTag.Parameters[1].Value = position;
            _insertTag.ExecuteNonQuery();
        }
    }

    private static byte[] AsArray(ReadOnlyMemory<byte> data) =>
        MemoryMarshal.TryGetArray(data, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : data.ToArray();

    private long NameId(string value)
    {
        if (_names.TryGetValue(value, out var id))
        {
            return id;
        }

        _selectName.Parameters[0].Value = value;
        if (_selectName.ExecuteScalar() is long found)
        {
            id = found;
        }
        else
        {
            Wrote();
            _insertName.Parameters[0].Value = value;
            id = (long)_insertName.ExecuteScalar()!;
        }

        _names[value] = id;
        return id;
    }

    private StreamRules.StoredId? LookupId(MessageId id)
    {
        _selectId.Parameters[0].Value = SqliteRows.IdBytes(id);
        using var reader = _selectId.ExecuteReader();
        return reader.Read() ? new StreamRules.StoredId(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2)) : null;
    }

    private void CheckCondition(AppendCondition condition)
    {
        using var command = _connection.CreateCommand();
        var sql = new StringBuilder("SELECT e.position FROM cairn_events e WHERE e.position > $after AND ");
        command.Parameters.AddWithValue("$after", condition.After?.Value ?? 0);
        SqliteQueries.AppendQueryPredicate(sql, command, condition.FailIfEventsMatch);
        sql.Append(" ORDER BY e.position LIMIT 1");
        command.CommandText = sql.ToString();
        if (command.ExecuteScalar() is long position)
        {
            throw new AppendConditionFailedException(condition, new GlobalPosition(position));
        }
    }
}
