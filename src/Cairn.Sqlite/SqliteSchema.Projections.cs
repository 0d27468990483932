namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>Projections and their read models (schema version 3).</summary>
    private const string ProjectionsDdl = """
        SELECT 1;
        """;
}
