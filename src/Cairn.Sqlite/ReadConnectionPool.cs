using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Cairn.Sqlite;

/// <summary>
/// Connections for readers, opened straight through SQLite in multi-thread mode (<c>SQLITE_OPEN_NOMUTEX</c>): a
/// reader uses its connection from one flow at a time, so the per-call mutex of serialized mode, measured at about a
/// quarter of the cost of reading <c>$all</c>, buys nothing.
/// </summary>
internal sealed class ReadConnectionPool(string path, TimeSpan busyTimeout) : IDisposable
{
    private const int MaxIdle = 8;

    private readonly ConcurrentBag<sqlite3> _idle = [];
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

        raw.sqlite3_busy_timeout(db, (int)Math.Min(int.MaxValue, busyTimeout.TotalMilliseconds));
        return new Lease(this, db);
    }

    private void Return(sqlite3 db)
    {
        if (_disposed || _idle.Count >= MaxIdle)
        {
            db.Dispose();
            return;
        }

        _idle.Add(db);
        if (_disposed && _idle.TryTake(out var late))
        {
            late.Dispose();
        }
    }

    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out var db))
        {
            db.Dispose();
        }
    }

    /// <summary>A connection on loan; disposing it gives it back, once, however often it is disposed.</summary>
    public sealed class Lease(ReadConnectionPool pool, sqlite3 db) : IDisposable
    {
        private int _returned;

        public sqlite3 Db { get; } = db;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _returned, 1) == 0)
            {
                pool.Return(Db);
            }
        }
    }
}
