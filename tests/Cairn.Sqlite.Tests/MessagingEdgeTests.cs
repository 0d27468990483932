using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// SQLite messaging at its edges: metadata counted against a queue's size limit in bytes, settlement calls given a lease
/// token or redrive target that names no queue, and a dead letter whose stored envelope is cut short.
/// </summary>
public sealed class MessagingEdgeTests : IDisposable
{
    private readonly TempDatabase _database = new();
    private readonly ManualTimeProvider _clock = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore OpenSqlite() =>
        new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString }, new EventStoreOptions { TimeProvider = _clock, Source = "urn:test" });

    private static OutgoingMessage Json(string json, string type = "test.message") => new(type, Encoding.UTF8.GetBytes(json));

    private static Task<IReadOnlyList<Delivery>> ReceiveNowAsync(IMessageBroker broker, QueueName queue, int max = 10) =>
        broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = max }, default);

    /// <summary>
    /// A queue's <c>MaxMessageSize</c> is in bytes of data and metadata: metadata was counted in UTF-16 characters, so
    /// non-ASCII metadata passed a limit its bytes break.
    /// </summary>
    [Fact]
    public async Task Metadata_counts_against_the_size_limit_in_bytes()
    {
        using var store = OpenSqlite();
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("small") { MaxMessageSize = 16 }, default);

        // 2 bytes of data, 1 byte of key, 5 × 3 = 15 bytes of value: 18 bytes, over 16.
        var message = Json("{}") with { Metadata = new Dictionary<string, string> { ["k"] = "€€€€€" } };

        await Assert.ThrowsAsync<MessageTooLargeException>(() => broker.SendAsync("small", message));
    }

    /// <summary>
    /// A default lease token (no queue) is refused by a commit with <see cref="InvalidMessageException"/>; the direct
    /// settlement calls failed inside the writer with an <see cref="ArgumentNullException"/> from its cache of queues.
    /// </summary>
    [Fact]
    public async Task A_lease_token_without_a_queue_is_refused_with_a_messaging_error_by_the_settlement_calls()
    {
        using var store = OpenSqlite();
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);

        var acknowledge = await Record.ExceptionAsync(() => broker.AcknowledgeAsync([default(LeaseToken)], default));
        var release = await Record.ExceptionAsync(() => broker.ReleaseAsync(default, TimeSpan.Zero, null, default));
        var extend = await Record.ExceptionAsync(() => broker.ExtendLeaseAsync(default, TimeSpan.FromSeconds(1), default));

        // A redrive whose target is a default name is refused as a missing name, on every backend.
        var redrive = await Record.ExceptionAsync(() => broker.RedriveAsync("work", new RedriveRequest { Target = default(QueueName) }, default));

        Assert.IsAssignableFrom<CairnException>(acknowledge);
        Assert.IsAssignableFrom<CairnException>(release);
        Assert.IsAssignableFrom<CairnException>(extend);
        Assert.Equal("queue", Assert.IsType<InvalidMessagingNameException>(redrive).Kind);
    }

    /// <summary>
    /// A message whose stored envelope cannot be read is dead-lettered when a receive meets it and listed under the type
    /// <c>cairn.unreadable</c> (docs/messaging.md). One cut short (the right format byte, then too few) was dead-lettered,
    /// but its listing threw, and hid every dead letter of the queue.
    /// </summary>
    [Fact]
    public async Task A_dead_letter_with_a_truncated_envelope_is_listed_as_unreadable()
    {
        using var store = OpenSqlite();
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("q"), default);
        await broker.SendBatchAsync("q", [Json("""{"n":1}"""), Json("""{"n":2}""")]);
        _database.Execute("UPDATE cairn_messages SET envelope = x'0100' WHERE seq = (SELECT min(seq) FROM cairn_messages)");

        var delivery = Assert.Single(await ReceiveNowAsync(broker, "q"));
        Assert.Equal("""{"n":2}""", Encoding.UTF8.GetString(delivery.Message.Data.Span));
        Assert.Equal(1, (await broker.GetStatsAsync("q", default)).DeadLettered);

        var letter = Assert.Single(await broker.ListDeadLettersAsync("q", 0, 10, default));
        Assert.Equal(SqliteMessageBroker.UnreadableType, letter.Message.Type);
    }
}
