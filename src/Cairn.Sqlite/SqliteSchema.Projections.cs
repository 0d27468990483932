using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>
    /// Projections (schema version 3). Each build of a projection's read model is a row here; its documents live in
    /// tables named <c>cairn_doc_&lt;build&gt;_&lt;collection&gt;</c> and its own SQL tables in
    /// <c>&lt;table&gt;__b&lt;build&gt;</c>, behind a view named after the table. serving: 1 for the build queries
    /// read, 0 for a shadow being rebuilt. A build's position moves in the same transaction as its documents.
    /// </summary>
    private const string ProjectionsDdl = """
        CREATE TABLE IF NOT EXISTS cairn_projection_builds (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            projection    TEXT NOT NULL,
            version       INTEGER NOT NULL,
            shape         TEXT NOT NULL,
            position      INTEGER NOT NULL,
            serving       INTEGER NOT NULL,
            created_ticks INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS cairn_projection_builds_by_projection ON cairn_projection_builds (projection, serving);

        -- A build's dead letters (schema version 7: before, one per projection and position outlived the build).
        CREATE TABLE IF NOT EXISTS cairn_projection_dead_letters (
            projection  TEXT NOT NULL,
            build       INTEGER NOT NULL,
            position    INTEGER NOT NULL,
            event_id    BLOB NOT NULL,
            stream      TEXT NOT NULL,
            version     INTEGER NOT NULL,
            event_type  TEXT NOT NULL,
            failure     TEXT NOT NULL,
            attempts    INTEGER NOT NULL,
            dead_ticks  INTEGER NOT NULL,
            PRIMARY KEY (projection, build, position)) WITHOUT ROWID;
        """;

    /// <summary>
    /// From version 6 or before: dead letters gain their build. Those kept so far are given to their projection's
    /// serving build (the one that skipped them, or a rebuild since that skipped them again); a projection with no
    /// build left has none.
    /// </summary>
    private static void MigrateDeadLettersToBuilds(SqliteConnection connection)
    {
        if (Columns(connection, "cairn_projection_dead_letters").Contains("build"))
        {
            return;
        }

        using var migrate = connection.CreateCommand();
        migrate.CommandText = """
            ALTER TABLE cairn_projection_dead_letters RENAME TO cairn_projection_dead_letters_v6;
            """ + ProjectionsDdl + """
            INSERT INTO cairn_projection_dead_letters (projection, build, position, event_id, stream, version, event_type, failure, attempts, dead_ticks)
                SELECT d.projection, b.id, d.position, d.event_id, d.stream, d.version, d.event_type, d.failure, d.attempts, d.dead_ticks
                FROM cairn_projection_dead_letters_v6 d JOIN cairn_projection_builds b ON b.projection = d.projection AND b.serving = 1;
            DROP TABLE cairn_projection_dead_letters_v6;
            """;
        migrate.ExecuteNonQuery();
    }
}
