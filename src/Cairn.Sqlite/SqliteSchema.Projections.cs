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

        CREATE TABLE IF NOT EXISTS cairn_projection_dead_letters (
            projection  TEXT NOT NULL,
            position    INTEGER NOT NULL,
            event_id    BLOB NOT NULL,
            stream      TEXT NOT NULL,
            version     INTEGER NOT NULL,
            event_type  TEXT NOT NULL,
            failure     TEXT NOT NULL,
            attempts    INTEGER NOT NULL,
            dead_ticks  INTEGER NOT NULL,
            PRIMARY KEY (projection, position)) WITHOUT ROWID;
        """;
}
