namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>Decider snapshots (schema version 3).</summary>
    private const string SnapshotsDdl = """
        CREATE TABLE IF NOT EXISTS cairn_snapshots (
            stream         TEXT NOT NULL,
            kind           TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            stream_version INTEGER NOT NULL,
            taken_ticks    INTEGER NOT NULL,
            data           BLOB NOT NULL,
            PRIMARY KEY (stream, kind)) WITHOUT ROWID;
        """;
}
