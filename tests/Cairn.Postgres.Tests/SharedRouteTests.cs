using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Routing;

namespace Cairn.Postgres.Tests;

/// <summary>A route hosted by several processes on one schema.</summary>
public sealed class SharedRouteTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<IAsyncDisposable> _opened = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _opened.Count - 1; i >= 0; i--)
        {
            await _opened[i].DisposeAsync();
        }

        await PostgresServer.DropSchemaAsync(_schema);
    }

    private (PostgresEventStore Store, PostgresMessageBroker Broker) OpenProcess()
    {
        var store = new PostgresEventStore(
            new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema, ExternalCommitPollInterval = TimeSpan.FromMilliseconds(200) },
            new EventStoreOptions { Source = "urn:test" });
        var broker = new PostgresMessageBroker(store);
        _opened.Add(store);
        _opened.Add(broker);
        return (store, broker);
    }

    // Every process of a scaled-out application hosts the route on one schema: each event reaches the topic's queue
    // once. A batch's commit expects the checkpoint where its router last saw it (locked in the commit), and the router
    // that finds it moved goes on from there.
    [Fact]
    public async Task A_route_hosted_by_two_processes_on_one_schema_publishes_every_event_once()
    {
        TopicName orders = "orders";
        QueueName billing = "billing";
        var first = OpenProcess();
        var second = OpenProcess();
        await first.Broker.DeclareTopicAsync(orders, default);
        await first.Broker.DeclareQueueAsync(new QueueDefinition(billing), default);
        await first.Broker.SubscribeAsync(new TopicSubscription(orders, "billing", billing), default);
        var route = new EventRoute("orders-out", EventFilter.ForCategory("order"), orders);
        await using var routerOfFirst = new EventRouter(first.Store, first.Broker, new PostgresCheckpointStore(first.Store), route);
        await using var routerOfSecond = new EventRouter(second.Store, second.Broker, new PostgresCheckpointStore(second.Store), route);
        await routerOfFirst.StartAsync(default);
        await routerOfSecond.StartAsync(default);

        await first.Store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, TestEvents.Many(10), default);
        var head = await first.Store.GetHeadPositionAsync(default);
        await routerOfFirst.WaitForPositionAsync(head, default).Bounded();
        await routerOfSecond.WaitForPositionAsync(head, default).Bounded();

        var received = 0;
        while (await first.Broker.ReceiveAsync(billing, new ReceiveOptions { MaxMessages = 100 }, default) is { Count: > 0 } batch)
        {
            received += batch.Count;
            await first.Broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }

        Assert.Equal(10, received);
    }
}
