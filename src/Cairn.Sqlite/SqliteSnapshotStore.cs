using Cairn.Domain;
using Cairn.EventStore;

namespace Cairn.Sqlite;

/// <summary>
/// Decider snapshots in the same SQLite file as the events, one row per stream and kind. A save joins the writer's
/// next group commit and replaces the row only when its stream version is at least the stored one's; a load reads on a
/// pooled connection beside the writer.
/// </summary>
public sealed class SqliteSnapshotStore(SqliteEventStore store) : ISnapshotStore
{
    /// <inheritdoc />
    public async ValueTask<bool> SaveAsync(StoredSnapshot snapshot, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        snapshot.Validate();
        return await store.Writer.ExecuteAsync(context => context.SaveSnapshot(snapshot), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask<StoredSnapshot?> LoadAsync(StreamName stream, string kind, CancellationToken cancellationToken)
    {
        try
        {
            var name = stream.Value;
            SnapshotKinds.Validate(kind);
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = store.RentReadConnection();
            var statement = lease.Prepared("SELECT schema_version, stream_version, first_version, position, data FROM cairn_snapshots WHERE stream = ?1 AND kind = ?2");
            statement.Bind(1, name);
            statement.Bind(2, kind);
            if (!statement.Step())
            {
                return ValueTask.FromResult<StoredSnapshot?>(null);
            }

            var snapshot = new StoredSnapshot(
                stream,
                kind,
                StreamVersion: statement.Int64(1),
                FirstVersion: statement.Int64(2),
                Position: new GlobalPosition(statement.Int64(3)),
                SchemaVersion: (int)statement.Int64(0),
                Data: statement.Blob(4).ToArray());
            return ValueTask.FromResult<StoredSnapshot?>(snapshot);
        }
        catch (Exception ex)
        {
            return Refusal.ValueOf<StoredSnapshot?>(ex);
        }
    }

    /// <inheritdoc />
    public async ValueTask<bool> DeleteAsync(StreamName stream, string kind, CancellationToken cancellationToken)
    {
        var name = stream.Value;
        SnapshotKinds.Validate(kind);
        return await store.Writer.ExecuteAsync(context => context.DeleteSnapshot(name, kind), cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>The writer's snapshot statements. Snapshots are saved seldom, so each is prepared when it runs.</summary>
internal sealed partial class SqliteWriteContext
{
    /// <summary>Upserts a snapshot unless a later one is stored; returns whether it was written.</summary>
    public bool SaveSnapshot(StoredSnapshot snapshot)
    {
        Wrote();
        using var upsert = new RawStatement(_connection, """
            INSERT INTO cairn_snapshots (stream, kind, schema_version, stream_version, first_version, position, taken_ticks, data)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            ON CONFLICT (stream, kind) DO UPDATE SET
                schema_version = excluded.schema_version,
                stream_version = excluded.stream_version,
                first_version = excluded.first_version,
                position = excluded.position,
                taken_ticks = excluded.taken_ticks,
                data = excluded.data
            WHERE excluded.stream_version >= cairn_snapshots.stream_version
            RETURNING 1
            """);
        upsert.Bind(1, snapshot.Stream.Value);
        upsert.Bind(2, snapshot.Kind);
        upsert.Bind(3, (long)snapshot.SchemaVersion);
        upsert.Bind(4, snapshot.StreamVersion);
        upsert.Bind(5, snapshot.FirstVersion);
        upsert.Bind(6, snapshot.Position.Value);
        upsert.Bind(7, TimeTicks);
        upsert.Bind(8, snapshot.Data.Span);
        return upsert.ExecuteInt64() is not null;
    }

    /// <summary>Deletes a stream's snapshot of a kind; returns whether there was one.</summary>
    public bool DeleteSnapshot(string stream, string kind)
    {
        Wrote();
        using var delete = new RawStatement(_connection, "DELETE FROM cairn_snapshots WHERE stream = ?1 AND kind = ?2 RETURNING 1");
        delete.Bind(1, stream);
        delete.Bind(2, kind);
        return delete.ExecuteInt64() is not null;
    }
}
