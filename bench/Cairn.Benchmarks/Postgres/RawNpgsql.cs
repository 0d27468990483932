using System.Globalization;
using System.Text;
using Npgsql;
using NpgsqlTypes;

namespace Cairn.Benchmarks.Postgres;

/// <summary>
/// The floor: what an application would write by hand with Npgsql. A plain <c>events</c> table of the SQLite
/// baseline's shape (an identity position, a unique (stream, version) key, the event's id as a uuid, its data as bytea),
/// one insert per event in its own transaction for single-event appends, and one multi-row insert per batch.
/// </summary>
internal static class RawNpgsql
{
    /// <summary>Creates the schema and its table.</summary>
    public static async Task CreateAsync(NpgsqlDataSource dataSource, string schema)
    {
        await using var command = dataSource.CreateCommand($"""
            CREATE SCHEMA {schema};
            CREATE TABLE {schema}.events (
                position   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                stream     text NOT NULL,
                version    bigint NOT NULL,
                id         uuid NOT NULL,
                type       text NOT NULL,
                time_ticks bigint NOT NULL,
                data       bytea NOT NULL,
                UNIQUE (stream, version));
            """);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>A prepared insert of <paramref name="rows"/> events in one statement; fill it with <see cref="Set"/>.</summary>
    public static async Task<NpgsqlCommand> InsertCommandAsync(NpgsqlConnection connection, string schema, int rows)
    {
        var sql = new StringBuilder($"INSERT INTO {schema}.events (stream, version, id, type, time_ticks, data) VALUES ");
        var command = new NpgsqlCommand { Connection = connection };
        for (var r = 0; r < rows; r++)
        {
            var p = r * 6;
            sql.Append(CultureInfo.InvariantCulture, $"{(r == 0 ? "" : ", ")}(${p + 1}, ${p + 2}, ${p + 3}, ${p + 4}, ${p + 5}, ${p + 6})");
            command.Parameters.Add(new NpgsqlParameter<string> { NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter<long> { NpgsqlDbType = NpgsqlDbType.Bigint });
            command.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            command.Parameters.Add(new NpgsqlParameter<string> { NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter<long> { NpgsqlDbType = NpgsqlDbType.Bigint });
            command.Parameters.Add(new NpgsqlParameter<byte[]> { NpgsqlDbType = NpgsqlDbType.Bytea });
        }

        command.CommandText = sql.ToString();
        await command.PrepareAsync();
        return command;
    }

    /// <summary>Fills row <paramref name="row"/> of an insert with a new event: a new id, the time now and the <paramref name="n"/>th payload.</summary>
    public static void Set(NpgsqlCommand insert, int row, string stream, long version, long n)
    {
        var p = insert.Parameters;
        var i = row * 6;
        ((NpgsqlParameter<string>)p[i]).TypedValue = stream;
        ((NpgsqlParameter<long>)p[i + 1]).TypedValue = version;
        ((NpgsqlParameter<Guid>)p[i + 2]).TypedValue = Guid.CreateVersion7();
        ((NpgsqlParameter<string>)p[i + 3]).TypedValue = Payloads.EventType;
        ((NpgsqlParameter<long>)p[i + 4]).TypedValue = DateTime.UtcNow.Ticks;
        ((NpgsqlParameter<byte[]>)p[i + 5]).TypedValue = Payloads.Json(n);
    }

    /// <summary>True for a unique-key violation: another writer took the version first.</summary>
    public static bool IsUniqueViolation(PostgresException ex) => ex.SqlState == PostgresErrorCodes.UniqueViolation;
}
