using System.Reflection;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using SQLitePCL;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// The SQLite store's writer and clock at their edges: the head read after a rollback or another process's commit, a
/// clock set back across a restart, URI file names, and a file of a newer Cairn whose tables changed.
/// </summary>
public sealed class WriterEdgeTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open(TimeProvider? clock = null, string? connectionString = null) =>
        new(new SqliteEventStoreOptions { ConnectionString = connectionString ?? _database.ConnectionString }, clock is null ? null : new EventStoreOptions { TimeProvider = clock });

    private static EventData Event(string type = "thing.happened") => new(type, Encoding.UTF8.GetBytes("{\"n\":1}"));

    /// <summary>Fills the log with 20,000 events, so a scan of it is told apart from a look-up.</summary>
    private static async Task FillAsync(SqliteEventStore store)
    {
        for (var batch = 0; batch < 20; batch++)
        {
            await store.AppendToStreamAsync($"bulk-{batch}", ExpectedVersion.NoStream, [.. Enumerable.Range(0, 1000).Select(_ => Event("bulk"))]);
        }
    }

    /// <summary>
    /// Rows the writer's head query (<c>SqliteWriteContext._head</c>, run by <c>LoadHead</c>) has stepped through in a
    /// full table scan since the last reset: SQLite's own count (<c>SQLITE_STMTSTATUS_FULLSCAN_STEP</c>).
    /// </summary>
    private static Task<int> HeadScanStepsAsync(SqliteEventStore store, bool reset) =>
        store.Writer.ExecuteAsync(context =>
        {
            var head = (RawStatement)typeof(SqliteWriteContext).GetField("_head", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(context)!;
            var statement = (sqlite3_stmt)typeof(RawStatement).GetField("_statement", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(head)!;
            return raw.sqlite3_stmt_status(statement, raw.SQLITE_STMTSTATUS_FULLSCAN_STEP, reset ? 1 : 0);
        }, default);

    // A commit refused after it wrote (a lost lease on acknowledgement, a reused event id) rolls the writer's group
    // back and reloads the head: one seek of the log's key, not a read of every row on the one writer thread (126 ms
    // per lost-lease acknowledgement on a 143 MB log, growing with it).
    [Fact]
    public async Task a_commit_refused_after_it_wrote_reloads_the_head_without_reading_the_log()
    {
        using var store = Open();
        await FillAsync(store);
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);
        await broker.SendAsync("jobs", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        var lease = (await broker.ReceiveAsync("jobs", new ReceiveOptions(), default))[0].Lease;
        await broker.AcknowledgeAsync(lease);

        await HeadScanStepsAsync(store, reset: true);
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(lease));
        var scanned = await HeadScanStepsAsync(store, reset: false);
        Assert.True(scanned < 1000, $"a lost-lease acknowledgement made the writer scan {scanned} rows of the event log");
    }

    // Another process's commit makes the writer reload the head before its next commit: a seek as well, so two
    // processes sharing a file keep their commit rate (79 ms per append alternating on a 143 MB log, against 2.8 ms).
    [Fact]
    public async Task a_commit_after_another_process_committed_reloads_the_head_without_reading_the_log()
    {
        using var first = Open();
        using var second = Open();
        await FillAsync(first);

        await HeadScanStepsAsync(first, reset: true);
        await second.AppendToStreamAsync("other-process", ExpectedVersion.Any, [Event()]);
        await first.AppendToStreamAsync("this-process", ExpectedVersion.Any, [Event()]);
        var scanned = await HeadScanStepsAsync(first, reset: false);
        Assert.True(scanned < 1000, $"one append after a foreign commit made the writer scan {scanned} rows of the event log");
    }

    // After a restart with the clock behind the last event's time (NTP after a boot with a fast clock, a restored VM, a
    // file from a machine whose clock ran ahead), a lease runs out once its duration has passed: messaging counts from
    // the clock, not from the events' commit times, which never go back and would hold "now" still until the clock
    // passed the last event's time.
    [Fact]
    public async Task after_a_restart_with_the_clock_behind_the_last_event_a_lease_runs_out()
    {
        using (var ahead = Open(new ManualTimeProvider(new DateTimeOffset(2025, 1, 1, 13, 0, 0, TimeSpan.Zero))))
        {
            await ahead.AppendToStreamAsync("s-1", ExpectedVersion.NoStream, [Event()]);
        }

        var clock = new ManualTimeProvider(new DateTimeOffset(2025, 1, 1, 12, 0, 0, TimeSpan.Zero));
        using var store = Open(clock);
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);
        await broker.SendAsync("jobs", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        Assert.Single(await broker.ReceiveAsync("jobs", new ReceiveOptions { Lease = TimeSpan.FromSeconds(10) }, default));

        clock.Advance(TimeSpan.FromSeconds(20));
        var redelivered = await broker.ReceiveAsync("jobs", new ReceiveOptions { Lease = TimeSpan.FromSeconds(10) }, default);
        Assert.Single(redelivered);
    }

    // The same for a delayed message: receivable once its delay has passed.
    [Fact]
    public async Task after_a_restart_with_the_clock_behind_the_last_event_a_delayed_message_falls_due()
    {
        using (var ahead = Open(new ManualTimeProvider(new DateTimeOffset(2025, 1, 1, 13, 0, 0, TimeSpan.Zero))))
        {
            await ahead.AppendToStreamAsync("s-1", ExpectedVersion.NoStream, [Event()]);
        }

        var clock = new ManualTimeProvider(new DateTimeOffset(2025, 1, 1, 12, 0, 0, TimeSpan.Zero));
        using var store = Open(clock);
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);
        await broker.SendAsync("jobs", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")) { Delay = TimeSpan.FromSeconds(10) });

        clock.Advance(TimeSpan.FromSeconds(20));
        Assert.Single(await broker.ReceiveAsync("jobs", new ReceiveOptions(), default));
    }

    // A URI file name ("file:…", which Microsoft.Data.Sqlite opens) is refused with a message saying to give a path:
    // the store's readers open the file by its path, and would open another file, every read failing while appends
    // succeeded.
    [Fact]
    public void a_file_uri_data_source_is_refused()
    {
        var refused = Assert.Throws<ArgumentException>(() => Open(connectionString: $"Data Source=file:{_database.Path}"));
        Assert.Contains("give the file's path", refused.Message, StringComparison.Ordinal);
    }

    // A file written by a newer Cairn whose tables changed (a renamed column) is refused with the message naming both
    // versions, before this version's DDL runs on it and fails first with a raw "no such column".
    [Fact]
    public async Task a_newer_file_whose_tables_changed_is_refused_naming_the_versions()
    {
        using (var store = Open())
        {
            await store.AppendToStreamAsync("s-1", ExpectedVersion.NoStream, [Event()]);
        }

        _database.Execute("""
            UPDATE cairn_schema SET version = 8;
            DROP INDEX cairn_inbox_by_correlation;
            DROP INDEX cairn_inbox_roots;
            ALTER TABLE cairn_inbox RENAME COLUMN correlation_id TO correlation_key;
            """);
        var error = Record.Exception(() => Open());
        Assert.IsType<CairnException>(error);
        Assert.Contains("newer", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Holds the writer thread inside an operation of its own until the returned gate is set, so that everything queued
    /// meanwhile is drained into the next group commit together.
    /// </summary>
    private static async Task<(Task Held, ManualResetEventSlim Gate)> HoldWriterAsync(SqliteEventStore store)
    {
        var gate = new ManualResetEventSlim(false);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var held = store.Writer.ExecuteAsync(_ =>
        {
            entered.TrySetResult();
            gate.Wait(TimeSpan.FromSeconds(30));
            return true;
        }, default);
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return (held, gate);
    }

    // An operation that runs application code (a projection batch) runs once per attempt, not again because another
    // operation of its group failed: an unguarded one that failed after writing (an acknowledgement of a lease already
    // settled, which deletes first and checks after) had the whole group run again, the guarded one's code included.
    [Fact]
    public async Task a_guarded_operation_runs_once_when_another_operation_of_its_group_fails_after_writing()
    {
        using var store = Open();
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);
        await broker.SendAsync("jobs", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        var lease = (await broker.ReceiveAsync("jobs", new ReceiveOptions(), default))[0].Lease;
        await broker.AcknowledgeAsync(lease);

        var (held, gate) = await HoldWriterAsync(store);
        var runs = 0;
        var guarded = store.Writer.ExecuteAsync(context =>
        {
            // Stands for a projection batch's handlers: application code, with effects of its own.
            Interlocked.Increment(ref runs);
            context.SetCheckpoint("guarded-projection", 1);
            return true;
        }, default, durable: false, guarded: true);
        var stale = broker.AcknowledgeAsync([lease], default);
        gate.Set();
        await held;

        await guarded;
        await Assert.ThrowsAsync<LeaseLostException>(() => stale);
        Assert.True(runs == 1, $"the guarded operation's application code ran {runs} times for one attempt, because another operation of its group failed after writing");
    }
}
