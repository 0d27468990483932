using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>
/// Connections for readers, opened straight through SQLite in multi-thread mode (<c>SQLITE_OPEN_NOMUTEX</c>): a
/// reader uses its connection from one flow at a time, so the per-call mutex of serialized mode, measured at about a
/// quarter of the cost of reading <c>$all</c>, buys nothing. Each connection keeps the statements of the hot reads
/// prepared (<see cref="Lease.Prepared"/>), as the writer keeps its own: preparing a statement for every read of a
/// stream or the inbox measured at about 4% of the CPU of a busy consumer.
/// </summary>
internal sealed class ReadConnectionPool(string path, int busyTimeoutMilliseconds) : IDisposable
{
    private const int MaxIdle = 8;

    private readonly ConcurrentBag<ReadConnection> _idle = [];
    private volatile bool _disposed;

    public Lease Rent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_idle.TryTake(out var idle))
        {
            return new Lease(this, idle);
        }

        var rc = raw.sqlite3_open_v2(path, out var db, raw.SQLITE_OPEN_READWRITE | raw.SQLITE_OPEN_NOMUTEX, null);
        if (rc != raw.SQLITE_OK)
        {
            var message = db is null ? $"SQLite error {rc}" : raw.sqlite3_errmsg(db).utf8_to_string();
            db?.Dispose();
            throw new SqliteException($"Cannot open {path} for reading: {message}", rc);
        }

        raw.sqlite3_busy_timeout(db, busyTimeoutMilliseconds);
        return new Lease(this, new ReadConnection(db));
    }

    private void Return(ReadConnection connection)
    {
        if (_disposed || _idle.Count >= MaxIdle)
        {
            connection.Dispose();
            return;
        }

        _idle.Add(connection);
        if (_disposed && _idle.TryTake(out var late))
        {
            late.Dispose();
        }
    }

    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out var connection))
        {
            connection.Dispose();
        }
    }

    /// <summary>A connection on loan; disposing it gives it back, once, however often it is disposed.</summary>
    public sealed class Lease : IDisposable
    {
        private readonly ReadConnectionPool _pool;
        private readonly ReadConnection _connection;
        private int _returned;

        internal Lease(ReadConnectionPool pool, ReadConnection connection)
        {
            _pool = pool;
            _connection = connection;
        }

        public sqlite3 Db => _connection.Db;

        /// <summary>
        /// The connection's prepared statement for <paramref name="sql"/>, prepared on its first use. It is the
        /// lease's until the lease is given back, which resets it and clears its bindings; the caller must not
        /// dispose it. Only for SQL that does not vary from call to call: each text is kept with the connection.
        /// </summary>
        public RawStatement Prepared(string sql)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _returned) != 0, this);
            return _connection.Take(sql);
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _returned, 1) == 0)
            {
                _connection.ReleaseTaken();
                _pool.Return(_connection);
            }
        }
    }

    /// <summary>
    /// A read connection with its prepared statements. Used by one lease at a time, so nothing in it is locked.
    /// </summary>
    internal sealed class ReadConnection(sqlite3 db) : IDisposable
    {
        /// <summary>More distinct statements than the hot reads need; past it, a statement is prepared for its lease alone.</summary>
        private const int MaxPrepared = 32;

        private readonly Dictionary<string, RawStatement> _prepared = new(StringComparer.Ordinal);
        private readonly List<RawStatement> _taken = [];
        private readonly List<RawStatement> _once = [];

        public sqlite3 Db { get; } = db;

        public RawStatement Take(string sql)
        {
            if (!_prepared.TryGetValue(sql, out var statement))
            {
                statement = new RawStatement(Db, sql);
                if (_prepared.Count < MaxPrepared)
                {
                    _prepared.Add(sql, statement);
                }
                else
                {
                    _once.Add(statement);
                    return statement;
                }
            }
            else if (_taken.Contains(statement))
            {
                // The same text twice in one lease: the second gets its own statement, so neither resets the other.
                statement = new RawStatement(Db, sql);
                _once.Add(statement);
                return statement;
            }

            _taken.Add(statement);
            return statement;
        }

        /// <summary>Resets what the last lease used, so an idle connection holds no read snapshot and no bound values.</summary>
        public void ReleaseTaken()
        {
            foreach (var statement in _taken)
            {
                statement.Clear();
            }

            _taken.Clear();
            foreach (var statement in _once)
            {
                statement.Dispose();
            }

            _once.Clear();
        }

        public void Dispose()
        {
            ReleaseTaken();
            foreach (var statement in _prepared.Values)
            {
                statement.Dispose();
            }

            _prepared.Clear();
            Db.Dispose();
        }
    }
}
