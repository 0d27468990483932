using System.Diagnostics;
using System.Globalization;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Postgres.Child;
using Npgsql;
using Xunit.Abstractions;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Promise 1 on PostgreSQL, across processes: four child processes, each with its own store and sixteen writers,
/// append at once (with conflicts that roll back, and transactions that write an event under the append lock and then
/// roll back), while a live reader in this process, woken only by its poll, reads <c>$all</c>. The reader must see
/// every committed event exactly once, in order, and nothing rolled back.
/// </summary>
public sealed class GlobalOrderTests(ITestOutputHelper output)
{
    private const int Processes = 4;
    private const int WritersPerProcess = 16;
    private const int AppendsPerWriter = 32;

    [Fact]
    public async Task a_live_reader_sees_every_committed_event_once_in_order_while_four_processes_append_with_conflicts_and_rollbacks()
    {
        var schema = PostgresServer.NewSchema();
        var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema, ExternalCommitPollInterval = TimeSpan.FromMilliseconds(50) };
        var children = new List<(Process Process, StringBuilder Errors)>();
        await using var readerStore = new PostgresEventStore(options);
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

            for (var p = 0; p < Processes; p++)
            {
                children.Add(StartChild(schema, p));
            }

            foreach (var (child, errors) in children)
            {
                var ready = await child.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(2));
                Assert.True(ready == GlobalOrderWriters.Ready, $"A child did not start: {ready} {errors}");
            }

            var clock = Stopwatch.StartNew();
            var outputs = children.Select(c => c.Process.StandardOutput.ReadToEndAsync()).ToList();
            foreach (var (child, _) in children)
            {
                await child.StandardInput.WriteLineAsync("go");
                await child.StandardInput.FlushAsync();
            }

            var ghosts = 0;
            while (children.Any(c => !c.Process.HasExited) && ghosts < 10)
            {
                await GhostAppendAsync(schema, $"ghost-{ghosts++}");
                await Task.Delay(30);
            }

            var committed = new HashSet<MessageId>();
            int appends = 0, conflicts = 0;
            for (var p = 0; p < Processes; p++)
            {
                var (child, errors) = children[p];
                var lines = (await outputs[p].WaitAsync(TimeSpan.FromMinutes(5))).Split('\n', StringSplitOptions.RemoveEmptyEntries);
                await child.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
                Assert.True(child.ExitCode == 0, $"Child {p} failed ({child.ExitCode}): {errors}");
                foreach (var line in lines)
                {
                    if (line.StartsWith(GlobalOrderWriters.Committed, StringComparison.Ordinal))
                    {
                        Assert.True(committed.Add(new MessageId(Guid.Parse(line.AsSpan(GlobalOrderWriters.Committed.Length)))));
                    }
                    else if (line.StartsWith(GlobalOrderWriters.Done, StringComparison.Ordinal))
                    {
                        var counts = line[GlobalOrderWriters.Done.Length..].Split(' ');
                        appends += int.Parse(counts[0], CultureInfo.InvariantCulture);
                        conflicts += int.Parse(counts[1], CultureInfo.InvariantCulture);
                    }
                }
            }

            var writeTime = clock.Elapsed;
            Assert.Equal(Processes * WritersPerProcess * AppendsPerWriter, appends);
            var head = await readerStore.GetHeadPositionAsync(default);
            await Wait.UntilAsync(() => { lock (seen) { return seen.Count > 0 && seen[^1].Position >= head; } }, "the live reader reaching the head");
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

            Assert.Equal(committed.OrderBy(k => k.Value), seen.Select(e => e.Id).OrderBy(k => k.Value));
            Assert.DoesNotContain(seen, e => e.Stream.Value.StartsWith("ghost-", StringComparison.Ordinal));
            var replay = await readerStore.ReadAllAsync().ToListAsync();
            Assert.Equal(seen.Select(e => e.Id), replay.Select(e => e.Id));

            output.WriteLine(
                $"{Processes} processes x {WritersPerProcess} writers: {appends} appends, {committed.Count} events in {writeTime.TotalSeconds:F2} s "
                + $"(process start-up excluded: {committed.Count / writeTime.TotalSeconds:F0} events/s, {appends / writeTime.TotalSeconds:F0} appends/s), "
                + $"{conflicts} conflicts rolled back, {ghosts} rolled-back appends under the lock; "
                + $"the live reader saw all {seen.Count} once, in order, {(caughtUp - writeTime).TotalMilliseconds:F0} ms after the last write.");
        }
        finally
        {
            foreach (var (child, _) in children)
            {
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true);
                }

                child.Dispose();
            }

            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    /// <summary>Starts a child process that opens its own store on the schema and waits for the go line.</summary>
    private static (Process, StringBuilder) StartChild(string schema, int process)
    {
        var start = ChildProcess.StartInfo(
            typeof(GlobalOrderWriters).Assembly.Location, "append", PostgresServer.ConnectionString, schema,
            process.ToString(CultureInfo.InvariantCulture), WritersPerProcess.ToString(CultureInfo.InvariantCulture), AppendsPerWriter.ToString(CultureInfo.InvariantCulture));
        start.RedirectStandardInput = true;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;

        var errors = new StringBuilder();
        var child = Process.Start(start) ?? throw new InvalidOperationException("The child process did not start.");
        child.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
            {
                errors.AppendLine(e.Data);
            }
        };
        child.BeginErrorReadLine();
        return (child, errors);
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
            WITH st AS (INSERT INTO {s}.streams (name, state) VALUES ('{stream}', 1) RETURNING id)
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
