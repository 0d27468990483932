using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Routing;

namespace Cairn.Sqlite.Tests;

/// <summary>A route hosted by several processes on one file.</summary>
public sealed class SharedRouteTests
{
    private static readonly TopicName Orders = "orders";
    private static readonly QueueName Billing = "billing";

    // The same application run twice on one file, each hosting the route: each event reaches the topic's queue once.
    // A batch's commit expects the checkpoint where its router last saw it; the router that finds it moved goes on from
    // there rather than publishing the events again.
    [Fact]
    public async Task A_route_hosted_by_two_processes_on_one_file_publishes_every_event_once()
    {
        using var database = new TempDatabase();
        using var first = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        using var second = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = database.ConnectionString });
        var broker = new SqliteMessageBroker(first);
        await broker.DeclareTopicAsync(Orders, default);
        await broker.DeclareQueueAsync(new QueueDefinition(Billing), default);
        await broker.SubscribeAsync(new TopicSubscription(Orders, "billing", Billing), default);
        var route = new EventRoute("orders-out", EventFilter.ForCategory("order"), Orders);
        await using var routerOfFirst = new EventRouter(first, broker, new SqliteCheckpointStore(first), route);
        await using var routerOfSecond = new EventRouter(second, new SqliteMessageBroker(second), new SqliteCheckpointStore(second), route);
        await routerOfFirst.StartAsync(default);
        await routerOfSecond.StartAsync(default);

        await first.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, TestEvents.Many(10), default);
        var head = await first.GetHeadPositionAsync(default);
        await routerOfFirst.WaitForPositionAsync(head, default).Bounded();
        await routerOfSecond.WaitForPositionAsync(head, default).Bounded();

        var received = new List<Message>();
        while (await broker.ReceiveAsync(Billing, new ReceiveOptions { MaxMessages = 100 }, default) is { Count: > 0 } batch)
        {
            received.AddRange(batch.Select(d => d.Message));
            await broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }

        Assert.Equal(10, received.Count);
    }
}
