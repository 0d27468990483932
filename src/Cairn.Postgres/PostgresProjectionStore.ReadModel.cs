using System.Data.Common;
using System.Text;
using Cairn.Projections;
using Npgsql;

namespace Cairn.Postgres;

public sealed partial class PostgresProjectionStore
{
    /// <summary>
    /// A build's documents and tables inside a write context's transaction. Handlers are synchronous, so its reads
    /// and writes are too, on the transaction's connection.
    /// </summary>
    private sealed class PostgresReadModelTransaction(PostgresProjectionStore owner, PostgresWriteContext context, long build) : IReadModelTransaction
    {
        public DbConnection? Connection => context.Connection;

        public bool FailedStatementAbortsTransaction => true;

        public bool IsAborted()
        {
            try
            {
                using var probe = context.Command("SELECT 1");
                probe.ExecuteScalar();
                return false;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InFailedSqlTransaction)
            {
                return true;
            }
        }

        public ReadOnlyMemory<byte>? ReadDocument(DocumentDefinition document, string id)
        {
            using var select = context.Command($"SELECT data FROM {owner.DocumentTable(build, document.Collection)} WHERE id = $1");
            select.Parameters.Add(new NpgsqlParameter { Value = id });
            // Typed so that no row is null, not an empty document.
            return select.ExecuteScalar() is byte[] data ? (ReadOnlyMemory<byte>?)data : null;
        }

        public void WriteDocument(DocumentDefinition document, string id, ReadOnlyMemory<byte> json, IReadOnlyList<object?> indexValues)
        {
            var sql = AppendColumns(new StringBuilder("INSERT INTO ").Append(owner.DocumentTable(build, document.Collection)).Append(" (id, data"), document).Append(") VALUES ($1, $2");
            for (var i = 0; i < document.Indexes.Count; i++)
            {
                sql.Append(", $").Append(i + 3);
            }

            sql.Append(") ON CONFLICT (id) DO UPDATE SET data = excluded.data");
            foreach (var index in document.Indexes)
            {
                sql.Append(", ").Append(Column(index)).Append(" = excluded.").Append(Column(index));
            }

            using var upsert = context.Command(sql.ToString());
            upsert.Parameters.Add(new NpgsqlParameter { Value = id });
            upsert.Parameters.Add(new NpgsqlParameter { Value = json.ToArray() });
            for (var i = 0; i < document.Indexes.Count; i++)
            {
                upsert.Parameters.Add(IndexParameter(document.Indexes[i].Kind, indexValues[i]));
            }

            upsert.ExecuteNonQuery();
        }

        public bool DeleteDocument(DocumentDefinition document, string id)
        {
            using var delete = context.Command($"DELETE FROM {owner.DocumentTable(build, document.Collection)} WHERE id = $1");
            delete.Parameters.Add(new NpgsqlParameter { Value = id });
            return delete.ExecuteNonQuery() > 0;
        }

        public string TableName(string table) => owner._s + "." + SqlTableName(build, table);

        public int ExecuteSql(string sql, IReadOnlyList<(string Name, object? Value)> parameters)
        {
            using var command = context.Command(parameters.Count == 0 ? sql : ProjectionSqlParameters.Translate(sql));
            foreach (var (name, value) in parameters)
            {
                command.Parameters.Add(new NpgsqlParameter(ProjectionSqlParameters.Name(name), value ?? DBNull.Value));
            }

            return command.ExecuteNonQuery();
        }
    }
}

/// <summary>
/// The named parameters of a projection's own SQL on PostgreSQL. Handlers write <c>$name</c>, as on SQLite; Npgsql names
/// parameters <c>@name</c> and reads <c>$1</c> as a positional one. So each <c>$name</c> (a letter or <c>_</c> after the
/// <c>$</c>) outside string literals, quoted identifiers, comments and dollar-quoted bodies becomes <c>@name</c>;
/// <c>@name</c> and <c>:name</c> are left as they are, so SQL written for Npgsql works too. A parameter's name is bound
/// without its prefix, whichever it was given with.
/// </summary>
internal static class ProjectionSqlParameters
{
    /// <summary>The name Npgsql binds: without a leading <c>$</c>, <c>@</c> or <c>:</c>.</summary>
    public static string Name(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return name[0] is '$' or '@' or ':' ? name[1..] : name;
    }

    /// <summary>The statement with each <c>$name</c> placeholder written as <c>@name</c>.</summary>
    public static string Translate(string sql)
    {
        if (!sql.Contains('$', StringComparison.Ordinal))
        {
            return sql;
        }

        var result = new StringBuilder(sql.Length);
        var i = 0;
        while (i < sql.Length)
        {
            var c = sql[i];
            var next = i + 1 < sql.Length ? sql[i + 1] : '\0';
            int end;
            if (c == '\'' || c == '"')
            {
                end = QuotedEnd(sql, i, c, backslashes: c == '\'' && i > 0 && sql[i - 1] is 'E' or 'e' && (i < 2 || !IsIdentifierChar(sql[i - 2])));
            }
            else if (c == '-' && next == '-')
            {
                end = sql.IndexOf('\n', i);
                end = end < 0 ? sql.Length : end + 1;
            }
            else if (c == '/' && next == '*')
            {
                end = BlockCommentEnd(sql, i);
            }
            else if (c == '$' && (char.IsAsciiLetter(next) || next == '_') && (i == 0 || !IsIdentifierChar(sql[i - 1])))
            {
                var name = i + 1;
                while (name < sql.Length && (char.IsAsciiLetterOrDigit(sql[name]) || sql[name] == '_'))
                {
                    name++;
                }

                if (name < sql.Length && sql[name] == '$')
                {
                    // $tag$: a dollar-quoted body runs to the next $tag$.
                    var tag = sql[i..(name + 1)];
                    var close = sql.IndexOf(tag, name + 1, StringComparison.Ordinal);
                    end = close < 0 ? sql.Length : close + tag.Length;
                }
                else
                {
                    result.Append('@').Append(sql, i + 1, name - i - 1);
                    i = name;
                    continue;
                }
            }
            else if (c == '$' && next == '$' && (i == 0 || !IsIdentifierChar(sql[i - 1])))
            {
                var close = sql.IndexOf("$$", i + 2, StringComparison.Ordinal);
                end = close < 0 ? sql.Length : close + 2;
            }
            else
            {
                result.Append(c);
                i++;
                continue;
            }

            result.Append(sql, i, end - i);
            i = end;
        }

        return result.ToString();
    }

    private static bool IsIdentifierChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_' || c == '$';

    /// <summary>The index after a quoted literal or identifier; a doubled quote stays inside it.</summary>
    private static int QuotedEnd(string sql, int start, char quote, bool backslashes)
    {
        for (var i = start + 1; i < sql.Length; i++)
        {
            if (backslashes && sql[i] == '\\')
            {
                i++;
            }
            else if (sql[i] == quote)
            {
                if (i + 1 < sql.Length && sql[i + 1] == quote)
                {
                    i++;
                    continue;
                }

                return i + 1;
            }
        }

        return sql.Length;
    }

    /// <summary>The index after a block comment, which nests in PostgreSQL.</summary>
    private static int BlockCommentEnd(string sql, int start)
    {
        var depth = 0;
        for (var i = start; i < sql.Length - 1; i++)
        {
            if (sql[i] == '/' && sql[i + 1] == '*')
            {
                depth++;
                i++;
            }
            else if (sql[i] == '*' && sql[i + 1] == '/')
            {
                depth--;
                i++;
                if (depth == 0)
                {
                    return i + 1;
                }
            }
        }

        return sql.Length;
    }
}
