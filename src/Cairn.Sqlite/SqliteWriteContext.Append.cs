using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

internal sealed partial class SqliteWriteContext
{
    /// <summary>Appends a prepared request in the transaction in hand: checks first, then writes.</summary>
    public AppendResult Append(PreparedAppend append)
    {
        if (StreamRules.MayBeRetry(append, LookupId))
        {
            return StreamRules.CheckRetry(append, LookupId)!;
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
        var written = HasLiveInline() ? new List<RecordedEvent>(append.EventCount) : null;
        Span<byte> idBytes = stackalloc byte[16];
        string? runCorrelation = null;
        for (var s = 0; s < append.Streams.Count; s++)
        {
            var part = append.Streams[s];
            var row = rows[s];
            if (row.Id == 0)
            {
                row.State = StreamState.Active;
                InsertStream(part.Stream, row);
            }
            else if (row.State != StreamState.Active)
            {
                // Metadata set before the first append, or a soft delete: the stream starts (again).
                row.State = StreamState.Active;
                UpdateStream(row);
            }

            var version = firstVersions[s];
            foreach (var e in part.Events)
            {
                SqliteRows.WriteId(e.Id, idBytes);
                InsertEvent(row.Id, version, e, idBytes, startsRun: e.CorrelationId is not null && e.CorrelationId != runCorrelation);
                runCorrelation = e.CorrelationId;
                written?.Add(new RecordedEvent(e.Id, part.Stream, version, new GlobalPosition(Head), e.Type, e.Source, new DateTimeOffset(TimeTicks, TimeSpan.Zero), e.ContentType, e.Data)
                {
                    DataSchema = e.DataSchema,
                    CorrelationId = e.CorrelationId,
                    CausationId = e.CausationId,
                    TraceParent = e.TraceParent,
                    Tags = e.Tags,
                    Metadata = e.Metadata ?? new Dictionary<string, string>(),
                });
                version++;
            }

            row.LastVersion = version - 1;
            results[s] = new StreamAppendResult(part.Stream, firstVersions[s], version - 1);
        }

        if (written is not null)
        {
            // In the append's own savepoint: an inline projection that throws fails the append, and nothing lands.
            ApplyInline(written);
        }

        return new AppendResult(results, new GlobalPosition(firstPosition), new GlobalPosition(Head), WasDuplicate: false);
    }

    /// <summary>Changes a stream's lifecycle and records the change in its metadata stream.</summary>
    public bool ChangeLifecycle(StreamName stream, ExpectedVersion expected, ExpectedVersion expectedMetadata, StreamRules.LifecycleChange change, StreamMetadata? metadata, Func<StreamState, StreamMetadata, PreparedAppend> record)
    {
        StreamRules.CheckMetadataVersion(stream, expectedMetadata, () => GetStream(stream.MetadataStream).LastVersion);
        var row = GetStream(stream);
        if (StreamRules.ApplyLifecycle(stream, expected, change, row.State, row.LastVersion, row.Metadata, metadata) is not { } next)
        {
            return false;
        }

        Append(record(next.State, next.Metadata));
        row.State = next.State;
        row.Metadata = next.Metadata;
        if (row.Id == 0)
        {
            InsertStream(stream, row);
        }

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
        _selectStream.Bind(1, stream.Value);
        try
        {
            if (_selectStream.Step())
            {
                row.Id = _selectStream.Int64(0);
                row.LastVersion = _selectStream.IsNull(1) ? null : _selectStream.Int64(1);
                row.State = (StreamState)_selectStream.Int64(2);
                row.Metadata = SqliteRows.ReadMetadata(_selectStream, 3);
            }
        }
        finally
        {
            _selectStream.Reset();
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
        _insertStream.Bind(1, stream.Value);
        _insertStream.Bind(2, stream.Category);
        _insertStream.Bind(3, (long)row.State);
        row.Id = _insertStream.ExecuteInt64()!.Value;
    }

    private void UpdateStream(StreamRow row)
    {
        Wrote();
        _updateStream.Bind(1, (long)row.State);
        _updateStream.Bind(2, row.Metadata.MaxCount);
        _updateStream.Bind(3, row.Metadata.MaxAge?.Ticks);
        _updateStream.Bind(4, row.Metadata.TruncateBefore);
        _updateStream.Bind(5, row.Id);
        _updateStream.Execute();
    }

    /// <summary>
    /// Inserts one event. <paramref name="startsRun"/>: the event carries a correlation id the one before it in the same
    /// append does not, so it is indexed; the rest of the run is found by reading on from it.
    /// </summary>
    private void InsertEvent(long streamId, long version, PreparedEvent e, Span<byte> idBytes, bool startsRun)
    {
        Wrote();
        var position = Head + 1;
        var typeId = NameId(e.Type);
        EnvelopeCodec.Write(_envelope, streamId, version, typeId, NameId(e.Source), NameId(e.ContentType), TimeTicks, e);
        var insert = _insertEvent;
        insert.Bind(1, position);
        insert.Bind(2, streamId);
        insert.Bind(3, version);
        insert.Bind(4, idBytes);
        insert.Bind(5, typeId);
        insert.Bind(6, TimeTicks);
        insert.Bind(7, _envelope.WrittenSpan);
        insert.Bind(8, e.Data.Span);
        try
        {
            insert.Execute();
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19 && ex.Message.Contains("cairn_events.id", StringComparison.Ordinal))
        {
            throw new DuplicateEventIdException(e.Id, "was already appended, and this append is not a retry of the one that wrote it");
        }

        Head = position;
        foreach (var tag in e.Tags)
        {
            _insertTag.Bind(1, tag);
            _insertTag.Bind(2, position);
            _insertTag.Execute();
        }

        if (startsRun)
        {
            // Only events in a flow: one that starts its own has no correlation stored, and a trace finds it by id.
            var insertFlow = Sql("INSERT INTO cairn_event_flows (correlation_id, position) VALUES (?1, ?2)");
            insertFlow.Bind(1, CorrelationKey(e.CorrelationId!));
            insertFlow.Bind(2, position);
            insertFlow.Execute();
        }
    }

    /// <summary>
    /// The key of a correlation id in <c>cairn_correlations</c>, given to it now if it has none: keys follow the order
    /// correlations are first seen, so the flows in progress sit at the end of the indexes keyed by them.
    /// </summary>
    private long CorrelationKey(string correlation) => Intern(
        correlation,
        _correlationKeys,
        MaxCachedCorrelations,
        Sql("SELECT id FROM cairn_correlations WHERE value = ?1"),
        Sql("INSERT INTO cairn_correlations (value) VALUES (?1) RETURNING id"));

    /// <summary>The id of a type, source or content type in <c>cairn_names</c>, given to it now if it has none.</summary>
    private long NameId(string value) => Intern(value, _names, MaxCachedNames, _selectName, _insertName);

    /// <summary>
    /// The id of <paramref name="value"/> in a table of strings, through a cache of at most <paramref name="maxCached"/>
    /// entries (emptied when full, and whenever a rollback may have undone an id it holds).
    /// </summary>
    private long Intern(string value, Dictionary<string, long> cache, int maxCached, RawStatement select, RawStatement insert)
    {
        if (cache.TryGetValue(value, out var id))
        {
            return id;
        }

        select.Bind(1, value);
        if (select.ExecuteInt64() is { } found)
        {
            id = found;
        }
        else
        {
            Wrote();
            insert.Bind(1, value);
            id = insert.ExecuteInt64()!.Value;
        }

        if (cache.Count >= maxCached)
        {
            cache.Clear();
        }

        cache[value] = id;
        return id;
    }

    private StreamRules.StoredId? LookupId(MessageId id)
    {
        Span<byte> bytes = stackalloc byte[16];
        SqliteRows.WriteId(id, bytes);
        _selectId.Bind(1, bytes);
        try
        {
            return _selectId.Step() ? new StreamRules.StoredId(_selectId.Text(0), _selectId.Int64(1), _selectId.Int64(2)) : null;
        }
        finally
        {
            _selectId.Reset();
        }
    }

    private void CheckCondition(AppendCondition condition)
    {
        var sql = new StringBuilder("SELECT e.position FROM cairn_events e WHERE e.position > $after AND ");
        var parameters = new SqlParameters { { "$after", condition.After?.Value ?? 0 } };
        SqliteQueries.AppendQueryPredicate(sql, parameters, condition.FailIfEventsMatch);
        sql.Append(" ORDER BY e.position LIMIT 1");
        using var statement = new RawStatement(_connection, sql.ToString());
        parameters.BindTo(statement);
        if (statement.ExecuteInt64() is { } position)
        {
            throw new AppendConditionFailedException(condition, new GlobalPosition(position));
        }
    }
}
