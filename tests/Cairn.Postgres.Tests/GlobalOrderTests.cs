using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;
using Npgsql;
using Xunit.Abstractions;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Promise 1 on PostgreSQL, with the concurrency of several processes: stores with their own connection pools, each
/// with sixteen writers, appending at once (with conflicts that roll back, and a transaction that writes an event under
/// the append lock and then rolls back), while a live reader on yet another store, woken only by its poll, reads
/// <c>$all</c>. The reader must see every committed event exactly once, in order, and nothing rolled back.
/// </summary>
public sealed class GlobalOrderTests(ITestOutputHelper output)
{
    private const int Stores = 4;
    private const int WritersPerStore = 16;
    private const int AppendsPerWriter = 32;
    private const int SharedStreams = 8;
    private const int ContestedStreams = 32;

    private static EventData Event(string type = "test.appended") =>
        new(type, Encoding.UTF8.GetBytes($"{{\"at\":{Stopwatch.GetTimestamp()}}}")) { Id = MessageId.New() };

    [Fact]
    public async Task a_live_reader_sees_every_committed_event_once_in_order_while_several_stores_append_with_conflicts_and_rollbacks()
    {
        var schema = PostgresServer.NewSchema();
        var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema, ExternalCommitPollInterval = TimeSpan.FromMilliseconds(50) };

        // Opened at once: the first migrates the new schema, the others wait on the migration lock and find it done.
        var stores = await Task.WhenAll(Enumerable.Range(0, Stores + 1).Select(_ => Task.Run(() => new PostgresEventStore(options))));
        var readerStore = stores[Stores];
        try
        {
            var seen = new List<RecordedEvent>();
            using var cancel = new CancellationTokenSource();
            var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var reader = Task.Run(async () =>
            {
                await foreach (var e in readerStore.SubscribeAsync(GlobalPosition.Start, EventFilter.All, cancel.Token, pageSize: 64, onProgress: (_, _) => subscribed.TrySetResult()))
                {
                    lock (seen)
                    {
                        seen.Add(e);
                    }
                }
            });
            await subscribed.Task.WaitAsync(TimeSpan.FromSeconds(30));

            var committed = new ConcurrentDictionary<MessageId, GlobalPosition>();
            var conflicts = 0;
            var appends = 0;
            var writing = new CancellationTokenSource();
            var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var clock = Stopwatch.StartNew();
            var writers = new List<Task>();
            for (var p = 0; p < Stores; p++)
            {
                for (var w = 0; w < WritersPerStore; w++)
                {
                    var store = stores[p];
                    var writer = $"p{p}w{w}";
                    writers.Add(Task.Run(async () =>
                    {
                        await go.Task;
                        long? own = null;
                        for (var i = 0; i < AppendsPerWriter; i++)
                        {
                            AppendResult result;
                            EventData[] events;
                            switch (i % 8)
                            {
                                case 0 or 4:
                                    // A batch to the writer's own stream, with exact versions.
                                    events = [Event(), Event(), Event()];
                                    result = await store.AppendToStreamAsync($"own-{writer}", own is { } v ? ExpectedVersion.Exactly(v) : ExpectedVersion.NoStream, events);
                                    own = result.NextExpectedVersion;
                                    break;
                                case 1:
                                    // A contested stream with an exact version: conflicts roll back, and the writer retries.
                                    var shared = new StreamName($"contested-{(p * WritersPerStore + w + i) % ContestedStreams}");
                                    while (true)
                                    {
                                        events = [Event()];
                                        var version = await store.GetStreamVersionAsync(shared);
                                        try
                                        {
                                            result = await store.AppendToStreamAsync(shared, version is { } sv ? ExpectedVersion.Exactly(sv) : ExpectedVersion.NoStream, events);
                                            break;
                                        }
                                        catch (WrongExpectedVersionException)
                                        {
                                            Interlocked.Increment(ref conflicts);
                                        }
                                    }

                                    break;
                                case 2 or 6:
                                    // Two streams in one atomic append.
                                    var a = Event();
                                    var b = Event();
                                    events = [a, b];
                                    result = await store.AppendToStreamsAsync(
                                    [
                                        new StreamAppend($"pair-{writer}-{i}", ExpectedVersion.NoStream, [a]),
                                        new StreamAppend($"shared-{i % SharedStreams}", ExpectedVersion.Any, [b]),
                                    ]);
                                    break;
                                default:
                                    events = [Event()];
                                    result = await store.AppendToStreamAsync($"shared-{(w + i) % SharedStreams}", ExpectedVersion.Any, events);
                                    break;
                            }

                            Assert.False(result.WasDuplicate);
                            Assert.Equal(events.Length, result.LastPosition.Value - result.FirstPosition.Value + 1);
                            foreach (var e in events)
                            {
                                Assert.True(committed.TryAdd(e.Id, default));
                            }

                            Interlocked.Increment(ref appends);
                        }
                    }));
                }
            }

            var ghosts = Task.Run(async () =>
            {
                await go.Task;
                var rolledBack = 0;
                for (var g = 0; g < 10; g++)
                {
                    await Task.Delay(30);
                    await GhostAppendAsync(schema, $"ghost-{g}");
                    rolledBack++;
                }

                return rolledBack;
            });

            go.SetResult();
            await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(5));
            var ghostCount = await ghosts;
            var writeTime = clock.Elapsed;

            var head = await stores[0].GetHeadPositionAsync(default);
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                lock (seen)
                {
                    if (seen.Count > 0 && seen[^1].Position >= head)
                    {
                        break;
                    }
                }

                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "The live reader did not reach the head within a minute.");
                await Task.Delay(20);
            }

            var caughtUp = clock.Elapsed;
            await cancel.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => reader).WaitAsync(TimeSpan.FromSeconds(30));

            // Positions are assigned under the lock as the head plus one: the reader saw 1, 2, 3, … with none skipped,
            // repeated or reordered, and a rolled-back append left no gap and no event.
            Assert.Equal(committed.Count, seen.Count);
            Assert.Equal(head.Value, seen.Count);
            for (var i = 0; i < seen.Count; i++)
            {
                Assert.Equal(i + 1, seen[i].Position.Value);
            }

            Assert.Equal(committed.Keys.OrderBy(k => k.Value), seen.Select(e => e.Id).OrderBy(k => k.Value));
            Assert.DoesNotContain(seen, e => e.Stream.Value.StartsWith("ghost-", StringComparison.Ordinal));
            var replay = await readerStore.ReadAllAsync().ToListAsync();
            Assert.Equal(seen.Select(e => e.Id), replay.Select(e => e.Id));

            output.WriteLine(
                $"{Stores} stores x {WritersPerStore} writers: {appends} appends, {committed.Count} events in {writeTime.TotalSeconds:F2} s "
                + $"({committed.Count / writeTime.TotalSeconds:F0} events/s, {appends / writeTime.TotalSeconds:F0} appends/s), "
                + $"{conflicts} conflicts rolled back, {ghostCount} rolled-back appends under the lock; "
                + $"the live reader saw all {seen.Count} once, in order, {(caughtUp - writeTime).TotalMilliseconds:F0} ms after the last write.");
        }
        finally
        {
            foreach (var store in stores)
            {
                await store.DisposeAsync();
            }

            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    [Fact]
    public async Task stores_opened_at_once_on_a_new_schema_migrate_it_once()
    {
        var schema = PostgresServer.NewSchema();
        var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema };
        var stores = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => new PostgresEventStore(options))));
        try
        {
            await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"SELECT count(*), max(version) FROM \"{schema}\".migrations", connection);
            await using var reader = await command.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            Assert.Equal(PostgresSchema.MigrationCount, reader.GetInt64(0));
            Assert.Equal(PostgresSchema.CurrentVersion, reader.GetInt32(1));
        }
        finally
        {
            foreach (var store in stores)
            {
                await store.DisposeAsync();
            }

            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    [Fact]
    public async Task a_store_that_does_not_migrate_refuses_a_schema_that_is_not_there()
    {
        var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = PostgresServer.NewSchema(), MigrateOnStart = false };
        var error = Assert.Throws<InvalidOperationException>(() => new PostgresEventStore(options));
        Assert.Contains("version 0", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// What an append that fails late looks like to everyone else: it takes the append lock, writes a stream and an
    /// event at the next position, holds the lock a while (the other appenders wait), then rolls back.
    /// </summary>
    private static async Task GhostAppendAsync(string schema, string stream)
    {
        var s = $"\"{schema}\"";
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var command = new NpgsqlCommand(
            $"""
            SELECT pg_advisory_xact_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(schema)});
            WITH st AS (INSERT INTO {s}.streams (name, state, last_version) VALUES ('{stream}', 1, 0) RETURNING id)
            INSERT INTO {s}.events (position, id, stream_id, stream, category, is_system, version, type, time_ticks, source, content_type, tags, data)
            SELECT (SELECT coalesce(max(position), 0) + 1 FROM {s}.events), gen_random_uuid(), st.id, '{stream}', 'ghost', false, 0, 'test.ghost', 0, 'urn:test', 'application/json', ARRAY[]::text[], '\x7b7d'::bytea FROM st;
            """,
            connection,
            transaction))
        {
            await command.ExecuteNonQueryAsync();
        }

        await Task.Delay(50);
        await transaction.RollbackAsync();
    }
}
