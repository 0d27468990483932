using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Subscriptions;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Every append notifies the schema's append channel as it commits, so the live readers of another process wake at
/// once. The readers here poll once an hour: only a notification can wake them within the test's patience.
/// </summary>
public sealed class AppendNotificationTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private PostgresEventStore _writer = null!;
    private PostgresEventStore _reader = null!;

    public Task InitializeAsync()
    {
        _writer = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        _reader = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema, ExternalCommitPollInterval = TimeSpan.FromHours(1) });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _reader.DisposeAsync();
        await _writer.DisposeAsync();
        await PostgresServer.DropSchemaAsync(_schema);
    }

    private static EventData Event(string type = "order.placed") => new(Envelopes.MessageId.New(), type, "{}"u8.ToArray());

    /// <summary>Waits, as a live reader does, until the head passes <paramref name="position"/>.</summary>
    private Task WaitPastAsync(GlobalPosition position) => _reader.WaitForAppendAsync(position, default).Bounded();

    [Fact]
    public async Task a_plain_append_in_one_process_wakes_a_waiting_reader_of_another()
    {
        var first = await _writer.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [Event()]);
        await WaitPastAsync(GlobalPosition.Start);
        await _reader.AppendListener!.WhenListeningAsync().Bounded();

        var waiting = WaitPastAsync(first.LastPosition);
        Assert.False(waiting.IsCompleted);
        await _writer.AppendToStreamAsync(new StreamName("order-2"), ExpectedVersion.NoStream, [Event(), Event()]);
        await waiting;
    }

    [Fact]
    public async Task a_conditional_append_which_takes_the_locked_way_wakes_a_waiting_reader_of_another()
    {
        _reader.AppendListener!.Start();
        await _reader.AppendListener!.WhenListeningAsync().Bounded();

        var waiting = WaitPastAsync(GlobalPosition.Start);
        Assert.False(waiting.IsCompleted);
        var condition = new AppendCondition(new EventQuery(EventQueryItem.OfTypes("order.cancelled")), null);
        await _writer.AppendAsync(new AppendRequest(new StreamName("order-3"), ExpectedVersion.NoStream, [Event()], condition), default);
        await waiting;
    }

    /// <summary>
    /// A listener whose connection cannot be set up (the application's <c>ConfigureDataSource</c> fails for it) says so
    /// in the log, once, and a waiting reader still finds the append by polling.
    /// </summary>
    [Fact]
    public async Task a_listener_that_cannot_be_set_up_is_logged_and_readers_fall_back_to_polling()
    {
        var built = 0;
        var logger = new RecordingLogger<PostgresEventStore>();
        await using var reader = new PostgresEventStore(
            new PostgresEventStoreOptions
            {
                ConnectionString = PostgresServer.ConnectionString,
                Schema = _schema,
                ExternalCommitPollInterval = TimeSpan.FromMilliseconds(100),
                // The store's own data source first, then the listener's.
                ConfigureDataSource = _ => { if (Interlocked.Increment(ref built) > 1) throw new InvalidOperationException("no secret for a second source"); },
            },
            logger: logger);

        var waiting = reader.WaitForAppendAsync(GlobalPosition.Start, default);
        await _writer.AppendToStreamAsync(new StreamName("order-5"), ExpectedVersion.NoStream, [Event()]);
        await waiting.Bounded();

        await Wait.UntilAsync(() => logger.Entries.Any(e => e.Level == Microsoft.Extensions.Logging.LogLevel.Error && e.Exception is InvalidOperationException), "the failed listener is logged");
        Assert.Single(logger.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Error);
    }

    [Fact]
    public async Task a_live_subscription_of_another_process_handles_an_append_at_once()
    {
        var handled = new TaskCompletionSource<RecordedEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = new CatchUpSubscription(_reader, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "audit" }, (e, _) =>
        {
            handled.TrySetResult(e);
            return ValueTask.CompletedTask;
        });
        await subscription.StartAsync(default);
        await Wait.UntilAsync(() => subscription.Status.State == SubscriptionState.Live, "the subscription is live");
        await _reader.AppendListener!.WhenListeningAsync().Bounded();

        var appended = await _writer.AppendToStreamAsync(new StreamName("order-4"), ExpectedVersion.NoStream, [Event()]);
        Assert.Equal(appended.LastPosition, (await handled.Task.Bounded()).Position);
        await subscription.StopAsync(default);
    }

    [Fact]
    public async Task after_its_connection_is_killed_the_listener_reconnects_and_wakes_readers_again()
    {
        _reader.AppendListener!.Start();
        await _reader.AppendListener!.WhenListeningAsync().Bounded();
        var killed = _reader.AppendListener!.ProcessId;
        await using (var connection = new NpgsqlConnection(PostgresServer.ConnectionString))
        {
            await connection.OpenAsync();
            await using var terminate = new NpgsqlCommand("SELECT pg_terminate_backend($1)", connection);
            terminate.Parameters.Add(new NpgsqlParameter { Value = killed });
            Assert.True((bool)(await terminate.ExecuteScalarAsync())!);
        }

        await Wait.UntilAsync(() => _reader.AppendListener!.Connections == 2, "the listener reconnects");
        await _reader.AppendListener!.WhenListeningAsync().Bounded();
        Assert.NotEqual(killed, _reader.AppendListener!.ProcessId);

        var waiting = WaitPastAsync(GlobalPosition.Start);
        Assert.False(waiting.IsCompleted);
        await _writer.AppendToStreamAsync(new StreamName("order-5"), ExpectedVersion.NoStream, [Event()]);
        await waiting;
    }

    [Fact]
    public async Task with_notifications_off_an_append_notifies_nothing_and_readers_wait_for_their_poll()
    {
        var schema = PostgresServer.NewSchema();
        try
        {
            await using var quiet = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema, NotifyAppends = false });
            await using var listening = new NpgsqlConnection(PostgresServer.ConnectionString);
            await listening.OpenAsync();
            var notified = 0;
            listening.Notification += (_, _) => Interlocked.Increment(ref notified);
            await using (var listen = new NpgsqlCommand($"LISTEN \"{quiet.AppendChannel}\"", listening))
            {
                await listen.ExecuteNonQueryAsync();
            }

            await quiet.AppendToStreamAsync(new StreamName("order-6"), ExpectedVersion.NoStream, [Event()]);
            await quiet.AppendAsync(new AppendRequest(new StreamName("order-7"), ExpectedVersion.NoStream, [Event()], new AppendCondition(new EventQuery(EventQueryItem.OfTypes("order.cancelled")), null)), default);

            // A notification of a committed transaction is delivered before the next statement's answer.
            await using (var ping = new NpgsqlCommand("SELECT 1", listening))
            {
                await ping.ExecuteNonQueryAsync();
            }

            Assert.Equal(0, notified);
            var wait = quiet.WaitForAppendAsync(new GlobalPosition(2), default);
            Assert.Null(quiet.AppendListener);
            Assert.False(wait.IsCompleted);
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }
}
