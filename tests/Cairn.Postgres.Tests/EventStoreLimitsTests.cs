using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The PostgreSQL event store at its limits: a migration waiting for its lock, conditions and queries that are no
/// input, an append timing out on the append lock, pages whose bulk is metadata.
/// </summary>
public sealed class EventStoreLimitsTests
{
    private static EventData Event(string type = "test.appended") => new(MessageId.New(), type, "{}"u8.ToArray());

    private static async Task<long> MigrationLockWaitersAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2",
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)PostgresSchema.MigrationLockClass });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)PostgresSchema.SchemaKey(schema) });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// A migrator waiting for another process's migration (or for a session that holds the migration lock) has no time
    /// limit by design, so its cancellation token is the way to stop it: a cancelled <c>storage migrate</c> ends at once
    /// rather than waiting as long as the lock is held.
    /// </summary>
    [Fact]
    public async Task A_migration_waiting_for_the_migration_lock_ends_when_cancelled()
    {
        var schema = PostgresServer.NewSchema();
        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await using (var hold = new NpgsqlCommand($"SELECT pg_advisory_lock({PostgresSchema.MigrationLockClass}, {PostgresSchema.SchemaKey(schema)})", holder))
        {
            await hold.ExecuteNonQueryAsync();
        }

        Task? migrating = null;
        try
        {
            using var cancel = new CancellationTokenSource();
            var migrator = new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema });
            migrating = migrator.MigrateAsync(cancel.Token);
            await Wait.UntilAsync(async () => await MigrationLockWaitersAsync(schema) == 1, "the migrator waiting for the migration lock");
            await cancel.CancelAsync();

            var outcome = await Record.ExceptionAsync(() => migrating.WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.IsAssignableFrom<OperationCanceledException>(outcome);
        }
        finally
        {
            await using (var release = new NpgsqlCommand($"SELECT pg_advisory_unlock_all()", holder))
            {
                await release.ExecuteNonQueryAsync();
            }

            // The migration goes on once the lock is free: let it end before the schema is dropped.
            if (migrating is not null)
            {
                await Record.ExceptionAsync(() => migrating.Bounded());
            }

            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    /// <summary>
    /// A conditional append whose condition has no query is a caller's mistake, refused at the edge with an
    /// <see cref="ArgumentException"/> naming it, writing nothing, rather than failing under the append lock.
    /// </summary>
    [Fact]
    public async Task An_append_condition_without_a_query_is_refused_as_bad_input()
    {
        var schema = PostgresServer.NewSchema();
        try
        {
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema });
            var outcome = await Record.ExceptionAsync(() => store.AppendAsync(
                new AppendRequest(new StreamName("order-1"), ExpectedVersion.Any, [Event()], new AppendCondition(null!, null)), default).Bounded());
            Assert.IsAssignableFrom<ArgumentException>(outcome);
            Assert.Equal(0, (await store.GetHeadPositionAsync(default)).Value);
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    /// <summary>
    /// A tag query holding a null item is refused with an <see cref="ArgumentException"/> naming it, for a read by it
    /// and an append conditioned on it alike.
    /// </summary>
    [Fact]
    public async Task A_query_with_a_null_item_is_refused_as_bad_input()
    {
        var schema = PostgresServer.NewSchema();
        try
        {
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema });
            await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()]);
            var read = await Record.ExceptionAsync(async () =>
            {
                await foreach (var _ in store.ReadByQueryAsync(new EventQuery(EventQueryItem.WithTags("a"), null!), GlobalPosition.Start, long.MaxValue, default))
                {
                }
            });
            var append = await Record.ExceptionAsync(() => store.AppendAsync(
                new AppendRequest(new StreamName("order-1"), ExpectedVersion.Any, [Event()], new AppendCondition(new EventQuery(EventQueryItem.WithTags("a"), null!), null)), default).Bounded());

            Assert.IsAssignableFrom<ArgumentException>(read);
            Assert.IsAssignableFrom<ArgumentException>(append);
            Assert.Equal(1, (await store.GetHeadPositionAsync(default)).Value);
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    /// <summary>
    /// A statement that runs past the connection string's <c>Command Timeout</c> (here, waiting for the append lock a
    /// stuck session holds) leaves the connection open: Npgsql has the server cancel it, and nothing is written. The
    /// append is answered with the time-out after that one wait, not run again on a new connection (dropping a good
    /// one, clearing the pool) to wait a second full time-out.
    /// </summary>
    [Fact]
    public async Task An_append_timing_out_on_the_append_lock_waits_once_on_its_connection()
    {
        var schema = PostgresServer.NewSchema();
        try
        {
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString + ";Command Timeout=1", Schema = schema });
            await store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()]);

            await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
            await holder.OpenAsync();
            await using var transaction = await holder.BeginTransactionAsync();
            await using (var hold = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(schema)})", holder, transaction))
            {
                await hold.ExecuteNonQueryAsync();
            }

            var appending = store.AppendToStreamAsync("order-2", ExpectedVersion.Any, [Event()]);
            var waits = new HashSet<(int Pid, DateTime Since)>();
            await Wait.UntilAsync(
                async () =>
                {
                    waits.UnionWith(await AppendLockWaitsAsync(schema));
                    return appending.IsCompleted;
                },
                "the append answered");
            var outcome = await Record.ExceptionAsync(() => appending);

            // Answered with the time-out after one wait for the lock, on the writer's connection, which stays open. One
            // wait may be sampled with two start times a moment apart (the statistics' start of the batch's statement before
            // it, then its own); a second wait would start a whole time-out (1 s) after the first.
            Assert.NotNull(outcome);
            Assert.Single(waits.Select(w => w.Pid).Distinct());
            Assert.True(waits.Max(w => w.Since) - waits.Min(w => w.Since) < TimeSpan.FromSeconds(0.5), $"the append waited for the lock more than once: {string.Join(", ", waits)}");
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    /// <summary>The sessions waiting for the append lock of <paramref name="schema"/>, each with when its statement began.</summary>
    private static async Task<List<(int Pid, DateTime Since)>> AppendLockWaitsAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            """
            SELECT l.pid, a.query_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 2
            """,
            connection);
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)PostgresSchema.AppendLockClass });
        command.Parameters.Add(new NpgsqlParameter { Value = (long)(uint)PostgresSchema.SchemaKey(schema) });
        var waits = new List<(int, DateTime)>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            waits.Add((reader.GetInt32(0), reader.GetDateTime(1)));
        }

        return waits;
    }

    /// <summary>
    /// A page ends past 8 MB (docs/postgres.md), and a read holds at most two pages (bounded memory). An event's metadata
    /// counts towards its size limit (<see cref="EventStoreOptions.MaxEventSize"/>) as its data does, and towards the
    /// page's too: events that carry their bulk in metadata (here 160,000 characters each) do not fill pages by count
    /// alone, doubling to 8,192 events.
    /// </summary>
    [Fact]
    public async Task A_page_of_events_whose_bulk_is_metadata_is_cut_at_the_page_byte_cap()
    {
        var schema = PostgresServer.NewSchema();
        var logged = new System.Collections.Concurrent.ConcurrentQueue<string>();
        try
        {
            var metadata = new Dictionary<string, string> { ["blob"] = new string('m', 160_000) };
            await using (var writer = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema }))
            {
                for (var i = 0; i < 4; i++)
                {
                    await writer.AppendToStreamAsync("file-1", ExpectedVersion.Any, [.. Enumerable.Range(0, 50).Select(_ => new EventData(MessageId.New(), "file.stored", "{}"u8.ToArray()) { Metadata = metadata })]);
                }
            }

            using var logs = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(new QueueLoggerProvider(logged)));
            await using var reader = new PostgresEventStore(new PostgresEventStoreOptions
            {
                ConnectionString = PostgresServer.ConnectionString,
                Schema = schema,
                ConfigureDataSource = b => b.UseLoggerFactory(logs).EnableParameterLogging(),
            });
            var read = 0;
            await foreach (var e in reader.ReadStreamAsync("file-1", ReadDirection.Forwards, null, long.MaxValue, default))
            {
                read++;
            }

            // The LIMIT of each page's query, in order (Npgsql logs each command it executes with its parameters).
            var limits = logged
                .Where(l => l.StartsWith("Executing command", StringComparison.Ordinal) && l.Contains("ORDER BY e.version LIMIT", StringComparison.Ordinal))
                .Select(l => l[(l.IndexOf("Parameters: [", StringComparison.Ordinal) + "Parameters: [".Length)..])
                .Select(p => long.Parse(p[(p.LastIndexOf(',') + 1)..p.IndexOf(']', StringComparison.Ordinal)].Trim(), System.Globalization.CultureInfo.InvariantCulture))
                .ToList();

            Assert.Equal(200, read);
            Assert.Equal(64, limits[0]);

            // 64 events of 160 KB pass 8 MB: the first page ends early, and the next asks for as many as it held.
            Assert.True(limits[1] < 64, $"The pages asked for {string.Join(", ", limits)} events.");
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    private sealed class QueueLoggerProvider(System.Collections.Concurrent.ConcurrentQueue<string> lines) : Microsoft.Extensions.Logging.ILoggerProvider
    {
        public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => new Logger(lines);

        public void Dispose()
        {
        }

        private sealed class Logger(System.Collections.Concurrent.ConcurrentQueue<string> lines) : Microsoft.Extensions.Logging.ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

            public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue(formatter(state, exception));
        }
    }
}
