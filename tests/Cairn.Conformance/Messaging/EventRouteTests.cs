using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Cairn.Messaging.Routing;

namespace Cairn.Conformance.Messaging;

/// <summary>From the log to the bus: routes that publish appended events, and replays of archived ones.</summary>
public abstract class EventRouteTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly TopicName Orders = "orders";
    private static readonly QueueName Billing = "billing";

    private async Task<IMessageBroker> ArrangeAsync(StoreUnderTest sut)
    {
        var broker = sut.Broker;
        await broker.DeclareTopicAsync(Orders, default);
        await broker.DeclareQueueAsync(new QueueDefinition(Billing) { Fifo = true }, default);
        await broker.SubscribeAsync(new TopicSubscription(Orders, "billing", Billing), default);
        return broker;
    }

    private EventRouter Router(StoreUnderTest sut, EventFilter? filter = null) =>
        new(sut.Store, sut.Broker, sut.Checkpoints, new EventRoute("orders-out", filter ?? EventFilter.ForCategory("order"), Orders) { BatchSize = 7 }, timeProvider: Clock);

    private static async Task<List<RecordedEvent>> AppendAsync(StoreUnderTest sut, string stream, int count, int first = 0)
    {
        await sut.Store.AppendToStreamAsync(new StreamName(stream), ExpectedVersion.Any, TestEvents.Many(count, first));
        return await sut.Store.ReadStreamAsync(new StreamName(stream)).ToListAsync();
    }

    [Fact]
    public async Task appended_events_of_a_category_are_published_once_in_log_order_with_their_ids()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut);
        await using var router = Router(sut);
        await router.StartAsync(default);
        var events = await AppendAsync(sut, "order-1", 20);
        await AppendAsync(sut, "customer-1", 5);
        await AppendAsync(sut, "order-2", 3, 100);
        var head = await sut.Store.GetHeadPositionAsync(default);
        await router.WaitForPositionAsync(head, default).Bounded();

        var received = new List<Message>();
        while (await ReceiveNowAsync(broker, Billing, max: 10) is { Count: > 0 } batch)
        {
            received.AddRange(batch.Select(d => d.Message));
            await broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }

        Assert.Equal(23, received.Count);
        var order1 = received.Where(m => m.Subject == "order-1").ToList();
        Assert.Equal(events.Select(e => e.Id), order1.Select(m => m.Id));
        Assert.Equal(Enumerable.Range(0, 20), order1.Select(NumberOf));
        Assert.All(received, m => Assert.Equal(m.Subject, m.GroupKey));
        Assert.Equal(head, await sut.Checkpoints.GetAsync("route:orders-out", default));
    }

    [Fact]
    public async Task events_appended_while_no_router_ran_are_relayed_when_one_starts_and_none_twice()
    {
        // Wolverine #565: outbox messages stranded after a crash were never relayed.
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut);
        await AppendAsync(sut, "order-1", 10);
        await using (var first = Router(sut))
        {
            await first.StartAsync(default);
            await first.WaitForPositionAsync(await sut.Store.GetHeadPositionAsync(default), default).Bounded();
        }

        // The process is gone; more is appended; a new one starts from the committed checkpoint.
        await AppendAsync(sut, "order-1", 5, 10);
        await using var second = Router(sut);
        await second.StartAsync(default);
        await second.WaitForPositionAsync(await sut.Store.GetHeadPositionAsync(default), default).Bounded();

        var numbers = new List<int>();
        while (await ReceiveNowAsync(broker, Billing, max: 1) is [var d])
        {
            numbers.Add(NumberOf(d.Message));
            await broker.AcknowledgeAsync(d.Lease);
        }

        Assert.Equal(Enumerable.Range(0, 15), numbers);
    }

    [Fact]
    public async Task an_event_a_subscribed_queue_refuses_holds_the_route_after_the_events_before_it_and_a_larger_limit_releases_it()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = sut.Broker;
        QueueName limited = "limited";
        await broker.DeclareTopicAsync(Orders, default);
        await broker.DeclareQueueAsync(new QueueDefinition(limited) { MaxMessageSize = 1024 }, default);
        await broker.SubscribeAsync(new TopicSubscription(Orders, "limited", limited), default);
        await AppendAsync(sut, "order-1", 3);
        var large = TestEvents.Json($$"""{"n":3,"pad":"{{new string('x', 2000)}}"}""");
        await sut.Store.AppendToStreamAsync(new StreamName("order-2"), ExpectedVersion.Any, [large]);
        var heldAt = await sut.Store.GetHeadPositionAsync(default);
        await AppendAsync(sut, "order-3", 2, 4);
        await using var router = Router(sut);
        await router.StartAsync(default);

        // Each failed attempt waits out a pause on the route's clock.
        await Wait.UntilAsync(() => { Clock.Advance(TimeSpan.FromSeconds(31)); return router.Status.HeldAt is not null; }, "the route is held at one event");
        var status = router.Status;
        Assert.Equal(heldAt, status.HeldAt);
        Assert.Equal(new GlobalPosition(heldAt.Value - 1), status.Position);
        Assert.Contains("MessageTooLargeException", status.LastError);
        Assert.True(status.Running);
        var before = await ReceiveNowAsync(broker, limited, max: 10);
        Assert.Equal([0, 1, 2], before.Select(d => NumberOf(d.Message)));
        await broker.AcknowledgeAsync([.. before.Select(d => d.Lease)], default);

        // An operator raises the queue's limit: the route goes on from the event it was held at.
        await broker.DeclareQueueAsync(new QueueDefinition(limited) { MaxMessageSize = 64 * 1024 }, default);
        var head = await sut.Store.GetHeadPositionAsync(default);
        await Wait.UntilAsync(() => { Clock.Advance(TimeSpan.FromSeconds(31)); return router.Position == head; }, "the route reaches the head");
        Assert.Null(router.Status.HeldAt);
        var after = await ReceiveNowAsync(broker, limited, max: 10);
        Assert.Equal([3, 4, 5], after.Select(d => NumberOf(d.Message)));
    }

    [Fact]
    public async Task a_route_by_event_type_publishes_only_those_types()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut);
        await using var router = Router(sut, EventFilter.ForEventTypes("order.paid"));
        await router.StartAsync(default);
        await sut.Store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [TestEvents.Json("{}", "order.placed"), TestEvents.Json("{}", "order.paid")]);
        await router.WaitForPositionAsync(await sut.Store.GetHeadPositionAsync(default), default).Bounded();
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Billing));
        Assert.Equal("order.paid", delivery.Message.Type);
    }

    [Fact]
    public async Task a_route_through_a_filter_rule_publishes_an_event_nested_as_deep_as_an_append_accepts()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut);
        await broker.DeclareQueueAsync(new QueueDefinition("typed"), default);
        await broker.SubscribeAsync(new TopicSubscription(Orders, "typed", "typed", FilterRule.Parse("""{"type":[{"prefix":"order."}]}""")), default);
        await using var router = Router(sut);
        await router.StartAsync(default);

        await sut.Store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.Any, [TestEvents.Json(new string('[', 64) + new string(']', 64), "order.deep")]);
        await sut.Store.AppendToStreamAsync(new StreamName("order-2"), ExpectedVersion.Any, [TestEvents.Json("{}", "order.placed")]);
        await router.WaitForPositionAsync(await sut.Store.GetHeadPositionAsync(default), default).Bounded();

        Assert.Equal(["order.deep", "order.placed"], (await ReceiveNowAsync(broker, "typed")).Select(d => d.Message.Type));
        Assert.Equal(0L, router.Status.Failures);
    }

    [Fact]
    public async Task a_replay_sends_the_events_of_a_time_range_that_pass_the_filter_and_rule()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition("replay"));
        await using var __ = sut;
        var start = Clock.GetUtcNow();
        await AppendAsync(sut, "order-1", 3);
        Clock.Advance(TimeSpan.FromHours(1));
        await AppendAsync(sut, "order-2", 3, 10);
        await AppendAsync(sut, "customer-1", 3, 20);
        Clock.Advance(TimeSpan.FromHours(1));
        await AppendAsync(sut, "order-3", 3, 30);

        var sent = await broker.ReplayAsync(sut.Store, new ReplayRequest("replay", start + TimeSpan.FromMinutes(30), start + TimeSpan.FromMinutes(90))
        {
            Filter = EventFilter.ForCategory("order"),
            Rule = FilterRule.Parse("""{"data":{"n":[{"numeric":[">",10]}]}}"""),
        });

        Assert.Equal(2, sent);
        Assert.Equal([11, 12], await DrainAsync(broker, "replay"));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ReplayAsync(sut.Store, new ReplayRequest("replay", start, start - TimeSpan.FromSeconds(1))));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.ReplayAsync(sut.Store, new ReplayRequest("missing", start, start + TimeSpan.FromDays(1))));
    }
}
