using System.Reflection;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite.Tests;

/// <summary>The SQLite store at its limits: long lists in a query, a long busy timeout, a default topic, waits ended by disposing.</summary>
public sealed class StoreLimitsTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open(Func<SqliteEventStoreOptions, SqliteEventStoreOptions>? configure = null, TimeProvider? clock = null)
    {
        var options = new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString };
        return new(configure?.Invoke(options) ?? options, clock is null ? null : new EventStoreOptions { TimeProvider = clock });
    }

    private static EventData Event(string type = "thing.happened", params string[] tags) =>
        new(type, Encoding.UTF8.GetBytes("{\"n\":1}")) { Tags = tags };

    private static SqliteConnection WriterConnection(SqliteWriteContext context) =>
        (SqliteConnection)typeof(SqliteWriteContext).GetField("_connection", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(context)!;

    private static long Pragma(SqliteWriteContext context, string sql)
    {
        using var pragma = new RawStatement(WriterConnection(context), sql);
        return pragma.ExecuteInt64() ?? -1;
    }

    // "A query of thousands of items or tags runs on every backend" (docs/event-store.md). SQLite takes at most 32,766
    // parameters in a statement: lists of types and one-tag items are bound as one parameter each, so a read by query,
    // a condition and a read of $all filtered by type run with tens of thousands (they failed with SqliteException).
    [Fact]
    public async Task a_query_of_the_most_items_runs()
    {
        using var store = Open();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event("order.placed", "product:7")]);
        var query = new EventQuery([.. Enumerable.Range(0, EventQuery.MaxNames).Select(i => new EventQueryItem(tags: [$"product:{i}"]))]);

        var read = new List<RecordedEvent>();
        await foreach (var e in store.ReadByQueryAsync(query, GlobalPosition.Start, long.MaxValue, default))
        {
            read.Add(e);
        }

        Assert.Single(read);
        var filter = EventFilter.ForEventTypes([.. Enumerable.Range(0, 33_000).Select(i => $"type.{i}"), "order.placed"]);
        var all = new List<RecordedEvent>();
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, filter, long.MaxValue, default))
        {
            all.Add(e);
        }

        Assert.Single(all);
        await Assert.ThrowsAsync<AppendConditionFailedException>(() => store.AppendWithConditionAsync("order-2", [Event()], new AppendCondition(query, GlobalPosition.Start), default));
    }

    // SQLite counts a busy timeout in milliseconds of a 32-bit number: a longer BusyTimeout waits as long as SQLite can.
    // The writer read one past about 24.8 days as 0, and stopped waiting for another process's lock at all.
    [Fact]
    public async Task a_busy_timeout_past_24_days_still_makes_the_writer_wait_for_a_lock()
    {
        using var store = Open(o => o with { BusyTimeout = TimeSpan.FromDays(30) });
        var writerTimeout = await store.Writer.ExecuteAsync(context => Pragma(context, "PRAGMA busy_timeout"), default);

        Assert.Equal(int.MaxValue, writerTimeout);
    }

    // A long-polling receive waiting when its store is disposed ends with ObjectDisposedException, where it slept out
    // its whole Wait (up to 5 minutes; for ever with a manual clock) before its next look failed.
    [Fact]
    public async Task disposing_the_store_ends_a_long_polling_receive()
    {
        var store = Open(o => o with { ExternalCommitPollInterval = TimeSpan.MaxValue });
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);

        // The receive's first look is queued at once; disposing the store runs it (finding nothing) before closing.
        var receive = broker.ReceiveAsync("jobs", new ReceiveOptions { Wait = TimeSpan.FromMinutes(5) }, default);
        store.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => receive.Bounded());
    }

    // A subscription naming no topic (a default TopicName) is refused as a missing name, on every backend, where the
    // writer's cache of topics was asked for a null key (an ArgumentNullException from Dictionary).
    [Fact]
    public async Task a_subscription_without_a_topic_is_refused_with_a_messaging_error()
    {
        using var store = Open();
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);

        var error = await Record.ExceptionAsync(() => broker.SubscribeAsync(new TopicSubscription(default, "audit", "work"), default));

        Assert.Equal("topic", Assert.IsType<InvalidMessagingNameException>(error).Kind);
    }

    // A wait for the next commit ends with ObjectDisposedException when the store is disposed, where with polling off
    // (a file one process writes) it waited for ever, and a live subscription neither ended nor failed.
    [Fact]
    public async Task disposing_the_store_ends_a_live_subscription_waiting_for_commits()
    {
        var store = Open(o => o with { ExternalCommitPollInterval = TimeSpan.MaxValue });
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event()]);
        var head = await store.GetHeadPositionAsync(default);

        var waiting = store.WaitForAppendAsync(head, default);
        Assert.False(waiting.IsCompleted);
        store.Dispose();

        Assert.Equal(nameof(SqliteEventStore), (await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.Bounded())).ObjectName);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => store.WaitForAppendAsync(head, default));
    }

    // The writer sizes its batch by the limit: one of int.MaxValue would have it ask for that many slots on its thread.
    [Fact]
    public void A_limit_of_operations_per_commit_past_a_million_is_refused_by_name()
    {
        var options = new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString, MaxOperationsPerCommit = int.MaxValue };

        Assert.Equal(nameof(SqliteEventStoreOptions.MaxOperationsPerCommit), Assert.Throws<ArgumentOutOfRangeException>(options.Validate).ParamName);
    }
}
