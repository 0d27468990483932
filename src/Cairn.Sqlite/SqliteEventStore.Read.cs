using System.Runtime.CompilerServices;
using System.Text;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

public sealed partial class SqliteEventStore
{
    private const int PageSize = 1024;

    /// <summary>A page stops early past this much data, so large events cannot make a page huge.</summary>
    private const long MaxPageBytes = 8 * 1024 * 1024;

    /// <inheritdoc />
    public async IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxCount);
        ArgumentOutOfRangeException.ThrowIfNegative(fromVersion ?? 0, nameof(fromVersion));
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = OpenReadConnection();
        var info = ReadStreamInfo(connection, stream);
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
        using var command = connection.CreateCommand();
        command.CommandText = forwards
            ? $"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.stream_id = $stream AND e.version >= $from AND e.version >= $first AND e.time_ticks >= $oldest ORDER BY e.version LIMIT $limit"
            : $"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.stream_id = $stream AND e.version <= $from AND e.version >= $first AND e.time_ticks >= $oldest ORDER BY e.version DESC LIMIT $limit";
        command.Parameters.AddWithValue("$stream", row.Id);
        command.Parameters.AddWithValue("$first", firstVisible);
        command.Parameters.AddWithValue("$oldest", oldest);
        var from = command.Parameters.AddWithValue("$from", fromVersion ?? (forwards ? 0 : long.MaxValue));
        var limit = command.Parameters.AddWithValue("$limit", 0);

        var remaining = maxCount;
        var page = new List<RecordedEvent>();
        var idBuffer = new byte[16];
        while (remaining > 0)
        {
            limit.Value = Math.Min(remaining, PageSize);
            if (!ReadPage(command, connection, page, idBuffer))
            {
                remaining = 0;
            }

            foreach (var e in page)
            {
                yield return e;
                from.Value = forwards ? e.Version + 1 : e.Version - 1;
                if (--remaining == 0)
                {
                    break;
                }
            }

            if (forwards ? false : (long)from.Value! < 0)
            {
                yield break;
            }

            cancellationToken.ThrowIfCancellationRequested();
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCount);
        return ReadByPositionAsync(Math.Max(from.Value, 1), maxCount, (sql, command) => SqliteQueries.AppendFilter(sql, command, filter), cancellationToken);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCount);
        return ReadByPositionAsync(after.Value + 1, maxCount, (sql, command) =>
        {
            sql.Append(" AND ");
            SqliteQueries.AppendQueryPredicate(sql, command, query);
        }, cancellationToken);
    }

    private async IAsyncEnumerable<RecordedEvent> ReadByPositionAsync(long from, long maxCount, Action<StringBuilder, SqliteCommand> predicate, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = OpenReadConnection();
        using var command = connection.CreateCommand();
        var sql = new StringBuilder($"SELECT {SqliteRows.EventColumns} FROM cairn_events e WHERE e.position >= $from");
        predicate(sql, command);
        sql.Append(" ORDER BY e.position LIMIT $limit");
        command.CommandText = sql.ToString();
        var fromParameter = command.Parameters.AddWithValue("$from", from);
        var limit = command.Parameters.AddWithValue("$limit", 0);

        var remaining = maxCount;
        var page = new List<RecordedEvent>();
        var idBuffer = new byte[16];
        while (remaining > 0)
        {
            limit.Value = Math.Min(remaining, PageSize);
            var more = ReadPage(command, connection, page, idBuffer);
            foreach (var e in page)
            {
                yield return e;
                fromParameter.Value = e.Position.Value + 1;
                if (--remaining == 0)
                {
                    yield break;
                }
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
    /// Reads one page into <paramref name="page"/> and closes the statement, so no snapshot is held while the caller
    /// works. Returns whether more rows may follow.
    /// </summary>
    private bool ReadPage(SqliteCommand command, SqliteConnection connection, List<RecordedEvent> page, byte[] idBuffer)
    {
        page.Clear();
        var wanted = Convert.ToInt64(command.Parameters["$limit"].Value, System.Globalization.CultureInfo.InvariantCulture);
        long bytes = 0;
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var e = _rows.Read(reader, connection, idBuffer);
            page.Add(e);
            bytes += e.Data.Length;
            if (bytes >= MaxPageBytes)
            {
                return true;
            }
        }

        return page.Count == wanted;
    }

    /// <inheritdoc />
    public ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = OpenReadConnection();
        return ValueTask.FromResult(ReadStreamInfo(connection, stream).Info);
    }

    /// <inheritdoc />
    public ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = OpenReadConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT coalesce(max(position), 0) FROM cairn_events";
        return ValueTask.FromResult(new GlobalPosition((long)command.ExecuteScalar()!));
    }

    private static (StreamInfo Info, StreamRowView? Row) ReadStreamInfo(SqliteConnection connection, StreamName stream)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, last_version, state, max_count, max_age_ticks, truncate_before FROM cairn_streams WHERE name = $name";
        command.Parameters.AddWithValue("$name", stream.Value);
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            return (new StreamInfo(stream, StreamState.NotFound, null, new StreamMetadata()), null);
        }

        var row = new StreamRowView(
            reader.GetInt64(0),
            reader.IsDBNull(1) ? null : reader.GetInt64(1),
            (StreamState)reader.GetInt32(2),
            SqliteRows.ReadMetadata(reader, 3));
        return (new StreamInfo(stream, row.State, row.LastVersion, row.Metadata), row);
    }

    private sealed record StreamRowView(long Id, long? LastVersion, StreamState State, StreamMetadata Metadata);
}
