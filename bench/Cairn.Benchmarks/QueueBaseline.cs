using Microsoft.Data.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>
/// The messaging baseline: a plain SQLite table used as a queue, written by hand with Microsoft.Data.Sqlite, with the
/// durability of Cairn's default (WAL, <c>synchronous=FULL</c>) and the connection settings of <see cref="Baseline"/>
/// (a busy timeout, one connection per thread). A send is one transaction; a receive is one transaction that selects
/// the oldest visible rows and marks them leased (hidden until the lease ends); an acknowledgement is one transaction
/// that deletes them. A plain table cannot wake a waiting receiver, so consumers poll.
/// </summary>
internal sealed class QueueBaseline : IDisposable
{
    /// <summary>How long a leased row stays hidden, as Cairn's default lease.</summary>
    private static readonly long LeaseTicks = TimeSpan.FromSeconds(30).Ticks;

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS messages (
            seq            INTEGER PRIMARY KEY,
            queue_id       INTEGER NOT NULL,
            id             BLOB NOT NULL,
            type           TEXT NOT NULL,
            visible_at     INTEGER NOT NULL,
            receive_count  INTEGER NOT NULL DEFAULT 0,
            enqueued_ticks INTEGER NOT NULL,
            data           BLOB NOT NULL);
        CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue_id, visible_at);
        """;

    private readonly SqliteConnection _connection;
    private readonly SqliteCommand _begin;
    private readonly SqliteCommand _commit;
    private readonly SqliteCommand _insert;
    private readonly SqliteCommand _select;
    private readonly SqliteCommand _lease;
    private readonly SqliteCommand _delete;

    /// <summary>Opens a connection of its own to a file <see cref="Create"/> made.</summary>
    public QueueBaseline(string path)
    {
        _connection = Baseline.Open(path);
        _begin = Command("BEGIN IMMEDIATE");
        _commit = Command("COMMIT");
        _insert = Command("INSERT INTO messages (queue_id, id, type, visible_at, enqueued_ticks, data) VALUES ($queue, $id, $type, $now, $now, $data)", "$queue", "$id", "$type", "$now", "$data");
        _select = Command("SELECT seq, data FROM messages WHERE queue_id = $queue AND visible_at <= $now ORDER BY visible_at LIMIT $max", "$queue", "$now", "$max");
        _lease = Command("UPDATE messages SET visible_at = $until, receive_count = receive_count + 1 WHERE seq = $seq", "$seq", "$until");
        _delete = Command("DELETE FROM messages WHERE seq = $seq", "$seq");
    }

    /// <summary>Creates the table in a new file and switches it to WAL.</summary>
    public static void Create(string path)
    {
        using var connection = Baseline.Open(path);
        using var command = connection.CreateCommand();
        command.CommandText = Schema;
        command.ExecuteNonQuery();
    }

    /// <summary>Sends messages to a queue in one transaction.</summary>
    public void Send(long queue, string type, IReadOnlyList<byte[]> messages) =>
        Send(type, messages.Select(data => (queue, data)).ToList());

    /// <summary>Sends one message in a transaction of its own.</summary>
    public void Send(long queue, string type, byte[] message) => Send(type, [(queue, message)]);

    /// <summary>Sends messages, each to its queue, in one transaction.</summary>
    public void Send(string type, IReadOnlyList<(long Queue, byte[] Data)> messages)
    {
        _begin.ExecuteNonQuery();
        try
        {
            var now = DateTime.UtcNow.Ticks;
            var p = _insert.Parameters;
            foreach (var (queue, data) in messages)
            {
                p[0].Value = queue;
                p[1].Value = Guid.CreateVersion7().ToByteArray(bigEndian: true);
                p[2].Value = type;
                p[3].Value = now;
                p[4].Value = data;
                _insert.ExecuteNonQuery();
            }

            _commit.ExecuteNonQuery();
        }
        catch
        {
            Rollback();
            throw;
        }
    }

    /// <summary>
    /// Leases up to <paramref name="max"/> of the oldest visible messages in one transaction: selects them, then marks
    /// each leased. Returns their sequence numbers and data; empty when none is visible.
    /// </summary>
    public List<(long Seq, byte[] Data)> Receive(long queue, int max)
    {
        var leased = new List<(long, byte[])>();
        _begin.ExecuteNonQuery();
        try
        {
            var now = DateTime.UtcNow.Ticks;
            _select.Parameters[0].Value = queue;
            _select.Parameters[1].Value = now;
            _select.Parameters[2].Value = max;
            using (var reader = _select.ExecuteReader())
            {
                while (reader.Read())
                {
                    leased.Add((reader.GetInt64(0), reader.GetFieldValue<byte[]>(1)));
                }
            }

            foreach (var (seq, _) in leased)
            {
                _lease.Parameters[0].Value = seq;
                _lease.Parameters[1].Value = now + LeaseTicks;
                _lease.ExecuteNonQuery();
            }

            // An empty receive wrote nothing, so its commit costs no fsync.
            _commit.ExecuteNonQuery();
        }
        catch
        {
            Rollback();
            throw;
        }

        return leased;
    }

    /// <summary>Deletes acknowledged messages in one transaction.</summary>
    public void Acknowledge(List<(long Seq, byte[] Data)> messages)
    {
        _begin.ExecuteNonQuery();
        try
        {
            foreach (var (seq, _) in messages)
            {
                _delete.Parameters[0].Value = seq;
                _delete.ExecuteNonQuery();
            }

            _commit.ExecuteNonQuery();
        }
        catch
        {
            Rollback();
            throw;
        }
    }

    /// <summary>Messages left in a queue, leased or not.</summary>
    public long Count(long queue)
    {
        using var count = _connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM messages WHERE queue_id = $queue";
        count.Parameters.AddWithValue("$queue", queue);
        return (long)count.ExecuteScalar()!;
    }

    public void Dispose()
    {
        foreach (var command in new[] { _begin, _commit, _insert, _select, _lease, _delete })
        {
            command.Dispose();
        }

        _connection.Dispose();
    }

    private void Rollback()
    {
        using var rollback = _connection.CreateCommand();
        rollback.CommandText = "ROLLBACK";
        try
        {
            rollback.ExecuteNonQuery();
        }
        catch (SqliteException)
        {
            // No transaction was open (BEGIN itself failed).
        }
    }

    private SqliteCommand Command(string sql, params string[] parameters)
    {
        var command = _connection.CreateCommand();
        command.CommandText = sql;
        foreach (var name in parameters)
        {
            command.Parameters.Add(new SqliteParameter(name, null));
        }

        command.Prepare();
        return command;
    }
}
