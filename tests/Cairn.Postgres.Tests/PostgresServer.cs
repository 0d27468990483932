using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The PostgreSQL the tests run against: the connection string in <c>CAIRN_POSTGRES</c>, which <c>./test.sh</c> sets
/// after starting a throwaway server with <c>tests/postgres.sh</c>. Without it every test fails, saying how to run
/// them: a test of this backend is never skipped for want of a server, in CI or elsewhere.
/// </summary>
internal static class PostgresServer
{
    private static readonly Lazy<string> Resolved = new(Resolve);

    public static string ConnectionString => Resolved.Value;

    /// <summary>A schema name no other test uses.</summary>
    public static string NewSchema() => "t_" + Guid.NewGuid().ToString("N");

    /// <summary>Drops a test's schema and everything in it.</summary>
    public static async Task DropSchemaAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE", connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Runs a statement on a connection of its own, as an administrator would.</summary>
    public static async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>How many sessions wait for the append lock of <paramref name="schema"/>.</summary>
    public static async Task<long> AppendLockWaitersAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2",
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)PostgresSchema.AppendLockClass });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)PostgresSchema.SchemaKey(schema) });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// The backends holding a projection's lease: its one 64-bit advisory-lock key shows in <c>pg_locks</c> as the
    /// high 32 bits in <c>classid</c> and the low 32 in <c>objid</c>.
    /// </summary>
    public static async Task<List<int>> LeaseHoldersAsync(string schema, string projection)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
            connection);
        var key = PostgresSchema.ProjectionLeaseKey(schema, projection);
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)(key >> 32) });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)key });
        var pids = new List<int>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            pids.Add(reader.GetInt32(0));
        }

        return pids;
    }

    private static string Resolve()
    {
        var connectionString = Environment.GetEnvironmentVariable("CAIRN_POSTGRES");
        if (!string.IsNullOrWhiteSpace(connectionString))
        {
            return connectionString;
        }

        if (Environment.GetEnvironmentVariable("CI") == "true")
        {
            throw new InvalidOperationException("CAIRN_POSTGRES is not set, and in CI no PostgreSQL test may be skipped: run ./test.sh, which starts a throwaway PostgreSQL with tests/postgres.sh.");
        }

        throw new InvalidOperationException(
            "CAIRN_POSTGRES is not set. Run ./test.sh, or start a throwaway PostgreSQL and run the tests against it: "
            + "eval \"$(tests/postgres.sh start)\" && dotnet test tests/Cairn.Postgres.Tests; tests/postgres.sh stop");
    }
}
