using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Sqlite.Tests;

public sealed class SqliteStoreTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open(SqliteDurability durability = SqliteDurability.Full) =>
        new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString, Durability = durability });

    private static EventData Event(string type = "thing.happened", string json = "{\"n\":1}") => new(type, Encoding.UTF8.GetBytes(json));

    [Fact]
    public async Task events_survive_closing_and_reopening_the_file()
    {
        using (var store = Open())
        {
            await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event(), Event()]);
            await store.AppendToStreamAsync("order-2", ExpectedVersion.NoStream, [Event()]);
        }

        using (var store = Open())
        {
            var all = await store.ReadAllAsync().ToListAsync();
            Assert.Equal([1L, 2L, 3L], all.Select(e => e.Position.Value));
            Assert.Equal(1, await store.GetStreamVersionAsync("order-1"));
            var next = await store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(1), [Event()]);
            Assert.Equal(2, next.NextExpectedVersion);
            Assert.Equal(4, next.LastPosition.Value);
        }
    }

    [Fact]
    public async Task a_live_wait_with_no_poll_interval_waits_for_the_append()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString, ExternalCommitPollInterval = TimeSpan.MaxValue });
        var head = await store.GetHeadPositionAsync(default);
        var waiting = store.WaitForAppendAsync(head, default);
        Assert.False(waiting.IsCompleted);

        await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()]);
        await waiting.Bounded();
    }

    [Theory]
    [InlineData(SqliteDurability.Full, 2L, 1L)]
    [InlineData(SqliteDurability.Normal, 1L, 1L)]
    public async Task only_a_receive_commits_without_waiting_for_the_disk_and_normal_durability_stays_normal(SqliteDurability durability, long durableLevel, long receiveLevel)
    {
        using var store = Open(durability);
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("q"), default);
        await broker.SendAsync("q", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        Assert.Equal(durableLevel, await store.Writer.ExecuteAsync(context => context.SynchronousLevel(), default));
        Assert.Equal(receiveLevel, await store.Writer.ExecuteAsync(context => context.SynchronousLevel(), default, durable: false));

        // Back to the store's level for the next durable commit, whatever came before.
        Assert.Single(await broker.ReceiveAsync("q", new ReceiveOptions(), default));
        Assert.Equal(durableLevel, await store.Writer.ExecuteAsync(context => context.SynchronousLevel(), default));
    }

    [Fact]
    public async Task a_message_whose_stored_envelope_is_corrupt_is_dead_lettered_and_the_rest_are_delivered()
    {
        using var store = Open();
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("q"), default);
        await broker.SendBatchAsync("q", [new OutgoingMessage("job", Encoding.UTF8.GetBytes("{\"n\":1}")), new OutgoingMessage("job", Encoding.UTF8.GetBytes("{\"n\":2}"))]);
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString))
        {
            connection.Open();
            using var corrupt = connection.CreateCommand();
            corrupt.CommandText = "UPDATE cairn_messages SET envelope = x'07' WHERE seq = (SELECT min(seq) FROM cairn_messages)";
            Assert.Equal(1, corrupt.ExecuteNonQuery());
        }

        var delivery = Assert.Single(await broker.ReceiveAsync("q", new ReceiveOptions(), default));
        Assert.Equal("{\"n\":2}", Encoding.UTF8.GetString(delivery.Message.Data.Span));
        var stats = await broker.GetStatsAsync("q", default);
        Assert.Equal((1L, 1L, 0L), (stats.Leased, stats.DeadLettered, stats.Visible));

        // Listed with its id and raw data, so it can be looked at and purged.
        var letter = Assert.Single(await broker.ListDeadLettersAsync("q", 0, 10, default));
        Assert.Equal(SqliteMessageBroker.UnreadableType, letter.Message.Type);
        Assert.Contains("envelope could not be read", letter.Reason, StringComparison.Ordinal);
        Assert.Equal(1, await broker.PurgeDeadLettersAsync("q", [letter.Message.Id], default));
    }

    [Fact]
    public async Task concurrent_appenders_share_commits_and_a_failed_expectation_fails_only_its_own_append()
    {
        using var store = Open();
        await store.AppendToStreamAsync("contended-1", ExpectedVersion.NoStream, [Event()]);

        // Many appends queued at once land in few group commits; the ones with a stale expectation fail alone.
        var good = Enumerable.Range(0, 64).Select(i => store.AppendToStreamAsync($"free-{i}", ExpectedVersion.NoStream, [Event()])).ToList();
        var stale = Enumerable.Range(0, 8).Select(_ => store.AppendToStreamAsync("contended-1", ExpectedVersion.Exactly(5), [Event()])).ToList();
        await Task.WhenAll(good);
        foreach (var task in stale)
        {
            var error = await Assert.ThrowsAsync<WrongExpectedVersionException>(() => task);
            Assert.Equal(0, error.Actual);
        }

        var positions = good.Select(t => t.Result.LastPosition.Value).Order().ToList();
        Assert.Equal(Enumerable.Range(2, 64).Select(i => (long)i), positions);
        Assert.Equal(65, (await store.GetHeadPositionAsync(default)).Value);
    }

    [Fact]
    public async Task a_duplicate_id_found_only_by_the_unique_index_fails_its_append_and_the_batch_around_it_still_commits()
    {
        using var store = Open();
        var existing = Event();
        await store.AppendToStreamAsync("a-1", ExpectedVersion.NoStream, [existing]);

        // The first id is new, so the retry check passes; the second id collides inside the write.
        var colliding = store.AppendToStreamAsync("a-2", ExpectedVersion.NoStream, [Event(), existing with { }]);
        var others = Enumerable.Range(0, 10).Select(i => store.AppendToStreamAsync($"b-{i}", ExpectedVersion.NoStream, [Event()])).ToList();
        var error = await Assert.ThrowsAsync<DuplicateEventIdException>(() => colliding);
        Assert.Equal(existing.Id, error.EventId);
        await Task.WhenAll(others);
        Assert.False(await store.StreamExistsAsync("a-2"));
        Assert.Equal(11, (await store.ReadAllAsync().ToListAsync()).Count);
        Assert.Equal(Enumerable.Range(1, 11).Select(i => (long)i), (await store.ReadAllAsync().ToListAsync()).Select(e => e.Position.Value));
    }

    [Fact]
    public async Task an_append_failing_after_its_writes_in_a_full_group_is_undone_alone_when_the_group_runs_again()
    {
        var log = new RecordingLogger<SqliteEventStore>();
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString }, logger: log);
        var existing = Event();
        await store.AppendToStreamAsync("a-1", ExpectedVersion.NoStream, [existing]);

        // Another connection holds the write lock while the appends queue, so the writer takes them as one group (the
        // first one taken may commit alone). The colliding append has written its stream and first event when the
        // unique index refuses its second: the group, run without savepoints, must be rolled back and run again.
        using var blocker = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString + ";Pooling=False");
        blocker.Open();
        using (var begin = blocker.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            begin.ExecuteNonQuery();
        }

        var before = Enumerable.Range(0, 20).Select(i => store.AppendToStreamAsync($"before-{i}", ExpectedVersion.NoStream, [Event()])).ToList();
        var colliding = store.AppendToStreamAsync("a-2", ExpectedVersion.NoStream, [Event(), existing with { }]);
        var after = Enumerable.Range(0, 20).Select(i => store.AppendToStreamAsync($"after-{i}", ExpectedVersion.NoStream, [Event(), Event()])).ToList();
        using (var rollback = blocker.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
        }

        var error = await Assert.ThrowsAsync<DuplicateEventIdException>(() => colliding);
        Assert.Equal(existing.Id, error.EventId);
        var beforeResults = await Task.WhenAll(before);
        var afterResults = await Task.WhenAll(after);
        Assert.Contains(log.Entries, e => e.Message.StartsWith("An operation failed after writing", StringComparison.Ordinal));

        // Every other append landed whole, at the position its result names, and the log has no gap where a-2 was.
        Assert.False(await store.StreamExistsAsync("a-2"));
        var all = await store.ReadAllAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(1, 61).Select(i => (long)i), all.Select(e => e.Position.Value));
        var byPosition = all.ToDictionary(e => e.Position.Value, e => e.Stream.Value);
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal($"before-{i}", byPosition[beforeResults[i].LastPosition.Value]);
            Assert.Equal($"after-{i}", byPosition[afterResults[i].LastPosition.Value]);
            Assert.Equal(1, afterResults[i].NextExpectedVersion);
        }
    }

    [Fact]
    public async Task a_correlation_first_seen_by_an_append_that_is_undone_is_keyed_again_by_the_next_one()
    {
        using var store = Open();
        var existing = Event();
        await store.AppendToStreamAsync("a-1", ExpectedVersion.NoStream, [existing]);

        // The failing append gives the flow its key, writes its first event under it, then meets the reused id: its
        // transaction is rolled back, key included, and the key it cached must go with it.
        using (Cairn.Envelopes.MessageContext.Begin("flow-x"))
        {
            await Assert.ThrowsAsync<DuplicateEventIdException>(() => store.AppendToStreamAsync("a-2", ExpectedVersion.NoStream, [Event(), existing with { }]));
            await store.AppendToStreamAsync("a-3", ExpectedVersion.NoStream, [Event()]);
        }

        Assert.Equal(["flow-x"], _database.Query("SELECT value FROM cairn_correlations", r => r.GetString(0)));
        var trace = await new Cairn.Diagnostics.CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync("flow-x", default);
        Assert.Equal(["a-3"], trace.Timeline.Select(e => e.Stream));
    }

    [Fact]
    public async Task a_message_that_starts_its_flow_takes_no_key_and_pruning_forgets_keys_only_pruned_records_used()
    {
        using var store = Open();
        var broker = new SqliteMessageBroker(store);
        var queue = new QueueName("work");
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        List<string> Keys() => _database.Query("SELECT value FROM cairn_correlations ORDER BY id", r => r.GetString(0));
        Task<Cairn.Diagnostics.CorrelationTrace> TraceAsync(string correlation) =>
            new Cairn.Diagnostics.CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync(correlation, default);

        async Task<Cairn.Envelopes.MessageId> HandleAsync(string? flow)
        {
            using (flow is null ? null : Cairn.Envelopes.MessageContext.Begin(flow))
            {
                await broker.SendAsync(queue, new OutgoingMessage("work.item", "{}"u8.ToArray()));
            }

            var delivery = Assert.Single(await broker.ReceiveAsync(queue, new ReceiveOptions(), default));
            await broker.CommitAsync(new MessageTransaction().Acknowledge(delivery.Lease).MarkProcessed("worker", delivery), default);
            return delivery.Message.Id;
        }

        // Sent outside any flow, a message is its own correlation: no key, and a trace of its id finds its handling.
        var root = await HandleAsync(null);
        Assert.Empty(Keys());
        var rootTrace = await TraceAsync(root.ToString());
        Assert.Equal(("worker", Cairn.Diagnostics.TraceEntryKind.MessageHandled), (rootTrace.Timeline.Single().Consumer, rootTrace.Timeline.Single().Kind));

        // flow-y appends an event, whose run keeps its key; flow-z is messages only.
        using (Cairn.Envelopes.MessageContext.Begin("flow-y"))
        {
            await store.AppendToStreamAsync("y-1", ExpectedVersion.NoStream, [Event()]);
        }

        await HandleAsync("flow-y");
        await HandleAsync("flow-z");
        Assert.Equal(["flow-y", "flow-z"], Keys());

        Assert.Equal(3, await broker.PruneInboxAsync("worker", DateTimeOffset.UtcNow.AddDays(1), default));
        Assert.Equal(["flow-y"], Keys());
        Assert.True((await TraceAsync(root.ToString())).IsEmpty);

        // The key kept serves the flow's next record, and the trace finds both the event and that handling.
        await HandleAsync("flow-y");
        Assert.Equal(["flow-y"], Keys());
        Assert.Equal(
            [Cairn.Diagnostics.TraceEntryKind.EventAppended, Cairn.Diagnostics.TraceEntryKind.MessageHandled],
            (await TraceAsync("flow-y")).Timeline.Select(e => e.Kind));
    }

    [Fact]
    public async Task a_second_store_on_the_same_file_sees_the_first_ones_writes_and_appends_after_them()
    {
        using var first = Open();
        using var second = Open();
        await first.AppendToStreamAsync("s-1", ExpectedVersion.NoStream, [Event()]);
        await second.AppendToStreamAsync("s-1", ExpectedVersion.Exactly(0), [Event()]);
        await first.AppendToStreamAsync("s-1", ExpectedVersion.Exactly(1), [Event()]);
        var error = await Assert.ThrowsAsync<WrongExpectedVersionException>(() => second.AppendToStreamAsync("s-1", ExpectedVersion.Exactly(1), [Event()]));
        Assert.Equal(2, error.Actual);
        Assert.Equal([0L, 1L, 2L], (await first.ReadStreamAsync("s-1").ToListAsync()).Select(e => e.Version));
    }

    [Fact]
    public void an_in_memory_sqlite_database_is_refused_with_a_pointer_to_the_in_memory_store()
    {
        var error = Assert.Throws<ArgumentException>(() => new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = "Data Source=:memory:" }));
        Assert.Contains("UseInMemory", error.Message);
    }

    [Fact]
    public async Task a_file_from_a_newer_schema_version_is_refused()
    {
        using (var store = Open())
        {
            await store.AppendToStreamAsync("a-1", ExpectedVersion.NoStream, [Event()]);
        }

        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO cairn_schema (version) VALUES (99)";
            command.ExecuteNonQuery();
        }

        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        var error = Assert.Throws<CairnException>(() => Open());
        Assert.Contains("99", error.Message);
    }

    [Fact]
    public async Task two_stores_writing_one_file_at_once_keep_positions_and_versions_gap_free()
    {
        using var first = Open();
        using var second = Open();
        var writers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            var store = w % 2 == 0 ? first : second;
            for (var i = 0; i < 100; i++)
            {
                await store.AppendToStreamAsync($"shared-{i % 5}", ExpectedVersion.Any, [Event()]);
            }
        }));
        await Task.WhenAll(writers);

        var all = await first.ReadAllAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(1, 800).Select(i => (long)i), all.Select(e => e.Position.Value));
        foreach (var stream in all.GroupBy(e => e.Stream))
        {
            Assert.Equal(Enumerable.Range(0, stream.Count()).Select(i => (long)i), stream.Select(e => e.Version));
        }
    }

    [Fact]
    public async Task an_append_cancelled_while_it_waits_for_the_writer_is_either_cancelled_and_absent_or_complete_and_present()
    {
        using var store = Open();
        await store.AppendToStreamAsync("warm-1", ExpectedVersion.NoStream, [Event()]);

        // Another connection holds the write lock, so the writer waits in its busy handler with whatever it took.
        using var blocker = new Microsoft.Data.Sqlite.SqliteConnection(_database.ConnectionString + ";Pooling=False");
        blocker.Open();
        using (var begin = blocker.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            begin.ExecuteNonQuery();
        }

        var first = store.AppendToStreamAsync("held-1", ExpectedVersion.NoStream, [Event()]);
        using var cancel = new CancellationTokenSource();
        var second = store.AppendToStreamAsync("held-2", ExpectedVersion.NoStream, [Event()], cancel.Token);
        await cancel.CancelAsync();
        using (var rollback = blocker.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
        }

        await first;
        var cancelled = false;
        try
        {
            await second;
        }
        catch (OperationCanceledException)
        {
            cancelled = true;
        }

        // Cancelled means nothing written; not cancelled means it was already in a commit and landed whole.
        Assert.Equal(!cancelled, await store.StreamExistsAsync("held-2"));
        Assert.True(await store.StreamExistsAsync("held-1"));
    }
}
