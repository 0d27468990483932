using Cairn.EventStore;
using Cairn.Schemas;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// The schema registry in the store's PostgreSQL schema: a row per version in <c>schema_versions</c>, never updated,
/// and a type's compatibility mode in <c>schema_types</c>. Adding a version takes a transaction-scoped advisory lock
/// on its event type before it reads the latest, so of two registrations of one type, from this process or another,
/// the second sees the first: exactly one of two registrations of a version is added, and versions stay contiguous.
/// </summary>
public sealed class PostgresSchemaStore(PostgresEventStore store) : ISchemaStore
{
    /// <summary>The first key of a type's registration lock; the second is a hash of the schema and the type.</summary>
    private const int RegistryLockClass = 0x43415347; // "CASG"

    private readonly PostgresEventStore _store = store ?? throw new ArgumentNullException(nameof(store));

    /// <inheritdoc />
    public async Task<IReadOnlyList<RegisteredSchema>> GetVersionsAsync(string eventType, CancellationToken cancellationToken = default)
    {
        SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
        var rows = new List<(int Version, string Document)>();
        await using (var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        await using (var command = new NpgsqlCommand($"SELECT version, document FROM {_store.Table("schema_versions")} WHERE event_type = $1 ORDER BY version", connection))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = eventType });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                rows.Add((reader.GetInt32(0), reader.GetString(1)));
            }
        }

        return rows.ConvertAll(r => new RegisteredSchema(eventType, r.Version, SchemaStoreInput.Parse(eventType, r.Version, r.Document)));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> GetEventTypesAsync(CancellationToken cancellationToken = default)
    {
        var types = new List<string>();
        await using (var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false))
        await using (var command = new NpgsqlCommand($"SELECT DISTINCT event_type FROM {_store.Table("schema_versions")}", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                types.Add(reader.GetString(0));
            }
        }

        // Sorted here, not by SQL: the database's collation need not be .NET's ordinal order, the one the contract promises.
        types.Sort(StringComparer.Ordinal);
        return types;
    }

    /// <inheritdoc />
    public Task AddVersionAsync(RegisteredSchema schema, CancellationToken cancellationToken = default)
    {
        try
        {
            var document = SchemaStoreInput.CheckAndSerialize(schema);
            var (eventType, version) = (schema.EventType, schema.Version);
            var ticks = _store.Options.TimeProvider.GetUtcNow().UtcTicks;
            return _store.WriteAsync(async context =>
            {
                await using (var gate = context.Command($"SELECT pg_advisory_xact_lock({RegistryLockClass}, $1)"))
                {
                    gate.Parameters.Add(new NpgsqlParameter { Value = TypeKey(eventType) });
                    await gate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                await using (var latest = context.Command($"SELECT max(version) FROM {_store.Table("schema_versions")} WHERE event_type = $1"))
                {
                    latest.Parameters.Add(new NpgsqlParameter { Value = eventType });
                    if (await latest.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is int l && (schema.FirstOfType || version != l + 1))
                    {
                        throw new SchemaVersionConflictException(eventType, version, l);
                    }
                }

                await using var insert = context.Command($"INSERT INTO {_store.Table("schema_versions")} (event_type, version, document, registered_ticks) VALUES ($1, $2, $3, $4)");
                insert.Parameters.Add(new NpgsqlParameter { Value = eventType });
                insert.Parameters.Add(new NpgsqlParameter { Value = version });
                insert.Parameters.Add(new NpgsqlParameter { Value = document });
                insert.Parameters.Add(new NpgsqlParameter { Value = ticks });
                await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return true;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <inheritdoc />
    public async Task<CompatibilityMode?> GetCompatibilityAsync(string eventType, CancellationToken cancellationToken = default)
    {
        SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
        await using var connection = await _store.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand($"SELECT compatibility FROM {_store.Table("schema_types")} WHERE event_type = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = eventType });
        if (await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string stored)
        {
            return null;
        }

        return Enum.TryParse<CompatibilityMode>(stored, ignoreCase: false, out var mode) && mode.ToString() == stored
            ? mode
            : throw new CairnException($"The PostgreSQL schema '{_store.Schema}' records the unknown compatibility mode '{stored}' for the event type '{eventType}'.");
    }

    /// <inheritdoc />
    public Task SetCompatibilityAsync(string eventType, CompatibilityMode mode, CancellationToken cancellationToken = default)
    {
        try
        {
            SchemaStoreInput.CheckEventType(eventType, nameof(eventType));
            SchemaStoreInput.CheckMode(mode, nameof(mode));
            return _store.WriteAsync(async context =>
            {
                await using var upsert = context.Command($"""
                    INSERT INTO {_store.Table("schema_types")} (event_type, compatibility) VALUES ($1, $2)
                    ON CONFLICT (event_type) DO UPDATE SET compatibility = excluded.compatibility
                    """);
                upsert.Parameters.Add(new NpgsqlParameter { Value = eventType });
                upsert.Parameters.Add(new NpgsqlParameter { Value = mode.ToString() });
                await upsert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return true;
            }, cancellationToken);
        }
        catch (Exception ex)
        {
            return Refusal.Of(ex);
        }
    }

    /// <summary>The second key of a type's registration lock: the same in every process, and apart per schema.</summary>
    private int TypeKey(string eventType) => PostgresSchema.SchemaKey(_store.Schema + "\n" + eventType);
}
