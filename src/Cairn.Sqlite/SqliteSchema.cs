using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

/// <summary>The tables of a Cairn SQLite file, created on first use and versioned.</summary>
internal static partial class SqliteSchema
{
    public const int Version = 7;

    private const string Ddl = """
        CREATE TABLE IF NOT EXISTS cairn_schema (version INTEGER NOT NULL);

        -- Interned strings (event types, sources, content types), so each event row stores small integers.
        CREATE TABLE IF NOT EXISTS cairn_names (
            id    INTEGER PRIMARY KEY,
            value TEXT NOT NULL UNIQUE);

        -- A stream's last version is not kept here but read from cairn_events_by_stream: an append to an existing
        -- stream then dirties no page of this table, which keeps each group commit's write-ahead log small.
        CREATE TABLE IF NOT EXISTS cairn_streams (
            id              INTEGER PRIMARY KEY,
            name            TEXT NOT NULL UNIQUE,
            category        TEXT NOT NULL,
            state           INTEGER NOT NULL,
            max_count       INTEGER,
            max_age_ticks   INTEGER,
            truncate_before INTEGER);
        CREATE INDEX IF NOT EXISTS cairn_streams_by_category ON cairn_streams (category);

        -- The log. position is the rowid: one writer assigns it in commit order, so readers never see a gap fill later.
        -- envelope packs every attribute (EnvelopeCodec); stream, version, id, type and time are also columns because
        -- SQL filters and indexes on them.
        CREATE TABLE IF NOT EXISTS cairn_events (
            position   INTEGER PRIMARY KEY,
            stream_id  INTEGER NOT NULL,
            version    INTEGER NOT NULL,
            id         BLOB NOT NULL,
            type_id    INTEGER NOT NULL,
            time_ticks INTEGER NOT NULL,
            envelope   BLOB NOT NULL,
            data       BLOB NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS cairn_events_by_stream ON cairn_events (stream_id, version);
        CREATE UNIQUE INDEX IF NOT EXISTS cairn_events_by_id ON cairn_events (id);
        CREATE INDEX IF NOT EXISTS cairn_events_by_type ON cairn_events (type_id, position);

        CREATE TABLE IF NOT EXISTS cairn_event_tags (
            tag      TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (tag, position)) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS cairn_checkpoints (
            key        TEXT PRIMARY KEY,
            position   INTEGER NOT NULL,
            updated_ticks INTEGER NOT NULL) WITHOUT ROWID;

        -- Messaging (schema version 2). A queue's settings are a JSON object of QueueSettingsData.
        CREATE TABLE IF NOT EXISTS cairn_queues (
            id       INTEGER PRIMARY KEY,
            name     TEXT NOT NULL UNIQUE,
            settings TEXT NOT NULL);

        -- Every queued message, live or dead-lettered. seq is the queue order (a redrive to the same queue keeps it, so
        -- a FIFO group's order survives); AUTOINCREMENT so a sequence is never reused, which keeps a stale lease token
        -- from ever naming another message. state: 0 waiting (visible at visible_at), 1 leased until visible_at,
        -- 2 dead-lettered and parking its FIFO group, 3 dead-lettered. Dead letters have a NULL visible_at, which keeps
        -- them out of the receive index's range.
        CREATE TABLE IF NOT EXISTS cairn_messages (
            seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
            queue_id             INTEGER NOT NULL,
            id                   BLOB NOT NULL,
            group_key            TEXT,
            state                INTEGER NOT NULL,
            visible_at           INTEGER,
            receive_count        INTEGER NOT NULL DEFAULT 0,
            deliveries           INTEGER NOT NULL DEFAULT 0,
            enqueued_ticks       INTEGER NOT NULL,
            expires_ticks        INTEGER NOT NULL,
            first_received_ticks INTEGER,
            last_received_ticks  INTEGER,
            redrives             INTEGER NOT NULL DEFAULT 0,
            failure              TEXT,
            dead_reason          TEXT,
            dead_ticks           INTEGER,
            envelope             BLOB NOT NULL,
            data                 BLOB NOT NULL,
            correlation          TEXT);
        CREATE INDEX IF NOT EXISTS cairn_messages_by_visibility ON cairn_messages (queue_id, visible_at);
        CREATE INDEX IF NOT EXISTS cairn_messages_by_group ON cairn_messages (queue_id, group_key, seq) WHERE group_key IS NOT NULL;
        CREATE INDEX IF NOT EXISTS cairn_messages_dead ON cairn_messages (queue_id, seq) WHERE state >= 2;

        CREATE TABLE IF NOT EXISTS cairn_deduplication (
            queue_id         INTEGER NOT NULL,
            deduplication_id TEXT NOT NULL,
            expires_ticks    INTEGER NOT NULL,
            PRIMARY KEY (queue_id, deduplication_id)) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS cairn_topics (
            id   INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE);

        CREATE TABLE IF NOT EXISTS cairn_topic_subscriptions (
            topic_id INTEGER NOT NULL,
            name     TEXT NOT NULL,
            queue_id INTEGER NOT NULL,
            rule     TEXT,
            PRIMARY KEY (topic_id, name)) WITHOUT ROWID;

        -- The ids each consumer has handled, written in the same transaction as the handler's effects; with the
        -- message's queue, type, correlation and causation (schema version 4), so a trace shows it after its ack. The
        -- correlation is its key in cairn_correlations (schema version 6).
        CREATE TABLE IF NOT EXISTS cairn_inbox (
            consumer        TEXT NOT NULL,
            message_id      BLOB NOT NULL,
            processed_ticks INTEGER NOT NULL,
            queue           TEXT,
            message_type    TEXT,
            correlation_id  INTEGER,
            causation       TEXT,
            PRIMARY KEY (consumer, message_id)) WITHOUT ROWID;
        """;

    private static void RefuseNewer(SqliteConnection connection)
    {
        if (VersionOf(connection) is var existing && existing > Version)
        {
            throw Newer(connection, existing);
        }
    }

    /// <summary>The file's Cairn schema version, read without writing: 0 when it has no tables of Cairn's yet.</summary>
    public static int VersionOf(SqliteConnection connection)
    {
        using var exists = connection.CreateCommand();
        exists.CommandText = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'cairn_schema'";
        if ((long)exists.ExecuteScalar()! == 0)
        {
            return 0;
        }

        using var read = connection.CreateCommand();
        read.CommandText = "SELECT max(version) FROM cairn_schema";
        return read.ExecuteScalar() is long version ? (int)version : 0;
    }

    private static CairnException Newer(SqliteConnection connection, long existing) =>
        new($"The SQLite file {connection.DataSource} has Cairn schema version {existing}, newer than this Cairn's {Version}; upgrade Cairn to open it.");

    /// <summary>
    /// Creates the tables if they are missing and refuses a file written by a newer Cairn. Returns the version the file
    /// was at, read under the write lock (0 for none), so of two processes migrating one file only one says it did.
    /// </summary>
    public static int Ensure(SqliteConnection connection, CancellationToken cancellationToken = default)
    {
        BeginImmediate(connection, cancellationToken);
        try
        {
            // A file written by a newer Cairn is refused before this version's DDL touches it: its tables may have
            // changed in ways that DDL would fail on first, hiding why.
            RefuseNewer(connection);
            using (var ddl = connection.CreateCommand())
            {
                foreach (var part in (string[])[Ddl, ProjectionsDdl, SnapshotsDdl, TracingTablesDdl, RegistryDdl])
                {
                    ddl.CommandText = part;
                    ddl.ExecuteNonQuery();
                }
            }

            using var read = connection.CreateCommand();
            read.CommandText = "SELECT max(version) FROM cairn_schema";
            var found = read.ExecuteScalar();
            if (found is long old && old < 4)
            {
                MigrateToTracing(connection);
            }
            else if (found is long tracing && tracing < 6)
            {
                MigrateToCorrelationKeys(connection);
            }

            if (found is long beforeBuilds && beforeBuilds < 7)
            {
                MigrateDeadLettersToBuilds(connection);
            }

            using (var indexes = connection.CreateCommand())
            {
                indexes.CommandText = TracingIndexesDdl;
                indexes.ExecuteNonQuery();
            }

            if (found is long existing)
            {
                if (existing > Version)
                {
                    throw Newer(connection, existing);
                }

                if (existing < Version)
                {
                    // Versions 2, 3 and 5 only added tables, which the DDL above has just created; 4, 6 and 7 migrated above.
                    using var upgrade = connection.CreateCommand();
                    upgrade.CommandText = $"UPDATE cairn_schema SET version = {Version}";
                    upgrade.ExecuteNonQuery();
                }
            }
            else
            {
                using var write = connection.CreateCommand();
                write.CommandText = $"INSERT INTO cairn_schema (version) VALUES ({Version})";
                write.ExecuteNonQuery();
            }

            using var commit = connection.CreateCommand();
            commit.CommandText = "COMMIT";
            commit.ExecuteNonQuery();
            return found is long before ? (int)before : 0;
        }
        catch
        {
            using var rollback = connection.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
            throw;
        }
    }

    /// <summary>
    /// <c>BEGIN IMMEDIATE</c>, waiting for another writer as long as the connection's busy timeout. SQLite's own wait
    /// cannot be cancelled, so with a token that can be, the wait goes in tries of about a second (the shortest retry
    /// Microsoft.Data.Sqlite takes), the token checked between them.
    /// </summary>
    private static void BeginImmediate(SqliteConnection connection, CancellationToken cancellationToken)
    {
        using var begin = connection.CreateCommand();
        begin.CommandText = "BEGIN IMMEDIATE";
        if (!cancellationToken.CanBeCanceled)
        {
            begin.ExecuteNonQuery();
            return;
        }

        using var pragma = connection.CreateCommand();
        pragma.CommandText = "PRAGMA busy_timeout";
        var timeout = (long)pragma.ExecuteScalar()!;
        var waited = System.Diagnostics.Stopwatch.StartNew();
        pragma.CommandText = "PRAGMA busy_timeout = 100";
        pragma.ExecuteNonQuery();
        begin.CommandTimeout = 1;
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                try
                {
                    begin.ExecuteNonQuery();
                    return;
                }
                catch (SqliteException busy) when (busy.SqliteErrorCode is SQLitePCL.raw.SQLITE_BUSY or SQLitePCL.raw.SQLITE_LOCKED
                    && waited.ElapsedMilliseconds < timeout)
                {
                    // Another writer still holds the lock: try again unless cancelled meanwhile.
                }
            }
        }
        finally
        {
            pragma.CommandText = $"PRAGMA busy_timeout = {timeout}";
            pragma.ExecuteNonQuery();
        }
    }
}
