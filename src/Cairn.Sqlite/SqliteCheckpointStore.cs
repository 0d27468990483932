using Cairn.EventStore;
using Cairn.Subscriptions;

namespace Cairn.Sqlite;

/// <summary>
/// Checkpoints in the same SQLite file as the events. A checkpoint write joins the writer's next group commit, so it
/// costs no fsync of its own.
/// </summary>
public sealed class SqliteCheckpointStore(SqliteEventStore store) : ICheckpointStore
{
    /// <inheritdoc />
    public ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken)
    {
        try
        {
            CheckpointKeys.Validate(key);
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = store.RentReadConnection();
            var statement = lease.Prepared("SELECT position FROM cairn_checkpoints WHERE key = ?1");
            statement.Bind(1, key);
            return ValueTask.FromResult(statement.ExecuteInt64() is { } position ? new GlobalPosition(position) : (GlobalPosition?)null);
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<GlobalPosition?>(ex);
        }
    }

    /// <inheritdoc />
    public async ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken)
    {
        CheckpointKeys.Validate(key);
        await store.Writer.ExecuteAsync(context =>
        {
            context.SetCheckpoint(key, position.Value);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }
}
