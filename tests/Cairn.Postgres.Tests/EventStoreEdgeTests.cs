using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The PostgreSQL event store at its edges: appends near PostgreSQL's message limit, values it cannot store,
/// cancellation while another process holds the append lock, a writer connection the server closed, large events.
/// </summary>
public sealed class EventStoreEdgeTests : OwnSchemaStoreTests
{
    private const long ParkKey = 7_340_099;

    private static EventData Event(string type = "test.appended") => new(MessageId.New(), type, "{}"u8.ToArray());

    /// <summary>
    /// An append PostgreSQL could not take in one protocol message (over 1 GB) is refused with
    /// <see cref="AppendTooLargeException"/>, writing nothing, also when its size is in its envelopes rather than its
    /// data (long sources, schemas, types and stream names on small events), and an unrelated small append queued beside
    /// it lands: PostgreSQL closing the writer's connection over the message would fail every append of the batch.
    /// </summary>
    [Fact]
    public async Task An_append_whose_envelopes_pass_the_limit_is_refused_and_the_append_beside_it_lands()
    {
        // Every text column of every row carries long values: about 18 KB of envelope per event, 1 byte of data.
        var wide = new string('\u4E2D', 2048);
        var narrow = new string('\u4E2D', 256);
        var events = Enumerable.Range(0, 64_000).Select(_ => new EventData(MessageId.New(), narrow, new byte[1])
        {
            ContentType = narrow,
            Source = wide,
            DataSchema = "https://x/" + wide[10..],
            CorrelationId = narrow,
            CausationId = narrow,
            TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }).ToList();

        await using var parker = new NpgsqlConnection(PostgresServer.ConnectionString);
        await parker.OpenAsync();
        await using (var park = new NpgsqlCommand($"SELECT pg_advisory_lock({ParkKey})", parker))
        {
            await park.ExecuteNonQueryAsync();
        }

        var parked = Store.WriteAsync(async context =>
        {
            await using var wait = context.Command($"SELECT pg_advisory_xact_lock({ParkKey})");
            await wait.ExecuteNonQueryAsync();
            return true;
        }, default);
        await Wait.UntilAsync(() => Store.Writer.Queued == 0, "the parked work taken");
        var big = Store.AppendToStreamAsync(new StreamName(narrow), ExpectedVersion.Any, events);
        var small = Store.AppendToStreamAsync("small-1", ExpectedVersion.NoStream, [Event()]);
        await Wait.UntilAsync(() => Store.Writer.Queued == (big.IsCompleted ? 1 : 2), "the appends queued");
        await using (var unpark = new NpgsqlCommand($"SELECT pg_advisory_unlock({ParkKey})", parker))
        {
            await unpark.ExecuteNonQueryAsync();
        }

        Assert.True(await parked);
        var smallOutcome = await Record.ExceptionAsync(() => small.Bounded());
        var bigOutcome = await Record.ExceptionAsync(() => big.WaitAsync(TimeSpan.FromMinutes(3)));

        Assert.Null(smallOutcome);
        Assert.IsType<AppendTooLargeException>(bigOutcome);
    }

    /// <summary>
    /// A filter naming an event type or category no event can have (a NUL, which PostgreSQL's text cannot hold) is
    /// refused when it is made, as a query item's type is: a read or subscription would otherwise fail with a raw
    /// database error, for ever.
    /// </summary>
    [Fact]
    public void A_filter_by_a_type_or_category_holding_a_nul_is_refused_when_made()
    {
        Assert.Throws<ArgumentException>(() => EventFilter.ForEventTypes("order\0placed"));
        Assert.Throws<ArgumentException>(() => EventFilter.All.WithEventTypes("order.placed", "order\0shipped"));
        Assert.Throws<ArgumentException>(() => EventFilter.ForCategory("ord\0er"));
    }

    /// <summary>
    /// A message context opened with an id no backend can store (a NUL, from a request's header, say) is refused when it
    /// is opened: every append and send under it would otherwise fail with a raw database error.
    /// </summary>
    [Fact]
    public async Task A_message_context_with_an_id_no_backend_stores_is_refused_when_opened()
    {
        Assert.Throws<ArgumentException>(() => MessageContext.Begin("request\0-1"));
        Assert.Throws<ArgumentException>(() => MessageContext.Begin("request-1", new string('c', 257)));

        using (MessageContext.Begin("request-1"))
        {
            await Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event()]);
        }

        Assert.Equal("request-1", (await Store.ReadStreamAsync("order-1", default).SingleAsync()).CorrelationId);
    }

    /// <summary>
    /// A schema name with a trailing new line (a setting read from a file or an environment variable) is refused, rather
    /// than opening (and creating) another, empty schema beside the one meant.
    /// </summary>
    // Refused when it is configured, saying which setting it is, and never printed: it may hold a password.
    [Theory]
    [InlineData("Host=localhost;Port=abc;Password=s3cret")]
    [InlineData("Host=localhost;Pooling=maybe;Password=s3cret")]
    [InlineData("Host=localhost;Colour=blue;Password=s3cret")]
    public void A_connection_string_npgsql_cannot_read_is_refused_naming_it(string connectionString)
    {
        var refused = Assert.Throws<ArgumentException>(() => new Cairn.DependencyInjection.CairnOptions().UsePostgres(connectionString));

        Assert.Equal(nameof(PostgresEventStoreOptions.ConnectionString), refused.ParamName);
        Assert.StartsWith("The PostgreSQL connection string is not valid", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_schema_name_with_a_trailing_newline_is_refused()
    {
        await Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()]);
        var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = Schema + "\n" };
        PostgresEventStore? opened = null;
        try
        {
            var refused = Record.Exception(() => opened = new PostgresEventStore(options));
            var seen = opened is null ? -1 : (await opened.GetHeadPositionAsync(default)).Value;
            Assert.True(refused is ArgumentException, $"The schema name with a newline was accepted: the store opened with a head of {seen}, where the schema '{Schema}' has 1 event.");
        }
        finally
        {
            if (opened is not null)
            {
                await opened.DisposeAsync();
            }

            await PostgresServer.ExecuteAsync($"DROP SCHEMA IF EXISTS \"{Schema}\n\" CASCADE");
        }
    }

    /// <summary>
    /// An append cancelled while it waits for the append lock another process holds (a long append, a messaging
    /// transaction, a projection's switch) ends at once with <see cref="OperationCanceledException"/> and writes
    /// nothing, rather than keeping its caller waiting for as long as the other process holds the lock.
    /// </summary>
    [Fact]
    public async Task A_cancelled_append_waiting_for_another_processs_append_lock_ends_at_once_writing_nothing()
    {
        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(Schema)})", holder))
        {
            await take.ExecuteNonQueryAsync();
        }

        using var cancel = new CancellationTokenSource();
        var append = Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()], cancel.Token);
        await Wait.UntilAsync(async () => await WaitersForAdvisoryLocksAsync() > 0, "the append waits for the append lock");

        await cancel.CancelAsync();
        var finished = await Task.WhenAny(append, Task.Delay(TimeSpan.FromSeconds(5))) == append;

        await using (var release = new NpgsqlCommand($"SELECT pg_advisory_unlock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(Schema)})", holder))
        {
            await release.ExecuteNonQueryAsync();
        }

        var outcome = await Record.ExceptionAsync(() => append.Bounded());
        Assert.True(finished, $"The cancelled append was still waiting 5 s after its cancellation; once the lock was released it ended with {(outcome is null ? "success: it was written" : outcome.GetType().Name)}.");
        Assert.IsAssignableFrom<OperationCanceledException>(outcome);
        Assert.Equal(0, (await Store.GetHeadPositionAsync(default)).Value);
    }

    /// <summary>
    /// Takes this schema's append lock on a connection of its own, as another process's long write would. Not pooled:
    /// disposing it ends the session, and the lock with it.
    /// </summary>
    private async Task<NpgsqlConnection> HoldAppendLockAsync()
    {
        var holder = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { Pooling = false }.ConnectionString);
        await holder.OpenAsync();
        await using var take = new NpgsqlCommand($"SELECT pg_advisory_lock({PostgresSchema.AppendLockClass}, {PostgresSchema.SchemaKey(Schema)})", holder);
        await take.ExecuteNonQueryAsync();
        return holder;
    }

    /// <summary>
    /// An append queued behind a batch that waits for another process's append lock, then cancelled, ends at once: it
    /// kept its caller waiting until the batch before it was done, however long the other process held the lock.
    /// </summary>
    [Fact]
    public async Task A_cancelled_append_queued_behind_a_batch_waiting_for_the_append_lock_ends_at_once()
    {
        var holder = await HoldAppendLockAsync();
        Task first;
        await using (holder)
        {
            first = Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()], default);
            await Wait.UntilAsync(async () => await PostgresServer.AppendLockWaitersAsync(Schema) == 1, "the first append waits for the append lock");
            using var cancel = new CancellationTokenSource();
            var queued = Store.AppendToStreamAsync("order-2", ExpectedVersion.Any, [Event()], cancel.Token);

            await cancel.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued.WaitAsync(TimeSpan.FromSeconds(5)));
            Assert.False(first.IsCompleted);
        }

        // The holder's session ended, and the lock with it: the first lands, the cancelled one never does.
        await first.Bounded();
        Assert.Equal(1, (await Store.GetHeadPositionAsync(default)).Value);
        Assert.Empty(await Store.ReadStreamAsync("order-2").ToListAsync());
    }

    /// <summary>
    /// Appends batched together, waiting for another process's append lock, end at once when every one of them is
    /// cancelled (a process shutting down): the batch's statements serve them all, and only then may be called off.
    /// They waited for as long as the other process held the lock.
    /// </summary>
    [Fact]
    public async Task Appends_batched_together_waiting_for_the_append_lock_end_at_once_when_all_are_cancelled()
    {
        var holder = await HoldAppendLockAsync();
        await using (holder)
        {
            using var cancelFirst = new CancellationTokenSource();
            var first = Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [Event()], cancelFirst.Token);
            await Wait.UntilAsync(async () => await PostgresServer.AppendLockWaitersAsync(Schema) == 1, "the first append waits for the append lock");

            // Two more queue behind it; once it is cancelled, the writer takes them as one batch.
            using var cancelSecond = new CancellationTokenSource();
            using var cancelThird = new CancellationTokenSource();
            var second = Store.AppendToStreamAsync("order-2", ExpectedVersion.Any, [Event()], cancelSecond.Token);
            var third = Store.AppendToStreamAsync("order-3", ExpectedVersion.Any, [Event()], cancelThird.Token);
            await cancelFirst.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.Bounded());
            await Wait.UntilAsync(async () => await PostgresServer.AppendLockWaitersAsync(Schema) == 1, "the two wait for the append lock together");

            await cancelSecond.CancelAsync();
            await cancelThird.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second.WaitAsync(TimeSpan.FromSeconds(5)));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => third.WaitAsync(TimeSpan.FromSeconds(5)));
        }

        await Store.AppendToStreamAsync("order-4", ExpectedVersion.Any, [Event()], default).Bounded();
        Assert.Equal(1, (await Store.GetHeadPositionAsync(default)).Value);
    }

    /// <summary>
    /// A server that closes idle sessions (<c>idle_session_timeout</c>, a proxy's idle timeout) closes the writer's
    /// connection too, which the writer keeps out of the pool's reach: the next append, once it sat idle, opens a new
    /// one and lands, rather than failing with "terminating connection due to idle-session timeout" though nothing of
    /// it was sent.
    /// </summary>
    [Fact]
    public async Task An_append_after_the_server_closed_the_idle_writer_connection_opens_a_new_one()
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString)
        {
            ApplicationName = "review-idle-" + Schema,
            Options = "-c idle_session_timeout=4000",
            ConnectionIdleLifetime = 1,
            ConnectionPruningInterval = 1,
        };
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = builder.ConnectionString, Schema = Schema });
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event()]);
        await Wait.UntilAsync(async () => await SessionsNamedAsync(builder.ApplicationName) == 0, "the server closed the idle sessions");

        Assert.Equal(1, (await store.GetHeadPositionAsync(default)).Value);
        var error = await Record.ExceptionAsync(() => store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), [Event()]));

        Assert.Null(error);
    }

    /// <summary>
    /// A session the server ends within a second of the writer's last batch (a fast restart, <c>pg_terminate_backend</c>,
    /// a proxy failing over), which no idle check covers: the next append runs again on a new connection (an append
    /// is recognised when it runs again), rather than failing with "terminating connection due to administrator
    /// command", an outcome its caller cannot know, though the server is up.
    /// </summary>
    [Fact]
    public async Task An_append_right_after_the_server_ended_the_writer_session_runs_again_on_a_new_connection()
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { ApplicationName = "ended-" + Schema };
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = builder.ConnectionString, Schema = Schema });
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [Event()]);
        Assert.True(await TerminateSessionsAsync(builder.ApplicationName) >= 1);

        var appended = await store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(0), [Event()]).Bounded();

        Assert.Equal(1, appended.NextExpectedVersion);
        Assert.Equal(2, await store.ReadStreamAsync("order-1").CountAsync());
    }

    /// <summary>Ends every server session of one application name, as a restart or a proxy would; the server stays up.</summary>
    internal static async Task<long> TerminateSessionsAsync(string applicationName)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var terminate = new NpgsqlCommand(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            connection);
        terminate.Parameters.Add(new NpgsqlParameter { Value = applicationName });
        return (long)(await terminate.ExecuteScalarAsync())!;
    }

    private static async Task<long> SessionsNamedAsync(string applicationName)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", connection);
        command.Parameters.Add(new NpgsqlParameter { Value = applicationName });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private static async Task<long> WaitersForAdvisoryLocksAsync()
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// Reading the first event of a stream of large events (documents, files) has the server send at most the first
    /// page's 64 events and the page read ahead of it: a page's byte cap stops what it keeps, not what the server sends
    /// (the rest of the query's rows are read and dropped), so a first page of 512 sent a stream of 200 events of
    /// 150 KB whole.
    /// </summary>
    [Fact]
    public async Task Reading_the_first_event_of_a_stream_of_large_events_transfers_at_most_the_first_page()
    {
        var blob = new byte[150_000];
        for (var i = 0; i < 5; i++)
        {
            await Store.AppendToStreamAsync("file-1", ExpectedVersion.Any, [.. Enumerable.Range(0, 40).Select(_ => new EventData(MessageId.New(), "file.stored", blob) { ContentType = "application/octet-stream" })]);
        }

        await using var proxy = new CountingProxy(PostgresServer.ConnectionString);
        await using var reader = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = proxy.ConnectionString, Schema = Schema });
        await reader.GetHeadPositionAsync(default);
        var before = proxy.BytesFromServer;

        var first = await reader.ReadStreamAsync("file-1", ReadDirection.Forwards, null, long.MaxValue, default).FirstAsync();

        var sent = proxy.BytesFromServer - before;
        Assert.Equal(0, first.Version);
        Assert.True(sent < 2 * 64 * 150_000 * 11 / 10, $"Reading the first event made the server send {sent:N0} bytes.");
    }

    /// <summary>A TCP proxy in front of the test server that counts the bytes the server sends.</summary>
    private sealed class CountingProxy : IAsyncDisposable
    {
        private readonly System.Net.Sockets.TcpListener _listener = new(System.Net.IPAddress.Loopback, 0);
        private readonly string _host;
        private readonly int _port;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<System.Net.Sockets.TcpClient> _clients = [];
        private readonly Task _accepting;
        private long _fromServer;

        public CountingProxy(string connectionString)
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString);
            _host = builder.Host!;
            _port = builder.Port;
            _listener.Start();
            builder.Host = "127.0.0.1";
            builder.Port = ((System.Net.IPEndPoint)_listener.LocalEndpoint).Port;
            ConnectionString = builder.ConnectionString;
            _accepting = AcceptAsync();
        }

        public string ConnectionString { get; }

        public long BytesFromServer => Interlocked.Read(ref _fromServer);

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    var server = new System.Net.Sockets.TcpClient();
                    await server.ConnectAsync(_host, _port, _stop.Token);
                    lock (_clients)
                    {
                        _clients.Add(client);
                        _clients.Add(server);
                    }

                    _ = CopyAsync(client.GetStream(), server.GetStream(), counted: false);
                    _ = CopyAsync(server.GetStream(), client.GetStream(), counted: true);
                }
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
            }
        }

        private async Task CopyAsync(System.Net.Sockets.NetworkStream from, System.Net.Sockets.NetworkStream to, bool counted)
        {
            var buffer = new byte[81920];
            try
            {
                int read;
                while ((read = await from.ReadAsync(buffer, _stop.Token)) > 0)
                {
                    if (counted)
                    {
                        Interlocked.Add(ref _fromServer, read);
                    }

                    await to.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
                }
            }
            catch (Exception)
            {
                // A side closed, or the proxy stopped.
            }
            finally
            {
                try
                {
                    to.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
                }
                catch (Exception)
                {
                    // Closed already.
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            lock (_clients)
            {
                foreach (var client in _clients)
                {
                    client.Dispose();
                }
            }

            _stop.Dispose();
        }
    }
}
