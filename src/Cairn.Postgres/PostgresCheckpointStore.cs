using Cairn.EventStore;
using Cairn.Subscriptions;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>Checkpoints in the same PostgreSQL schema as the events, one row per key.</summary>
public sealed class PostgresCheckpointStore(PostgresEventStore store) : ICheckpointStore
{
    /// <inheritdoc />
    public async ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken)
    {
        CheckpointKeys.Validate(key);
        await using var connection = await store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand($"SELECT position FROM {store.Table("checkpoints")} WHERE key = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = key });
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long position ? new GlobalPosition(position) : null;
    }

    /// <inheritdoc />
    public async ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken)
    {
        CheckpointKeys.Validate(key);
        await using var connection = await store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(
            $"INSERT INTO {store.Table("checkpoints")} (key, position) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET position = excluded.position, updated_at = now()",
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = key });
        command.Parameters.Add(new NpgsqlParameter { Value = position.Value });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }
}
