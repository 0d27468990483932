using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Cairn.Sqlite;

/// <summary>
/// Copies the write-ahead log's pages back into the database file on a thread and a connection of its own, so the
/// writer seldom does it inside a commit. SQLite's automatic checkpoint runs in the commit that crosses its threshold:
/// that commit, and every operation queued behind it, then takes several times as long as the others. A passive
/// checkpoint here runs beside the writer's commits instead (SQLite lets one checkpoint run while one connection
/// writes), every <see cref="PagesPerCheckpoint"/> pages. The log starts again from its beginning only after a
/// checkpoint that left no page behind, which under a steady load this one never quite does: the writer's own
/// automatic checkpoint, moved to <see cref="WriterCheckpointPages"/>, does that, and finds all but the last pages
/// already copied, so it is short. The log's file stays near that size.
/// </summary>
internal sealed class SqliteCheckpointer : IDisposable
{
    /// <summary>Pages written to the log after which a checkpoint runs (SQLite's own threshold is 1,000).</summary>
    public const int PagesPerCheckpoint = 250;

    /// <summary>The writer's automatic checkpoint while this one runs: about 80 MB of 4 KB pages.</summary>
    public const int WriterCheckpointPages = 20_000;

    private readonly SqliteConnection _connection;
    private readonly ILogger _logger;
    // Set when a checkpoint is due. It blocks at once, without SemaphoreSlim's spinning first: the checkpointer waits
    // dozens of times a second, and a spin takes the CPU from the writer and the handlers it would be waiting beside.
    private readonly ManualResetEventSlim _due = new(false, spinCount: 0);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private long _pagesSinceCheckpoint;
    private long _completed;
    private TaskCompletionSource _nextCompleted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Opens the checkpointer's own connection to the file and starts its thread.</summary>
    public SqliteCheckpointer(string connectionString, string synchronous, ILogger logger)
    {
        _logger = logger;
        _connection = new SqliteConnection(connectionString);
        try
        {
            _connection.Open();
            using var pragmas = _connection.CreateCommand();

            // The checkpoint syncs the log before it copies and the file after, as the writer's setting asks.
            pragmas.CommandText = $"PRAGMA synchronous = {synchronous}";
            pragmas.ExecuteNonQuery();
        }
        catch
        {
            _connection.Dispose();
            throw;
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "Cairn SQLite checkpointer" };
        _thread.UnsafeStart(); // without the caller's execution context (a span, a message context), which it would keep for good
    }

    /// <summary>Checkpoints that ran, not counting those SQLite reported busy or that failed.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Completes once a checkpoint that begins after this call has completed (or failed, and been logged).</summary>
    public Task NextCompletedAsync() => Volatile.Read(ref _nextCompleted).Task;

    /// <summary>Counts pages the writer has just committed to the log, and wakes the thread once enough have.</summary>
    public void Written(int pages)
    {
        if (pages > 0 && Interlocked.Add(ref _pagesSinceCheckpoint, pages) >= PagesPerCheckpoint && !_due.IsSet)
        {
            _due.Set();
        }
    }

    /// <summary>Stops the thread, after the checkpoint it may be running, and closes the connection.</summary>
    public void Dispose()
    {
        _stopping = true;
        _due.Set();

        _thread.Join();
        _connection.Dispose();
        _due.Dispose();
        Volatile.Read(ref _nextCompleted).TrySetCanceled();
    }

    private void Run()
    {
        using var checkpoint = _connection.CreateCommand();
        checkpoint.CommandText = "PRAGMA wal_checkpoint(PASSIVE)";
        while (true)
        {
            _due.Wait();

            // Reset before reading the stop flag, so a stop's wake-up is either seen now or left set for the next wait;
            // and before the count, so pages written from here on count towards the next checkpoint (a wake-up they
            // cause before this one has begun only brings the next one forward).
            _due.Reset();
            if (_stopping)
            {
                return;
            }

            Interlocked.Exchange(ref _pagesSinceCheckpoint, 0);
            var done = Interlocked.Exchange(ref _nextCompleted, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            try
            {
                // One row: whether the checkpoint was held back, the log's pages, and the pages copied.
                using var result = checkpoint.ExecuteReader();
                if (result.Read() && result.GetInt64(0) == 0)
                {
                    Interlocked.Increment(ref _completed);
                }
            }
            catch (Exception ex)
            {
                // Nothing ends this thread: the log only grows until a later checkpoint, or the writer's own, catches up.
                try
                {
                    _logger.LogWarning(ex, "A background checkpoint of the SQLite write-ahead log failed; the next one will try again.");
                }
                catch (Exception)
                {
                    // A logger that throws must not end the thread either.
                }
            }

            done.TrySetResult();
        }
    }
}
