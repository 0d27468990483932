using System.Runtime.CompilerServices;
using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresEventStore
{
    /// <summary>
    /// The first page of a read: small, so a read of a few events or a live tail costs little, and a read of the first
    /// events of a stream of large events has the server send few of them (a page's byte cap stops what it keeps, not
    /// what the server sends: the rest of a query's rows are read and dropped).
    /// </summary>
    private const int FirstPageSize = 64;

    /// <summary>
    /// Pages double up to this size while a read goes on: each page is a query with its own round trip and start-up
    /// on the server, which a long read (a rebuild, a catch-up) would otherwise pay every 512 events.
    /// </summary>
    private const int MaxPageSize = 8192;

    /// <summary>A page stops early past this much data, so large events cannot make a page huge.</summary>
    private const long MaxPageBytes = 8 * 1024 * 1024;

    /// <inheritdoc />
    public async IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ReadDirections.Validate(direction);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCount);
        ArgumentOutOfRangeException.ThrowIfNegative(fromVersion ?? 0, nameof(fromVersion));
        cancellationToken.ThrowIfCancellationRequested();
        (StreamRow Row, long Id)? found;
        await using (var connection = await OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        {
            found = await ReadStreamRowWithIdAsync(connection, null, stream, cancellationToken).ConfigureAwait(false);
        }

        if (found is not { } info || info.Row.State is StreamState.NotFound or StreamState.SoftDeleted)
        {
            yield break;
        }

        if (info.Row.State == StreamState.Tombstoned)
        {
            throw new StreamDeletedException(stream);
        }

        var firstVisible = StreamRules.FirstVisibleVersion(info.Row.Metadata, info.Row.LastVersion);
        var oldest = StreamRules.OldestVisibleTime(info.Row.Metadata, _options.TimeProvider)?.UtcTicks ?? long.MinValue;
        var forwards = direction == ReadDirection.Forwards;
        var query = new PostgresQuery($"SELECT {EventRows.Columns} FROM {_s}.events e WHERE e.stream_id = ");
        query.Sql.Append(query.Add(info.Id)).Append(" AND e.version >= ").Append(query.Add(firstVisible)).Append(" AND e.time_ticks >= ").Append(query.Add(oldest));

        // The pages end at the last version the stream's row showed: an append, or a delete and an append, committed
        // between the two reads would otherwise show through limits and a soft delete worked out without it.
        query.Sql.Append(" AND e.version <= ").Append(query.Add(info.Row.LastVersion ?? -1L));
        query.Sql.Append(forwards ? " AND e.version >= " : " AND e.version <= ").Append(query.Next());
        query.Sql.Append(forwards ? " ORDER BY e.version LIMIT " : " ORDER BY e.version DESC LIMIT ").Append(query.Next(1));
        var start = fromVersion ?? (forwards ? 0 : long.MaxValue);
        await foreach (var e in PagesAsync(query, start, maxCount, forwards ? e => e.Version + 1 : e => e.Version - 1, cancellationToken).ConfigureAwait(false))
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

        var query = new PostgresQuery($"SELECT {EventRows.Columns} FROM {_s}.events e WHERE TRUE");
        query.AppendFilter(filter, _s);
        return ByPositionAsync(query, Math.Max(from.Value, 1), maxCount, cancellationToken);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken)
    {
        if (ReadArguments.Refusal(query, nameof(query), maxCount) is { } refused)
        {
            return Refusal.Enumeration<RecordedEvent>(refused);
        }

        var sql = new PostgresQuery($"SELECT {EventRows.Columns} FROM {_s}.events e WHERE ");
        sql.AppendQueryPredicate(query);
        return ByPositionAsync(sql, after.Value + 1, maxCount, cancellationToken);
    }

    private IAsyncEnumerable<RecordedEvent> ByPositionAsync(PostgresQuery query, long from, long maxCount, CancellationToken cancellationToken)
    {
        query.Sql.Append(" AND e.position >= ").Append(query.Next()).Append(" ORDER BY e.position LIMIT ").Append(query.Next(1));
        return PagesAsync(query, from, maxCount, e => e.Position.Value + 1, cancellationToken);
    }

    /// <summary>
    /// Pages through a query ordered by a key (a version or a position) whose last two parameters are the key to start
    /// from and the page's limit. Each page is read on a connection taken from the pool and given back before its
    /// events are yielded, so a slow consumer holds no connection and no snapshot. While one page is yielded the next
    /// is read, so the server and the consumer work at once; at most two pages are held. A negative key ends a
    /// backwards read.
    /// </summary>
    private async IAsyncEnumerable<RecordedEvent> PagesAsync(PostgresQuery query, long start, long maxCount, Func<RecordedEvent, long> nextKey, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (maxCount <= 0 || start < 0)
        {
            yield break;
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var remaining = maxCount;
        var pageSize = FirstPageSize;
        var asked = (int)Math.Min(remaining, pageSize);
        var rows = new EventRowReader();
        Task<(List<RecordedEvent> Page, bool More)>? next = ReadPageAsync(query, rows, start, asked, stop.Token);
        try
        {
            while (next is not null)
            {
                var (page, more) = await next.ConfigureAwait(false);
                next = null;
                var afterPage = remaining - page.Count;
                if (more && afterPage > 0 && page.Count > 0 && nextKey(page[^1]) is var key && key >= 0)
                {
                    // A page its byte cap cut short says how many events of this size fit; only full pages grow, so
                    // large events never have the server send far more rows than a page keeps.
                    pageSize = page.Count < asked ? page.Count : Math.Min(pageSize * 2, MaxPageSize);
                    asked = (int)Math.Min(afterPage, pageSize);
                    next = ReadPageAsync(query, rows, key, asked, stop.Token);
                }

                foreach (var e in page)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    yield return e;
                    remaining--;
                }
            }
        }
        finally
        {
            if (next is not null)
            {
                // The consumer stopped early: the page being read is not wanted; its connection goes back to the pool.
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await next.ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is OperationCanceledException or NpgsqlException)
                {
                    // Expected: the read was cancelled.
                }
            }
        }
    }

    /// <summary>
    /// Reads one page: up to <paramref name="limit"/> events, fewer past <see cref="MaxPageBytes"/>; says whether there
    /// may be more. The pages of one read share <paramref name="rows"/>, one at a time.
    /// </summary>
    private async Task<(List<RecordedEvent> Page, bool More)> ReadPageAsync(PostgresQuery query, EventRowReader rows, long key, int limit, CancellationToken cancellationToken)
    {
        var page = new List<RecordedEvent>(limit);
        var more = false;
        await using var connection = await OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = query.ToCommand(connection, null, key, limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        long bytes = 0;
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var e = rows.Read(reader);
            page.Add(e);
            bytes += e.HeldBytes;
            if (bytes >= MaxPageBytes)
            {
                more = true;
                break;
            }
        }

        return (page, more || page.Count == limit);
    }

    /// <inheritdoc />
    public async ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var row = await ReadStreamRowAsync(connection, null, stream, cancellationToken).ConfigureAwait(false);
        return row is null
            ? new StreamInfo(stream, StreamState.NotFound, null, new StreamMetadata())
            : new StreamInfo(stream, row.State, row.LastVersion, row.Metadata);
    }

    /// <inheritdoc />
    public async ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(HeadPositionSql, connection);
        return new GlobalPosition((long)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!);
    }

    private async Task<StreamRow?> ReadStreamRowAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, StreamName stream, CancellationToken cancellationToken) =>
        (await ReadStreamRowWithIdAsync(connection, transaction, stream, cancellationToken).ConfigureAwait(false))?.Row;

    private async Task<(StreamRow Row, long Id)?> ReadStreamRowWithIdAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, StreamName stream, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT {StreamRow.ColumnsOf(_s)}, t.id FROM {_s}.streams t WHERE t.name = $1", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = stream.Value });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? (StreamRow.Read(reader), reader.GetInt64(6)) : null;
    }
}
