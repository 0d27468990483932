using System.Text;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// Creates and migrates Cairn's tables in one PostgreSQL schema. Each migration has a version recorded in
/// <c>migrations</c>; all run in one transaction under a transaction-scoped advisory lock, so processes starting at once
/// migrate one after the other and the later ones find nothing to do.
/// </summary>
internal static partial class PostgresSchema
{
    /// <summary>
    /// Every migration, in version order: each part of the backend keeps its tables in a file of its own
    /// (<c>PostgresSchema.*.cs</c>) and adds its migration here.
    /// </summary>
    private static readonly (int Version, string Description, Func<string, string[]> Statements)[] Migrations =
    [
        (1, "events, streams and checkpoints", Migration1),
        (2, "queues, topics, dead letters and the inbox", Migration2),
        (3, "projections and snapshots", Migration3),
        (4, "the schema registry", RegistryMigration),
        (5, "events without a foreign key to streams", Migration5),
        (6, "streams without their last version", Migration6),
        (7, "events without an empty tag list or the JSON content type", Migration7),
        (8, "projection dead letters by build", Migration8),
    ];

    /// <summary>The schema version this library writes and reads.</summary>
    public static int CurrentVersion => Migrations[^1].Version;

    /// <summary>How many migrations bring a new schema to <see cref="CurrentVersion"/>.</summary>
    public static int MigrationCount => Migrations.Length;

    /// <summary>The first key of the migration lock; the second is the schema's <see cref="SchemaKey"/>.</summary>
    public const int MigrationLockClass = 0x43414D47; // "CAMG"

    /// <summary>The first key of the append lock, which serialises position assignment; the second is <see cref="SchemaKey"/>.</summary>
    public const int AppendLockClass = 0x43415050; // "CAPP"

    /// <summary>A stable 32-bit key for a schema name (FNV-1a of its UTF-8 bytes), the same in every process.</summary>
    public static int SchemaKey(string schema)
    {
        var hash = 2166136261u;
        foreach (var b in Encoding.UTF8.GetBytes(schema))
        {
            hash = (hash ^ b) * 16777619u;
        }

        return unchecked((int)hash);
    }

    private static string[] Migration1(string s) =>
    [
        $"""
        CREATE TABLE {s}.streams (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE,
            state smallint NOT NULL,
            last_version bigint,
            max_count bigint,
            max_age_ticks bigint,
            truncate_before bigint)
        """,
        $"""
        CREATE TABLE {s}.events (
            position bigint PRIMARY KEY,
            id uuid NOT NULL UNIQUE,
            stream_id bigint NOT NULL REFERENCES {s}.streams (id),
            stream text NOT NULL,
            category text NOT NULL,
            is_system boolean NOT NULL,
            version bigint NOT NULL,
            type text NOT NULL,
            time_ticks bigint NOT NULL,
            source text NOT NULL,
            content_type text NOT NULL,
            data_schema text,
            correlation_id text,
            causation_id text,
            trace_parent text,
            tags text[] NOT NULL,
            metadata bytea,
            data bytea NOT NULL,
            UNIQUE (stream_id, version))
        """,
        $"CREATE INDEX events_category_position ON {s}.events (category, position)",
        $"CREATE INDEX events_type_position ON {s}.events (type, position)",
        // Only tagged events: most carry no tags, and an untagged row would still cost the GIN index an entry.
        $"CREATE INDEX events_tags ON {s}.events USING gin (tags) WHERE tags <> '{{}}'",
        $"""
        CREATE TABLE {s}.checkpoints (
            key text PRIMARY KEY,
            position bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now())
        """,
    ];

    /// <summary>
    /// Drops the foreign key from <c>events.stream_id</c> to <c>streams</c>. Its check ran a query per inserted event;
    /// an append takes each stream id from a row it writes or finds in the same statement as its events, and nothing
    /// deletes a stream's row, so the key could never fail.
    /// </summary>
    private static string[] Migration5(string s) =>
    [
        $"ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_stream_id_fkey",
    ];

    /// <summary>
    /// Drops <c>streams.last_version</c>: a stream's last version is read from its events, so an append writes the row
    /// of a stream only when it creates the stream or changes its state, not on every append to it.
    /// </summary>
    private static string[] Migration6(string s) =>
    [
        $"ALTER TABLE {s}.streams DROP COLUMN IF EXISTS last_version",
    ];

    /// <summary>
    /// Lets <c>events.tags</c> and <c>events.content_type</c> be null: an untagged event stores no tag list, and a JSON
    /// event (<see cref="Cairn.EventStore.EventData.JsonContentType"/>, most of them) no content type. Every read of the
    /// log then sends two fewer values per such event and decodes two fewer. Rows written before keep theirs, which read
    /// the same. Only the constraints change; no row is rewritten.
    /// </summary>
    private static string[] Migration7(string s) =>
    [
        $"ALTER TABLE {s}.events ALTER COLUMN tags DROP NOT NULL, ALTER COLUMN content_type DROP NOT NULL",
    ];

    /// <summary>
    /// Brings the schema to <see cref="CurrentVersion"/> and returns its version before; refuses a schema written by a
    /// newer version of Cairn. Its statements have no time limit, whatever the connection string's <c>Command
    /// Timeout</c>: a migration may build an index over the whole log, and a process that finds another migrating waits
    /// for it (a cancelled <paramref name="cancellationToken"/> ends that wait). Only what is missing is created, so a
    /// role that owns a schema made for it (and a schema already current, any role that can use it) needs no
    /// <c>CREATE</c> on the database.
    /// </summary>
    public static int Migrate(NpgsqlDataSource dataSource, string schema, CancellationToken cancellationToken = default)
    {
        var s = Quote(schema);
        using var connection = dataSource.OpenConnection();
        using var transaction = connection.BeginTransaction();
        LockMigrations(connection, transaction, schema, cancellationToken);
        if (!Exists(connection, transaction, "to_regnamespace", s))
        {
            Execute(connection, transaction, $"CREATE SCHEMA {s}");
        }

        if (!Exists(connection, transaction, "to_regclass", s + ".migrations"))
        {
            Execute(connection, transaction, $"CREATE TABLE {s}.migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
        }

        var version = CurrentVersionOf(connection, transaction, s);
        if (version > CurrentVersion)
        {
            throw Newer(schema, version);
        }

        foreach (var migration in Migrations)
        {
            if (migration.Version <= version)
            {
                continue;
            }

            foreach (var sql in migration.Statements(s))
            {
                Execute(connection, transaction, sql);
            }

            using var record = new NpgsqlCommand($"INSERT INTO {s}.migrations (version, description) VALUES ($1, $2)", connection, transaction);
            record.Parameters.Add(new NpgsqlParameter { Value = migration.Version });
            record.Parameters.Add(new NpgsqlParameter { Value = migration.Description });
            record.ExecuteNonQuery();
        }

        transaction.Commit();
        return version;
    }

    /// <summary>The schema's version: 0 when it has no tables of Cairn's.</summary>
    public static int VersionOf(NpgsqlDataSource dataSource, string schema)
    {
        using var connection = dataSource.OpenConnection();
        using var command = new NpgsqlCommand("SELECT to_regclass(@t) IS NOT NULL", connection);
        command.Parameters.AddWithValue("t", Quote(schema) + ".migrations");
        return (bool)command.ExecuteScalar()! ? CurrentVersionOf(connection, null, Quote(schema)) : 0;
    }

    /// <summary>The schema's version, as <see cref="VersionOf"/>; the connect and the queries stop when cancelled.</summary>
    public static async Task<int> VersionOfAsync(NpgsqlDataSource dataSource, string schema, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var exists = new NpgsqlCommand("SELECT to_regclass($1) IS NOT NULL", connection);
        exists.Parameters.Add(new NpgsqlParameter { Value = Quote(schema) + ".migrations" });
        if (!(bool)(await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
        {
            return 0;
        }

        await using var version = new NpgsqlCommand($"SELECT coalesce(max(version), 0) FROM {Quote(schema)}.migrations", connection);
        return (int)(await version.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>Checks, without changing anything, that the schema is at <see cref="CurrentVersion"/>.</summary>
    public static void Check(NpgsqlDataSource dataSource, string schema)
    {
        var version = VersionOf(dataSource, schema);
        if (version > CurrentVersion)
        {
            throw Newer(schema, version);
        }

        if (version != CurrentVersion)
        {
            throw new InvalidOperationException($"The PostgreSQL schema '{schema}' is at version {version}, not {CurrentVersion}; migrate it (MigrateOnStart) before opening the store.");
        }
    }

    private static InvalidOperationException Newer(string schema, int version) =>
        new($"The PostgreSQL schema '{schema}' is at version {version}, newer than this Cairn ({CurrentVersion}); upgrade the application.");

    /// <summary>Whether <paramref name="function"/> (<c>to_regnamespace</c>, <c>to_regclass</c>) finds the object named.</summary>
    private static bool Exists(NpgsqlConnection connection, NpgsqlTransaction transaction, string function, string name)
    {
        using var command = new NpgsqlCommand($"SELECT {function}($1) IS NOT NULL", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = name });
        return (bool)command.ExecuteScalar()!;
    }

    private static int CurrentVersionOf(NpgsqlConnection connection, NpgsqlTransaction? transaction, string s)
    {
        using var command = new NpgsqlCommand($"SELECT coalesce(max(version), 0) FROM {s}.migrations", connection, transaction);
        return (int)command.ExecuteScalar()!;
    }

    /// <summary>The schema name quoted as an identifier; <see cref="PostgresEventStoreOptions.Validate"/> has checked it.</summary>
    public static string Quote(string schema) => "\"" + schema + "\"";

    /// <summary>
    /// Takes the schema's migration lock, waiting as long as another migration (or a session holding it) takes: no time
    /// limit, but <paramref name="cancellationToken"/> ends the wait, with <see cref="OperationCanceledException"/>.
    /// </summary>
    private static void LockMigrations(NpgsqlConnection connection, NpgsqlTransaction transaction, string schema, CancellationToken cancellationToken)
    {
        // Taken at once when nobody else holds it, whatever the token says: only a wait is what it ends (a host's store
        // first opened as the host stops still opens).
        using (var attempt = new NpgsqlCommand($"SELECT pg_try_advisory_xact_lock({MigrationLockClass}, {SchemaKey(schema)})", connection, transaction))
        {
            if ((bool)attempt.ExecuteScalar()!)
            {
                return;
            }
        }

        using var command = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({MigrationLockClass}, {SchemaKey(schema)})", connection, transaction) { CommandTimeout = 0 };
        using var cancel = cancellationToken.Register(static state => ((NpgsqlCommand)state!).Cancel(), command);
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            command.ExecuteNonQuery();
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.QueryCanceled && cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException($"The migration of schema '{schema}' was cancelled while it waited for the migration lock.", ex, cancellationToken);
        }
    }

    private static void Execute(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql)
    {
        using var command = new NpgsqlCommand(sql, connection, transaction) { CommandTimeout = 0 };
        command.ExecuteNonQuery();
    }
}
