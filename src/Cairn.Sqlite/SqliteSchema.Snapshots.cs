namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>
    /// Decider snapshots (schema version 3): the latest per stream and kind. A snapshot stands for the events from
    /// first_version to stream_version, the last of them at position; taken_ticks is the commit time of its save.
    /// </summary>
    private const string SnapshotsDdl = """
        CREATE TABLE IF NOT EXISTS cairn_snapshots (
            stream         TEXT NOT NULL,
            kind           TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            stream_version INTEGER NOT NULL,
            first_version  INTEGER NOT NULL,
            position       INTEGER NOT NULL,
            taken_ticks    INTEGER NOT NULL,
            data           BLOB NOT NULL,
            PRIMARY KEY (stream, kind)) WITHOUT ROWID;
        """;
}
