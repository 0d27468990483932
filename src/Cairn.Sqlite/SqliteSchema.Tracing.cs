using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>
    /// Correlation traces (schema version 4). A run of consecutive events with one correlation id gets a row in
    /// <c>cairn_event_flows</c>, at the position of its first event (an append indexes each run it writes; a trace reads
    /// on from the first event until the correlation changes), so an append of several events of one flow adds one
    /// entry. An event that started a flow of its own (its correlation is its own id, stored as nothing) is found by its
    /// id instead, so appends outside any flow pay nothing. A side table rather than a column: no wider rows, and the
    /// migration writes no page of <c>cairn_events</c>.
    /// <para>
    /// Since schema version 6 the flows and the inbox index a correlation by its key in <c>cairn_correlations</c>,
    /// given in the order correlations are first seen, not by its text. Correlation ids are often random (GUIDs, an
    /// application's order ids): indexed by text, each record of a flow landed on a page of its own across the whole
    /// index, and with random ids the two indexes were three fifths of the pages a workflow's commits wrote. By key,
    /// the flows in progress, which began lately, all sit at the end of each index.
    /// </para>
    /// </summary>
    private const string TracingTablesDdl = """
        CREATE TABLE IF NOT EXISTS cairn_correlations (
            id    INTEGER PRIMARY KEY,
            value TEXT NOT NULL UNIQUE);
        CREATE TABLE IF NOT EXISTS cairn_event_flows (
            correlation_id INTEGER NOT NULL,
            position       INTEGER NOT NULL,
            PRIMARY KEY (correlation_id, position)) WITHOUT ROWID;
        """;

    /// <summary>
    /// Made after the migration has added the columns they index. A queued message's correlation column holds its
    /// correlation id, its own id when it started a flow, since messages have no index by id. (Queued messages keep
    /// the text: they are deleted once handled, so that index stays small.) An inbox record of a message that started
    /// its flow has no key (its correlation is its own id) and is found by its id in <c>cairn_inbox_roots</c>: a message
    /// sent outside any flow costs one index entry, as before keys, not a key of its own.
    /// </summary>
    private const string TracingIndexesDdl = """
        CREATE INDEX IF NOT EXISTS cairn_inbox_by_correlation ON cairn_inbox (correlation_id, processed_ticks) WHERE correlation_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS cairn_inbox_roots ON cairn_inbox (message_id) WHERE correlation_id IS NULL AND queue IS NOT NULL;
        CREATE INDEX IF NOT EXISTS cairn_messages_by_correlation ON cairn_messages (correlation, seq) WHERE correlation IS NOT NULL;
        """;

    /// <summary>The key of a correlation id in <c>cairn_correlations</c>, given to it here if it has none.</summary>
    private static long CorrelationKey(SqliteConnection connection, string correlation)
    {
        using var upsert = connection.CreateCommand();
        upsert.CommandText = "INSERT INTO cairn_correlations (value) VALUES ($value) ON CONFLICT (value) DO UPDATE SET value = excluded.value RETURNING id";
        upsert.Parameters.AddWithValue("$value", correlation);
        return (long)upsert.ExecuteScalar()!;
    }

    /// <summary>
    /// From version 4 or 5: the correlation ids the flows and the inbox held as text get keys, in the order they were
    /// first seen (the flows by position, then the inbox by time), and both are indexed by key. Each part runs only if
    /// the file still has what it converts.
    /// </summary>
    private static void MigrateToCorrelationKeys(SqliteConnection connection)
    {
        using var migrate = connection.CreateCommand();
        if (Columns(connection, "cairn_event_correlations").Count > 0)
        {
            migrate.CommandText = """
                INSERT OR IGNORE INTO cairn_correlations (value) SELECT correlation FROM cairn_event_correlations ORDER BY position;
                INSERT OR IGNORE INTO cairn_event_flows (correlation_id, position)
                    SELECT c.id, f.position FROM cairn_event_correlations f JOIN cairn_correlations c ON c.value = f.correlation;
                DROP TABLE cairn_event_correlations;
                """;
            migrate.ExecuteNonQuery();
        }

        if (Columns(connection, "cairn_inbox").Contains("correlation"))
        {
            AddMissingColumns(connection, "cairn_inbox", ["correlation_id INTEGER"]);
            migrate.CommandText = """
                INSERT OR IGNORE INTO cairn_correlations (value) SELECT correlation FROM cairn_inbox WHERE correlation IS NOT NULL ORDER BY processed_ticks;
                UPDATE cairn_inbox SET correlation_id = (SELECT c.id FROM cairn_correlations c WHERE c.value = cairn_inbox.correlation)
                    WHERE correlation IS NOT NULL;
                DROP INDEX IF EXISTS cairn_inbox_by_correlation;
                ALTER TABLE cairn_inbox DROP COLUMN correlation;
                """;
            migrate.ExecuteNonQuery();
        }
    }

    /// <summary>
    /// From version 3 or before: adds the inbox's and the queue's new columns, indexes the correlation ids of the events
    /// already in the log (by key, as version 6 does) and of the messages still queued. Inbox records written before
    /// keep only their ids: their messages are gone, so what they were cannot be recovered.
    /// </summary>
    private static void MigrateToTracing(SqliteConnection connection)
    {
        AddMissingColumns(connection, "cairn_inbox", ["queue TEXT", "message_type TEXT", "correlation_id INTEGER", "causation TEXT"]);
        AddMissingColumns(connection, "cairn_messages", ["correlation TEXT"]);

        using (var read = connection.CreateCommand())
        using (var insert = connection.CreateCommand())
        {
            read.CommandText = "SELECT position, envelope FROM cairn_events ORDER BY position";
            insert.CommandText = "INSERT OR IGNORE INTO cairn_event_flows (correlation_id, position) VALUES ($correlation, $position)";
            var correlation = insert.Parameters.Add("$correlation", SqliteType.Integer);
            var position = insert.Parameters.Add("$position", SqliteType.Integer);
            using var rows = read.ExecuteReader();
            string? previous = null;
            while (rows.Read())
            {
                var found = Readable(() => EnvelopeCodec.Read(rows.GetFieldValue<byte[]>(1)).CorrelationId);
                if (found is not null && found != previous)
                {
                    correlation.Value = CorrelationKey(connection, found);
                    position.Value = rows.GetInt64(0);
                    insert.ExecuteNonQuery();
                }

                previous = found;
            }
        }

        // Collected first: the rows are updated in the table being read.
        var messages = new List<(long Seq, string Correlation)>();
        using (var read = connection.CreateCommand())
        {
            read.CommandText = "SELECT seq, id, envelope FROM cairn_messages";
            using var rows = read.ExecuteReader();
            while (rows.Read())
            {
                var id = new MessageId(new Guid(rows.GetFieldValue<byte[]>(1), bigEndian: true));
                if (Readable(() => MessageCodec.Read(id, rows.GetFieldValue<byte[]>(2), ReadOnlyMemory<byte>.Empty).CorrelationId) is { } found)
                {
                    messages.Add((rows.GetInt64(0), found));
                }
            }
        }

        using var update = connection.CreateCommand();
        update.CommandText = "UPDATE cairn_messages SET correlation = $correlation WHERE seq = $seq";
        var messageCorrelation = update.Parameters.Add("$correlation", SqliteType.Text);
        var seq = update.Parameters.Add("$seq", SqliteType.Integer);
        foreach (var message in messages)
        {
            messageCorrelation.Value = message.Correlation;
            seq.Value = message.Seq;
            update.ExecuteNonQuery();
        }
    }

    /// <summary>A corrupt envelope does not stop the file from opening: its row is left out of traces.</summary>
    private static string? Readable(Func<string?> read)
    {
        try
        {
            return read();
        }
        catch (CairnException)
        {
            return null;
        }
    }

    /// <summary>The columns of a table of Cairn's (a name of its own, never input); none when it does not exist.</summary>
    private static HashSet<string> Columns(SqliteConnection connection, string table)
    {
        var existing = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        using var info = connection.CreateCommand();
        info.CommandText = $"SELECT name FROM pragma_table_info('{table}')";
        using var rows = info.ExecuteReader();
        while (rows.Read())
        {
            existing.Add(rows.GetString(0));
        }

        return existing;
    }

    private static void AddMissingColumns(SqliteConnection connection, string table, string[] columns)
    {
        var existing = Columns(connection, table);
        foreach (var column in columns)
        {
            if (!existing.Contains(column.Split(' ')[0]))
            {
                using var alter = connection.CreateCommand();
                alter.CommandText = $"ALTER TABLE {table} ADD COLUMN {column}";
                alter.ExecuteNonQuery();
            }
        }
    }
}
