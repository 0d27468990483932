using Cairn.EventStore;
using Cairn.Schemas;

namespace Cairn.Sqlite;

/// <summary>
/// The schema registry in the same SQLite file as the events: a row per version in <c>cairn_schema_versions</c>, never
/// updated, and a type's compatibility mode in <c>cairn_schema_types</c>. A new version joins the writer's next group
/// commit, where it is checked against the latest in the same transaction, so of two registrations of one version,
/// from this process or another, exactly one is added. Reads run on a pooled connection beside the writer.
/// </summary>
public sealed class SqliteSchemaStore(SqliteEventStore store) : ISchemaStore
{
    /// <inheritdoc />
    public Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            cancellationToken.ThrowIfCancellationRequested();
            var rows = new List<(int Version, string Document)>();
            using (var lease = store.RentReadConnection())
            using (var statement = new RawStatement(lease.Db, "SELECT version, document FROM cairn_schema_versions WHERE event_type = ?1 ORDER BY version"))
            {
                statement.Bind(1, eventType);
                while (statement.Step())
                {
                    rows.Add(((int)statement.Int64(0), statement.Text(1)));
                }
            }

            // Parsed once the connection is back in the pool.
            return Task.FromResult<IReadOnlyList<RegisteredSchema>>(
                rows.ConvertAll(r => new RegisteredSchema(eventType, r.Version, SchemaStoreInput.Parse(eventType, r.Version, r.Document))));
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<RegisteredSchema>>(ex);
        }
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            var types = new List<string>();
            using (var lease = store.RentReadConnection())
            using (var statement = new RawStatement(lease.Db, "SELECT DISTINCT event_type FROM cairn_schema_versions"))
            {
                while (statement.Step())
                {
                    types.Add(statement.Text(0));
                }
            }

            // Sorted here, not by SQL: SQLite compares UTF-8 bytes, which orders some names apart from .NET's ordinal
            // (UTF-16) order, the one the contract promises.
            types.Sort(StringComparer.Ordinal);
            return Task.FromResult<IReadOnlyList<string>>(types);
        }
        catch (Exception ex)
        {
            return Refusal.Of<IReadOnlyList<string>>(ex);
        }
    }

    /// <inheritdoc />
    public Task AddVersionAsync(RegisteredSchema schema, CancellationToken cancellationToken = default)
    {
        try
        {
            var document = SchemaStoreInput.CheckAndSerialize(schema);
            var (eventType, version) = (schema.EventType, schema.Version);
            return store.Writer.ExecuteAsync(context => context.AddSchemaVersion(eventType, version, document, schema.FirstOfType), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            cancellationToken.ThrowIfCancellationRequested();
            using var lease = store.RentReadConnection();
            using var statement = new RawStatement(lease.Db, "SELECT compatibility FROM cairn_schema_types WHERE event_type = ?1");
            statement.Bind(1, eventType);
            if (!statement.Step())
            {
                return Task.FromResult<CompatibilityMode?>(null);
            }

            var stored = statement.Text(0);
            return Enum.TryParse<CompatibilityMode>(stored, ignoreCase: false, out var mode) && mode.ToString() == stored
                ? Task.FromResult<CompatibilityMode?>(mode)
                : throw new CairnException($"The SQLite file {store.DataSource} records the unknown compatibility mode '{stored}' for the event type '{eventType}'.");
        }
        catch (Exception ex)
        {
            return Refusal.Of<CompatibilityMode?>(ex);
        }
    }

    /// <inheritdoc />
    public Task SetCompatibilityAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            SchemaStoreInput.CheckMode(mode, nameof(mode));
            return store.Writer.ExecuteAsync(context => context.SetSchemaCompatibility(eventType, mode.ToString()), cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }
}

/// <summary>The writer's schema registry statements. Schemas are registered seldom, so each is prepared when it runs.</summary>
internal sealed partial class SqliteWriteContext
{
    /// <summary>
    /// Adds a version if it is the type's latest plus one, or the type has none (which one added as the first of its type
    /// needs); otherwise refuses it. The check and the
    /// insert run in the writer's transaction, which no other connection can write beside.
    /// </summary>
    public bool AddSchemaVersion(string eventType, int version, string document, bool firstOfType)
    {
        long? latest;
        using (var select = new RawStatement(_connection, "SELECT max(version) FROM cairn_schema_versions WHERE event_type = ?1"))
        {
            select.Bind(1, eventType);
            latest = select.ExecuteInt64();
        }

        if (latest is { } l && (firstOfType || version != l + 1))
        {
            throw new SchemaVersionConflictException(eventType, version, (int)l);
        }

        Wrote();
        using var insert = new RawStatement(_connection, """
            INSERT INTO cairn_schema_versions (event_type, version, document, registered_ticks)
            VALUES (?1, ?2, ?3, ?4)
            """);
        insert.Bind(1, eventType);
        insert.Bind(2, (long)version);
        insert.Bind(3, document);
        insert.Bind(4, TimeTicks);
        insert.Execute();
        return true;
    }

    /// <summary>Records a type's compatibility mode, replacing the one recorded before.</summary>
    public bool SetSchemaCompatibility(string eventType, string mode)
    {
        Wrote();
        using var upsert = new RawStatement(_connection, """
            INSERT INTO cairn_schema_types (event_type, compatibility) VALUES (?1, ?2)
            ON CONFLICT (event_type) DO UPDATE SET compatibility = excluded.compatibility
            """);
        upsert.Bind(1, eventType);
        upsert.Bind(2, mode);
        upsert.Execute();
        return true;
    }
}
