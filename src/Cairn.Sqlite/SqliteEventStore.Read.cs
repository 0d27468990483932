using System.Runtime.CompilerServices;
using System.Text;
using Cairn.EventStore;
using SQLitePCL;

namespace Cairn.Sqlite;

public sealed partial class SqliteEventStore
{
    private const int PageSize = 1024;

    /// <summary>A page stops early past this much data, so large events cannot make a page huge.</summary>
    private const long MaxPageBytes = 8 * 1024 * 1024;

    // The stream reads' statements, kept prepared with each read connection; their parameters are numbered so a read
    // binds them without looking their names up.
    private const string StreamInfoSql = "SELECT s.id, (SELECT max(e.version) FROM cairn_events e WHERE e.stream_id = s.id), s.state, s.max_count, s.max_age_ticks, s.truncate_before FROM cairn_streams s WHERE s.name = ?1";
    private const string StreamPageForwards = $"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.stream_id = ?1 AND e.version >= ?4 AND e.version >= ?2 AND e.version <= ?6 AND e.time_ticks >= ?3 ORDER BY e.version LIMIT ?5";
    private const string StreamPageBackwards = $"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.stream_id = ?1 AND e.version <= ?4 AND e.version >= ?2 AND e.version <= ?6 AND e.time_ticks >= ?3 ORDER BY e.version DESC LIMIT ?5";
    private const string HeadPositionSql = "SELECT coalesce(max(position), 0) FROM cairn_events";

    /// <inheritdoc />
    public async IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ReadDirections.Validate(direction);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCount);
        ArgumentOutOfRangeException.ThrowIfNegative(fromVersion ?? 0, nameof(fromVersion));
        cancellationToken.ThrowIfCancellationRequested();
        using var lease = _readers.Rent();
        var connection = lease.Db;
        var info = ReadStreamInfo(lease, stream);
        if (info.Row is not { } row || row.State is StreamState.NotFound or StreamState.SoftDeleted)
        {
            yield break;
        }

        if (row.State == StreamState.Tombstoned)
        {
            throw new StreamDeletedException(stream);
        }

        var firstVisible = StreamRules.FirstVisibleVersion(row.Metadata, row.LastVersion);
        var oldest = StreamRules.OldestVisibleTime(row.Metadata, _options.TimeProvider)?.UtcTicks ?? long.MinValue;
        var forwards = direction == ReadDirection.Forwards;
        var statement = lease.Prepared(forwards ? StreamPageForwards : StreamPageBackwards);
        statement.Bind(1, row.Id);
        statement.Bind(2, firstVisible);
        statement.Bind(3, oldest);

        // The pages end at the last version the stream's row showed: an append, or a delete and an append, committed
        // between the two reads would otherwise show through limits and a soft delete worked out without it.
        statement.Bind(6, row.LastVersion ?? -1);
        var start = fromVersion ?? (forwards ? 0 : long.MaxValue);
        await foreach (var e in PagesAsync(statement, connection, 4, 5, start, maxCount, forwards ? e => e.Version + 1 : e => e.Version - 1, cancellationToken).ConfigureAwait(false))
        {
            yield return e;
        }
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken)
    {
        if (ReadArguments.Refusal(filter, nameof(filter), maxCount) is { } refused)
        {
            return Refusal.Enumeration<RecordedEvent>(refused);
        }

        return ReadByPositionAsync(Math.Max(from.Value, 1), maxCount, (sql, command) => SqliteQueries.AppendFilter(sql, command, filter), cancellationToken);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken)
    {
        if (ReadArguments.Refusal(query, nameof(query), maxCount) is { } refused)
        {
            return Refusal.Enumeration<RecordedEvent>(refused);
        }

        return ReadByPositionAsync(after.Value + 1, maxCount, (sql, command) =>
        {
            sql.Append(" AND ");
            SqliteQueries.AppendQueryPredicate(sql, command, query);
        }, cancellationToken);
    }

    private async IAsyncEnumerable<RecordedEvent> ReadByPositionAsync(long from, long maxCount, Action<StringBuilder, SqlParameters> predicate, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var lease = _readers.Rent();
        var connection = lease.Db;
        var sql = new StringBuilder($"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.position >= $from");
        var parameters = new SqlParameters();
        predicate(sql, parameters);
        sql.Append(" ORDER BY e.position LIMIT $limit");
        using var statement = new RawStatement(connection, sql.ToString());
        parameters.BindTo(statement);
        await foreach (var e in PagesAsync(statement, connection, statement.IndexOf("$from"), statement.IndexOf("$limit"), from, maxCount, e => e.Position.Value + 1, cancellationToken).ConfigureAwait(false))
        {
            yield return e;
        }
    }

    /// <summary>
    /// Pages through a statement ordered by a key (a version or a position) bound as parameter <paramref name="from"/>,
    /// at most parameter <paramref name="limit"/> rows a page, until <paramref name="maxCount"/> events or the end. The
    /// key after each event comes from <paramref name="nextKey"/>; a negative key ends a backwards read.
    /// </summary>
    private async IAsyncEnumerable<RecordedEvent> PagesAsync(RawStatement statement, sqlite3 connection, int from, int limit, long start, long maxCount, Func<RecordedEvent, long> nextKey, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var key = start;
        var remaining = maxCount;
        var page = new List<RecordedEvent>();
        while (remaining > 0 && key >= 0)
        {
            statement.Bind(from, key);
            var wanted = Math.Min(remaining, PageSize);
            statement.Bind(limit, wanted);
            var more = ReadPage(statement, connection, page, wanted);
            foreach (var e in page)
            {
                // Per event, not per page: a caller that cancels while it takes a page stops at once, as on every backend.
                cancellationToken.ThrowIfCancellationRequested();
                yield return e;
                key = nextKey(e);
                remaining--;
            }

            if (!more)
            {
                yield break;
            }

            cancellationToken.ThrowIfCancellationRequested();
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <summary>
    /// Reads one page into <paramref name="page"/> and resets the statement, so no snapshot is held while the caller
    /// works. Returns whether more rows may follow.
    /// </summary>
    private bool ReadPage(RawStatement statement, sqlite3 connection, List<RecordedEvent> page, long wanted)
    {
        page.Clear();
        long bytes = 0;
        try
        {
            while (statement.Step())
            {
                var e = _rows.Read(statement, connection);
                page.Add(e);
                bytes += e.HeldBytes;
                if (bytes >= MaxPageBytes)
                {
                    return true;
                }
            }
        }
        finally
        {
            statement.Reset();
        }

        return page.Count == wanted;
    }

    /// <inheritdoc />
    public ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _readers.Rent();
            return ValueTask.FromResult(ReadStreamInfo(lease, stream).Info);
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<StreamInfo>(ex);
        }
    }

    /// <inheritdoc />
    public ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = _readers.Rent();
            return ValueTask.FromResult(new GlobalPosition(lease.Prepared(HeadPositionSql).ExecuteInt64() ?? 0));
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<GlobalPosition>(ex);
        }
    }

    private static (StreamInfo Info, StreamRowView? Row) ReadStreamInfo(ReadConnectionPool.Lease lease, StreamName stream)
    {
        var statement = lease.Prepared(StreamInfoSql);
        try
        {
            statement.Bind(1, stream.Value);
            if (!statement.Step())
            {
                return (new StreamInfo(stream, StreamState.NotFound, null, new StreamMetadata()), null);
            }

            var row = new StreamRowView(
                statement.Int64(0),
                statement.IsNull(1) ? null : statement.Int64(1),
                (StreamState)statement.Int64(2),
                SqliteRows.ReadMetadata(statement, 3));
            return (new StreamInfo(stream, row.State, row.LastVersion, row.Metadata), row);
        }
        finally
        {
            // Done with before the lease ends: a stream read goes on to page through the events.
            statement.Reset();
        }
    }

    private sealed record StreamRowView(long Id, long? LastVersion, StreamState State, StreamMetadata Metadata);
}
