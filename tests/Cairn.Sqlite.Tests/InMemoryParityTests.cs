using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Projections.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// The in-memory backend answers as SQLite does where the conformance suite does not reach (an application tests on
/// the one and runs on the other): each scenario runs on both, with the clock set back, cancelled tokens on reads that
/// find nothing, and a purge naming an id twice.
/// </summary>
public sealed class InMemoryParityTests : IDisposable
{
    private static readonly DateTimeOffset Noon = new(2025, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    /// <summary>A clock that can be set anywhere, back included (an NTP step, a restored VM).</summary>
    private sealed class SettableClock(DateTimeOffset start) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = start;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    private SqliteEventStore OpenSqlite(TimeProvider clock) =>
        new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString }, new EventStoreOptions { TimeProvider = clock, Source = "urn:test" });

    private static InMemoryEventStore OpenMemory(TimeProvider clock) =>
        new(new EventStoreOptions { TimeProvider = clock, Source = "urn:test" });

    private static OutgoingMessage Json(string json) => new("test.message", Encoding.UTF8.GetBytes(json));

    private static Task<IReadOnlyList<Delivery>> ReceiveNowAsync(IMessageBroker broker, QueueName queue, TimeSpan? lease = null) =>
        broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 10, Lease = lease }, default);

    /// <summary>
    /// After the clock is set back (an NTP step), a message sent with a 10 s delay is receivable 20 s later: messaging
    /// counts from the clock as each transaction begins, not from a later time it used before, which would keep the
    /// message back until the clock caught up an hour later.
    /// </summary>
    [Fact]
    public async Task After_the_clock_is_set_back_a_delayed_message_falls_due_after_its_delay_on_both_backends()
    {
        static async Task<int> ScenarioAsync(IMessageBroker broker, SettableClock clock)
        {
            await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);
            await broker.SendAsync("jobs", Json("""{"n":1}"""));
            var first = Assert.Single(await ReceiveNowAsync(broker, "jobs"));
            await broker.AcknowledgeAsync([first.Lease], default);

            clock.Now = Noon;   // set back an hour
            await broker.SendAsync("jobs", Json("""{"n":2}""") with { Delay = TimeSpan.FromSeconds(10) });
            clock.Now = Noon + TimeSpan.FromSeconds(20);
            return (await ReceiveNowAsync(broker, "jobs")).Count;
        }

        var sqliteClock = new SettableClock(Noon.AddHours(1));
        int sqlite;
        using (var store = OpenSqlite(sqliteClock))
        {
            sqlite = await ScenarioAsync(new SqliteMessageBroker(store), sqliteClock);
        }

        var memoryClock = new SettableClock(Noon.AddHours(1));
        var memoryStore = OpenMemory(memoryClock);
        var memory = await ScenarioAsync(new InMemoryMessageBroker(memoryStore, new InMemoryCheckpointStore()), memoryClock);

        Assert.Equal(1, sqlite);
        Assert.True(memory == sqlite, $"in-memory received {memory} message(s) 20 s after a 10 s delay began; SQLite received {sqlite}");
    }

    /// <summary>
    /// The same for a lease: after the clock is set back, a 10 s lease has run out 20 s later and the message is
    /// delivered again (not leased until an hour and 10 s later).
    /// </summary>
    [Fact]
    public async Task After_the_clock_is_set_back_a_lease_runs_out_after_its_duration_on_both_backends()
    {
        static async Task<(int Redelivered, DateTimeOffset LeaseEnds)> ScenarioAsync(IMessageBroker broker, SettableClock clock)
        {
            await broker.DeclareQueueAsync(new QueueDefinition("jobs"), default);
            await broker.SendAsync("jobs", Json("""{"n":1}"""));
            var first = Assert.Single(await ReceiveNowAsync(broker, "jobs"));
            await broker.AcknowledgeAsync([first.Lease], default);

            clock.Now = Noon;   // set back an hour
            await broker.SendAsync("jobs", Json("""{"n":2}"""));
            var leased = Assert.Single(await ReceiveNowAsync(broker, "jobs", TimeSpan.FromSeconds(10)));
            clock.Now = Noon + TimeSpan.FromSeconds(20);
            return ((await ReceiveNowAsync(broker, "jobs", TimeSpan.FromSeconds(10))).Count, leased.LeaseExpiresAt);
        }

        var sqliteClock = new SettableClock(Noon.AddHours(1));
        (int Redelivered, DateTimeOffset LeaseEnds) sqlite;
        using (var store = OpenSqlite(sqliteClock))
        {
            sqlite = await ScenarioAsync(new SqliteMessageBroker(store), sqliteClock);
        }

        var memoryClock = new SettableClock(Noon.AddHours(1));
        var memory = await ScenarioAsync(new InMemoryMessageBroker(OpenMemory(memoryClock), new InMemoryCheckpointStore()), memoryClock);

        Assert.Equal((1, Noon.AddSeconds(10)), sqlite);
        Assert.Equal(sqlite, memory);
    }

    /// <summary>
    /// Every read refuses a cancelled token at once with <see cref="OperationCanceledException"/>, whatever there is to
    /// read: an empty store, a missing stream, the head, a stream's info.
    /// </summary>
    [Fact]
    public async Task Reads_with_a_cancelled_token_throw_on_both_backends()
    {
        static async Task<List<string>> ScenarioAsync(IEventStore store)
        {
            using var cancel = new CancellationTokenSource();
            await cancel.CancelAsync();
            var answered = new List<string>();
            async Task TryAsync(string name, Func<Task> read)
            {
                try
                {
                    await read();
                    answered.Add(name);
                }
                catch (OperationCanceledException)
                {
                }
            }

            await TryAsync("GetHeadPositionAsync", async () => await store.GetHeadPositionAsync(cancel.Token));
            await TryAsync("GetStreamInfoAsync", async () => await store.GetStreamInfoAsync("order-1", cancel.Token));
            await TryAsync("ReadStreamAsync", async () => await store.ReadStreamAsync("order-1", ReadDirection.Forwards, null, long.MaxValue, cancel.Token).ToListAsync());
            await TryAsync("ReadAllAsync", async () => await store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, cancel.Token).ToListAsync());
            return answered;
        }

        List<string> sqlite;
        using (var store = OpenSqlite(TimeProvider.System))
        {
            sqlite = await ScenarioAsync(store);
        }

        var memory = await ScenarioAsync(new InMemoryEventStore());

        Assert.Empty(sqlite);
        Assert.True(memory.Count == 0, $"in-memory answered despite a cancelled token: {string.Join(", ", memory)}");
    }

    /// <summary>
    /// The projection store's dead-letter listing refuses a cancelled token with <see cref="OperationCanceledException"/>.
    /// </summary>
    [Fact]
    public async Task A_projection_dead_letter_listing_with_a_cancelled_token_throws_on_both_backends()
    {
        using var cancel = new CancellationTokenSource();
        await cancel.CancelAsync();

        Exception? sqlite;
        using (var store = OpenSqlite(TimeProvider.System))
        {
            sqlite = await Record.ExceptionAsync(() => new SqliteProjectionStore(store).ListDeadLettersAsync("orders", 10, cancel.Token));
        }

        var memory = await Record.ExceptionAsync(() => new InMemoryProjectionStore(new InMemoryEventStore()).ListDeadLettersAsync("orders", 10, cancel.Token));

        Assert.IsAssignableFrom<OperationCanceledException>(sqlite);
        Assert.IsAssignableFrom<OperationCanceledException>(memory);
    }

    /// <summary>
    /// A message id sent twice (a producer's retry) and dead-lettered twice; a purge naming the id twice takes the ids
    /// distinct and purges one dead letter, and says so.
    /// </summary>
    [Fact]
    public async Task Purging_with_a_repeated_id_purges_as_many_dead_letters_on_both_backends()
    {
        static async Task<(int Purged, int Left)> ScenarioAsync(IMessageBroker broker)
        {
            await broker.DeclareQueueAsync(new QueueDefinition("q"), default);
            var message = Json("""{"n":1}""") with { Id = MessageId.New() };
            await broker.SendAsync("q", message);
            await broker.SendAsync("q", message);
            foreach (var delivery in await ReceiveNowAsync(broker, "q"))
            {
                await broker.DeadLetterAsync(delivery.Lease, "poison", null, default);
            }

            var purged = await broker.PurgeDeadLettersAsync("q", [message.Id, message.Id], default);
            return (purged, (await broker.ListDeadLettersAsync("q", 0, 100, default)).Count);
        }

        (int Purged, int Left) sqlite;
        using (var store = OpenSqlite(TimeProvider.System))
        {
            sqlite = await ScenarioAsync(new SqliteMessageBroker(store));
        }

        var memory = await ScenarioAsync(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));

        Assert.Equal((1, 1), sqlite);
        Assert.Equal(sqlite, memory);
    }
}
