using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>
/// A prepared statement driven through SQLitePCL directly, for the hot paths: binding by position and reading
/// columns as spans skips the per-execution parameter-name look-ups and per-column bookkeeping of the ADO.NET layer,
/// which measured as most of the cost of an insert and of a read of <c>$all</c>.
/// </summary>
internal sealed class RawStatement : IDisposable
{
    private readonly sqlite3 _db;
    private readonly sqlite3_stmt _statement;

    public RawStatement(SqliteConnection connection, string sql)
        : this(connection.Handle ?? throw new InvalidOperationException("The connection is not open."), sql)
    {
    }

    public RawStatement(sqlite3 db, string sql)
    {
        _db = db;
        var rc = raw.sqlite3_prepare_v2(_db, sql, out _statement);
        if (rc != raw.SQLITE_OK)
        {
            throw Error(rc);
        }
    }

    /// <summary>The 1-based index of a named parameter.</summary>
    public int IndexOf(string name)
    {
        var index = raw.sqlite3_bind_parameter_index(_statement, name);
        return index > 0 ? index : throw new ArgumentException($"The statement has no parameter {name}.", nameof(name));
    }

    public void Bind(int index, long value) => Check(raw.sqlite3_bind_int64(_statement, index, value));

    public void Bind(int index, string? value) => Check(value is null ? raw.sqlite3_bind_null(_statement, index) : raw.sqlite3_bind_text(_statement, index, value));

    public void Bind(int index, long? value) => Check(value is { } v ? raw.sqlite3_bind_int64(_statement, index, v) : raw.sqlite3_bind_null(_statement, index));

    /// <summary>Binds a blob; an empty one binds as a zero-length blob, never as NULL.</summary>
    public void Bind(int index, ReadOnlySpan<byte> value) =>
        Check(value.IsEmpty ? raw.sqlite3_bind_zeroblob(_statement, index, 0) : raw.sqlite3_bind_blob(_statement, index, value));

    public void BindNull(int index) => Check(raw.sqlite3_bind_null(_statement, index));

    public void Bind(int index, double value) => Check(raw.sqlite3_bind_double(_statement, index, value));

    /// <summary>Binds a value of a type a query builder produces: a number (whole or real) or a string.</summary>
    public void BindValue(int index, object value)
    {
        switch (value)
        {
            case long l:
                Bind(index, l);
                break;
            case int i:
                Bind(index, (long)i);
                break;
            case string s:
                Bind(index, s);
                break;
            case double d:
                Bind(index, d);
                break;
            default:
                throw new ArgumentException($"Cannot bind a {value.GetType().Name}.", nameof(value));
        }
    }

    /// <summary>Steps once: true when a row is ready, false when the statement is done.</summary>
    public bool Step()
    {
        var rc = raw.sqlite3_step(_statement);
        return rc switch
        {
            raw.SQLITE_ROW => true,
            raw.SQLITE_DONE => false,
            _ => throw Error(rc),
        };
    }

    /// <summary>Runs a statement that returns no rows, then makes it ready to run again.</summary>
    public void Execute()
    {
        try
        {
            Step();
        }
        finally
        {
            raw.sqlite3_reset(_statement);
        }
    }

    /// <summary>Runs a statement and returns the first column of its first row, or null when there is none.</summary>
    public long? ExecuteInt64()
    {
        try
        {
            return Step() && !IsNull(0) ? Int64(0) : null;
        }
        finally
        {
            raw.sqlite3_reset(_statement);
        }
    }

    public void Reset() => raw.sqlite3_reset(_statement);

    /// <summary>Resets the statement and clears its bindings, ready for its next use by another caller.</summary>
    public void Clear()
    {
        raw.sqlite3_reset(_statement);
        raw.sqlite3_clear_bindings(_statement);
    }

    /// <summary>Whether the statement is part-way through its result, holding its read snapshot until reset.</summary>
    public bool Busy => raw.sqlite3_stmt_busy(_statement) != 0;

    public long Int64(int column) => raw.sqlite3_column_int64(_statement, column);

    public bool IsNull(int column) => raw.sqlite3_column_type(_statement, column) == raw.SQLITE_NULL;

    /// <summary>The column's bytes, valid until the next step or reset.</summary>
    public ReadOnlySpan<byte> Blob(int column) => raw.sqlite3_column_blob(_statement, column);

    public string Text(int column) => Encoding.UTF8.GetString(raw.sqlite3_column_blob(_statement, column));

    public string? TextOrNull(int column) => IsNull(column) ? null : Text(column);

    public void Dispose() => _statement.Dispose();

    private void Check(int rc)
    {
        if (rc != raw.SQLITE_OK)
        {
            throw Error(rc);
        }
    }

    private SqliteException Error(int rc) =>
        new(raw.sqlite3_errmsg(_db).utf8_to_string() ?? $"SQLite error {rc}", rc, raw.sqlite3_extended_errcode(_db));
}
