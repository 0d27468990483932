using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

internal static partial class SqliteSchema
{
    /// <summary>
    /// Correlation traces (schema version 4). A run of consecutive events with one correlation id gets a row here, at
    /// the position of its first event (an append indexes each run it writes; a trace reads on from the first event
    /// until the correlation changes), so an append of several events of one flow adds one entry. An event that started
    /// a flow of its own (its correlation is its own id, stored as nothing) is found by its id instead, so appends
    /// outside any flow pay nothing. A side table rather than a column: no wider rows, and the migration writes no page
    /// of <c>cairn_events</c>.
    /// </summary>
    private const string TracingTablesDdl = """
        CREATE TABLE IF NOT EXISTS cairn_event_correlations (
            correlation TEXT NOT NULL,
            position    INTEGER NOT NULL,
            PRIMARY KEY (correlation, position)) WITHOUT ROWID;
        """;

    /// <summary>
    /// Made after the migration has added the columns they index. A queued message's correlation column holds its
    /// correlation id, its own id when it started a flow, since messages have no index by id.
    /// </summary>
    private const string TracingIndexesDdl = """
        CREATE INDEX IF NOT EXISTS cairn_inbox_by_correlation ON cairn_inbox (correlation, processed_ticks) WHERE correlation IS NOT NULL;
        CREATE INDEX IF NOT EXISTS cairn_messages_by_correlation ON cairn_messages (correlation, seq) WHERE correlation IS NOT NULL;
        """;

    /// <summary>
    /// From version 3 or before: adds the inbox's and the queue's new columns, indexes the correlation ids of the events
    /// already in the log and of the messages still queued. Inbox records written before keep only their ids: their
    /// messages are gone, so what they were cannot be recovered.
    /// </summary>
    private static void MigrateToTracing(SqliteConnection connection)
    {
        AddMissingColumns(connection, "cairn_inbox", ["queue TEXT", "message_type TEXT", "correlation TEXT", "causation TEXT"]);
        AddMissingColumns(connection, "cairn_messages", ["correlation TEXT"]);

        using (var read = connection.CreateCommand())
        using (var insert = connection.CreateCommand())
        {
            read.CommandText = "SELECT position, envelope FROM cairn_events ORDER BY position";
            insert.CommandText = "INSERT OR IGNORE INTO cairn_event_correlations (correlation, position) VALUES ($correlation, $position)";
            var correlation = insert.Parameters.Add("$correlation", SqliteType.Text);
            var position = insert.Parameters.Add("$position", SqliteType.Integer);
            using var rows = read.ExecuteReader();
            string? previous = null;
            while (rows.Read())
            {
                var found = Readable(() => EnvelopeCodec.Read(rows.GetFieldValue<byte[]>(1)).CorrelationId);
                if (found is not null && found != previous)
                {
                    correlation.Value = found;
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

    private static void AddMissingColumns(SqliteConnection connection, string table, string[] columns)
    {
        var existing = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        using (var info = connection.CreateCommand())
        {
            info.CommandText = $"SELECT name FROM pragma_table_info('{table}')";
            using var rows = info.ExecuteReader();
            while (rows.Read())
            {
                existing.Add(rows.GetString(0));
            }
        }

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
