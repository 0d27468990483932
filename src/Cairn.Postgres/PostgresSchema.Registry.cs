namespace Cairn.Postgres;

internal static partial class PostgresSchema
{
    /// <summary>
    /// The schema registry (migration 4). Each version of an event type's JSON Schema is a row, never updated:
    /// document is its canonical JSON text (text, not jsonb, so it reads back exactly as it was written),
    /// registered_ticks the time of its registration. A type's compatibility mode is a row of its own, because it may
    /// be recorded before the first version and replaced at any time.
    /// </summary>
    private static string[] RegistryMigration(string s) =>
    [
        $"""
        CREATE TABLE {s}.schema_versions (
            event_type text NOT NULL,
            version integer NOT NULL,
            document text NOT NULL,
            registered_ticks bigint NOT NULL,
            PRIMARY KEY (event_type, version))
        """,
        $"""
        CREATE TABLE {s}.schema_types (
            event_type text PRIMARY KEY,
            compatibility text NOT NULL)
        """,
    ];
}
