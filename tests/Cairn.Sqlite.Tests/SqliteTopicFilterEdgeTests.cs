using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;

namespace Cairn.Sqlite.Tests;

/// <summary>Topics and filter rules on SQLite at their edges (as tests/Cairn.Tests/Messaging/TopicFilterEdgeTests.cs on the in-memory broker).</summary>
public sealed class SqliteTopicFilterEdgeTests : IDisposable
{
    private readonly TempDatabase _database = new();
    private readonly ManualTimeProvider _clock = new();

    public void Dispose() => _database.Dispose();

    // A send accepts data holding an escaped half of a surrogate pair (valid JSON); its publish to a topic whose
    // subscription has a string rule is filtered inside the writer: "a publish that no rule matches ... enqueues nothing
    // and is not an error".
    [Fact]
    public async Task A_publish_whose_data_holds_an_unpaired_surrogate_is_filtered_not_failed()
    {
        using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString }, new EventStoreOptions { TimeProvider = _clock, Source = "urn:test" });
        var broker = new SqliteMessageBroker(store);
        await broker.DeclareTopicAsync("orders", default);
        await broker.DeclareQueueAsync(new QueueDefinition("copies"), default);
        await broker.DeclareQueueAsync(new QueueDefinition("direct"), default);
        await broker.SubscribeAsync(new TopicSubscription("orders", "sub", "copies", FilterRule.Parse("""{"data":{"s":[{"prefix":"a"}]}}""")), default);
        var message = new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("""{"s":"b\ud800"}"""));
        Assert.Equal(1, (await broker.SendAsync("direct", message)).MessagesEnqueued);

        var error = await Record.ExceptionAsync(() => broker.PublishAsync("orders", message with { Id = Cairn.Envelopes.MessageId.New() }));

        Assert.Null(error);
        Assert.Equal(0, (await broker.GetStatsAsync("copies", default))!.Visible);
    }
}
