using Cairn.EventStore;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>Privileges granted on a SQL table's view, which readers other than the application use.</summary>
public sealed class SqlViewGrantTests : OwnSchemaStoreTests
{
    /// <summary>A projection of the given version with one SQL table, 'daily'.</summary>
    private sealed class Daily : Projection
    {
        public Daily(int version)
            : base("daily")
        {
            Version = version;
            SqlTable("daily", "CREATE TABLE {table} (day text PRIMARY KEY, orders integer NOT NULL)");
        }
    }

    // Readers query a SQL table through its view, often as a reporting role granted SELECT on it. A switch makes the
    // view anew when nothing depends on it: the grant went with the old view, and after every rebuild the readers were
    // refused (permission denied).
    [Fact]
    public async Task A_grant_on_a_sql_tables_view_survives_a_rebuilds_switch()
    {
        var role = "cairn_reader_" + Guid.NewGuid().ToString("N")[..12];
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await ExecuteAsync(connection, $"CREATE ROLE {role}");
        try
        {
            await using var projections = new PostgresProjectionStore(Store);
            await projections.OpenAsync(new Daily(1), default);
            await ExecuteAsync(connection, $"GRANT USAGE ON SCHEMA \"{Schema}\" TO {role}; GRANT SELECT ON \"{Schema}\".daily TO {role}");
            Assert.True(await CanSelectAsync(connection, role));

            var next = new Daily(2);
            var shadow = await projections.StartShadowAsync(next, default);
            await projections.ApplyAsync(new ProjectionBatch(next.Name, shadow.Id, GlobalPosition.Start, GlobalPosition.Start, [], (_, _) => { }) { GoLive = true }, default);

            Assert.True(await CanSelectAsync(connection, role), "the reporting role lost SELECT on the view at the switch");
        }
        finally
        {
            await ExecuteAsync(connection, $"DROP OWNED BY {role}; DROP ROLE {role}");
        }
    }

    private async Task<bool> CanSelectAsync(NpgsqlConnection connection, string role)
    {
        await using var command = new NpgsqlCommand($"SELECT has_table_privilege('{role}', '\"{Schema}\".daily', 'SELECT')", connection);
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
