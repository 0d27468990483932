using Cairn.Domain;
using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// Decider snapshots in the same PostgreSQL schema as the events, one row per stream and kind. A save replaces the row
/// only when its stream version is at least the stored one's, in one statement, so concurrent savers in any process
/// never put an older snapshot over a newer one.
/// </summary>
public sealed class PostgresSnapshotStore(PostgresEventStore store) : ISnapshotStore
{
    private readonly string _table = store.Table("snapshots");

    /// <inheritdoc />
    public async ValueTask<bool> SaveAsync(StoredSnapshot snapshot, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        snapshot.Validate();
        await using var connection = await store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var upsert = new NpgsqlCommand(
            $"""
            INSERT INTO {_table} AS t (stream, kind, schema_version, stream_version, first_version, position, data)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (stream, kind) DO UPDATE SET
                schema_version = excluded.schema_version,
                stream_version = excluded.stream_version,
                first_version = excluded.first_version,
                position = excluded.position,
                taken_at = now(),
                data = excluded.data
            WHERE excluded.stream_version >= t.stream_version
            """,
            connection);
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.Stream.Value });
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.Kind });
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.SchemaVersion });
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.StreamVersion });
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.FirstVersion });
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.Position.Value });
        upsert.Parameters.Add(new NpgsqlParameter { Value = snapshot.Data.ToArray() });
        return await upsert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
    }

    /// <inheritdoc />
    public async ValueTask<StoredSnapshot?> LoadAsync(StreamName stream, string kind, CancellationToken cancellationToken)
    {
        var name = stream.Value;
        SnapshotKinds.Validate(kind);
        await using var connection = await store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var select = new NpgsqlCommand($"SELECT schema_version, stream_version, first_version, position, data FROM {_table} WHERE stream = $1 AND kind = $2", connection);
        select.Parameters.Add(new NpgsqlParameter { Value = name });
        select.Parameters.Add(new NpgsqlParameter { Value = kind });
        await using var reader = await select.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        return new StoredSnapshot(
            stream,
            kind,
            StreamVersion: reader.GetInt64(1),
            FirstVersion: reader.GetInt64(2),
            Position: new GlobalPosition(reader.GetInt64(3)),
            SchemaVersion: reader.GetInt32(0),
            Data: reader.GetFieldValue<byte[]>(4));
    }

    /// <inheritdoc />
    public async ValueTask<bool> DeleteAsync(StreamName stream, string kind, CancellationToken cancellationToken)
    {
        var name = stream.Value;
        SnapshotKinds.Validate(kind);
        await using var connection = await store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var delete = new NpgsqlCommand($"DELETE FROM {_table} WHERE stream = $1 AND kind = $2", connection);
        delete.Parameters.Add(new NpgsqlParameter { Value = name });
        delete.Parameters.Add(new NpgsqlParameter { Value = kind });
        return await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) > 0;
    }
}
