using Microsoft.Data.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>
/// The baseline: what an application would write by hand with Microsoft.Data.Sqlite. A plain events table with a
/// unique (stream, version) key, WAL mode, <c>synchronous=FULL</c> (Cairn's default durability), a busy timeout so
/// concurrent writers wait for the lock instead of failing, and one transaction per insert (or per batch in W2).
/// </summary>
internal static class Baseline
{
    public const int BusyTimeoutMs = 60_000;

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS events (
            position   INTEGER PRIMARY KEY,
            stream     TEXT NOT NULL,
            version    INTEGER NOT NULL,
            id         BLOB NOT NULL,
            type       TEXT NOT NULL,
            time_ticks INTEGER NOT NULL,
            data       BLOB NOT NULL,
            UNIQUE (stream, version));
        """;

    /// <summary>Creates the table in a new file and switches it to WAL.</summary>
    public static void Create(string path)
    {
        using var connection = Open(path);
        using var command = connection.CreateCommand();
        command.CommandText = Schema;
        command.ExecuteNonQuery();
    }

    /// <summary>Opens a connection with the baseline's pragmas (they are per connection, except journal_mode).</summary>
    public static SqliteConnection Open(string path)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Pooling = false,
            DefaultTimeout = BusyTimeoutMs / 1000,
        }.ToString());
        connection.Open();
        using var pragmas = connection.CreateCommand();
        pragmas.CommandText = $"PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = {BusyTimeoutMs};";
        pragmas.ExecuteNonQuery();
        return connection;
    }

    /// <summary>A prepared insert of one event; set its parameters with <see cref="Set"/>.</summary>
    public static SqliteCommand InsertCommand(SqliteConnection connection)
    {
        var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO events (stream, version, id, type, time_ticks, data) VALUES ($stream, $version, $id, $type, $time, $data)";
        foreach (var name in new[] { "$stream", "$version", "$id", "$type", "$time", "$data" })
        {
            command.Parameters.Add(new SqliteParameter(name, null));
        }

        command.Prepare();
        return command;
    }

    /// <summary>Fills the insert with a new event: a new id, the time now and the <paramref name="n"/>th payload.</summary>
    public static void Set(SqliteCommand insert, string stream, long version, long n)
    {
        var p = insert.Parameters;
        p[0].Value = stream;
        p[1].Value = version;
        p[2].Value = Guid.CreateVersion7().ToByteArray(bigEndian: true);
        p[3].Value = Payloads.EventType;
        p[4].Value = DateTime.UtcNow.Ticks;
        p[5].Value = Payloads.Json(n);
    }

    /// <summary>True for a unique-key violation: another writer took the version first.</summary>
    public static bool IsUniqueViolation(SqliteException ex) => ex.SqliteErrorCode == 19;
}

/// <summary>What the baseline materialises per row in W3: the same facts a Cairn envelope carries for the event.</summary>
internal sealed record BaselineEvent(long Position, string Stream, long Version, Guid Id, string Type, DateTimeOffset Time, byte[] Data);
