namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>
    /// The schema registry (schema version 5). Each version of an event type's JSON Schema is a row, never updated:
    /// document is its canonical JSON text, registered_ticks the commit time of its registration. The compatibility
    /// mode of a type is a row of its own, kept apart because it may be recorded before the first version and replaced
    /// at any time; compatibility holds the <see cref="Schemas.CompatibilityMode"/> member's name.
    /// </summary>
    private const string RegistryDdl = """
        CREATE TABLE IF NOT EXISTS cairn_schema_versions (
            event_type       TEXT NOT NULL,
            version          INTEGER NOT NULL,
            document         TEXT NOT NULL,
            registered_ticks INTEGER NOT NULL,
            PRIMARY KEY (event_type, version)) WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS cairn_schema_types (
            event_type    TEXT NOT NULL PRIMARY KEY,
            compatibility TEXT NOT NULL) WITHOUT ROWID;
        """;
}
