using System.Text;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;

namespace Cairn.Conformance.Messaging;

/// <summary>Topics: fan-out to subscribed queues, through filter rules on the envelope rendered as JSON.</summary>
public abstract class TopicTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly TopicName Orders = "orders";

    private static OutgoingMessage Order(int n, string country, decimal amount, string type = "order.placed") =>
        new(type, Encoding.UTF8.GetBytes($$"""{"n":{{n}},"country":"{{country}}","amount":{{amount}}}"""));

    private async Task<IMessageBroker> ArrangeAsync(StoreUnderTest sut, params (string Name, string? Rule)[] subscriptions)
    {
        var broker = sut.Broker;
        await broker.DeclareTopicAsync(Orders, default);
        foreach (var (name, rule) in subscriptions)
        {
            await broker.DeclareQueueAsync(name, default);
            await broker.SubscribeAsync(new TopicSubscription(Orders, name, name, rule is null ? null : FilterRule.Parse(rule)), default);
        }

        return broker;
    }

    [Fact]
    public async Task a_publish_fans_out_a_copy_to_every_subscription()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut, ("billing", null), ("shipping", null), ("audit", null));
        var message = Order(1, "NL", 10);
        var result = await broker.PublishAsync(Orders, message);
        Assert.Equal(3, result.MessagesEnqueued);
        foreach (var queue in new QueueName[] { "billing", "shipping", "audit" })
        {
            var delivery = Assert.Single(await ReceiveNowAsync(broker, queue));
            Assert.Equal(message.Id, delivery.Message.Id);
            await broker.AcknowledgeAsync(delivery.Lease);
        }
    }

    [Fact]
    public async Task rules_match_attributes_and_data_fields()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(
            sut,
            ("dutch", """{"data":{"country":["NL"]}}"""),
            ("big", """{"data":{"amount":[{"numeric":[">=",100]}]}}"""),
            ("cancellations", """{"type":["order.cancelled"]}"""),
            ("tenant-a", """{"tenant":[{"prefix":"a-"}]}"""),
            ("either", """{"$or":[{"data":{"country":["DE"]}},{"type":[{"suffix":".cancelled"}]}]}"""));

        await broker.PublishAsync(Orders, Order(1, "NL", 50));
        await broker.PublishAsync(Orders, Order(2, "DE", 150) with { Metadata = new Dictionary<string, string> { ["tenant"] = "a-1" } });
        await broker.PublishAsync(Orders, Order(3, "NL", 500, "order.cancelled"));

        Assert.Equal([1, 3], await DrainAsync(broker, "dutch"));
        Assert.Equal([2, 3], await DrainAsync(broker, "big"));
        Assert.Equal([3], await DrainAsync(broker, "cancellations"));
        Assert.Equal([2], await DrainAsync(broker, "tenant-a"));
        Assert.Equal([2, 3], await DrainAsync(broker, "either"));
    }

    [Fact]
    public async Task data_nested_as_deep_as_a_send_accepts_is_matched_by_rules_and_one_level_deeper_is_refused()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut, ("typed", """{"type":[{"prefix":"test."}]}"""));

        // 64 levels of arrays, as deep as System.Text.Json reads by default; the envelope around them is one more.
        var deep = new OutgoingMessage("test.deep", Encoding.UTF8.GetBytes(new string('[', 64) + new string(']', 64)));
        Assert.Equal(1, (await broker.PublishAsync(Orders, deep)).MessagesEnqueued);
        Assert.Equal(deep.Id, Assert.Single(await ReceiveNowAsync(broker, "typed")).Message.Id);

        var deeper = new OutgoingMessage("test.deep", Encoding.UTF8.GetBytes(new string('[', 65) + new string(']', 65)));
        await Assert.ThrowsAnyAsync<InvalidMessageException>(() => broker.PublishAsync(Orders, deeper));
    }

    [Fact]
    public async Task a_publish_that_no_rule_matches_enqueues_nothing()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut, ("dutch", """{"data":{"country":["NL"]}}"""));
        Assert.Equal(0, (await broker.PublishAsync(Orders, Order(1, "FR", 1))).MessagesEnqueued);
        Assert.Empty(await DrainAsync(broker, "dutch"));
    }

    [Fact]
    public async Task a_topic_without_subscriptions_accepts_a_publish()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut);
        Assert.Equal(0, (await broker.PublishAsync(Orders, Order(1, "FR", 1))).MessagesEnqueued);
    }

    [Fact]
    public async Task subscriptions_can_be_listed_replaced_and_removed()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut, ("billing", """{"type":["order.placed"]}"""));
        await broker.SubscribeAsync(new TopicSubscription(Orders, "billing", "billing", FilterRule.Parse("""{"type":["order.paid"]}""")), default);
        var listed = Assert.Single(await broker.ListSubscriptionsAsync(Orders, default));
        Assert.Equal("""{"type":["order.paid"]}""", listed.Rule!.ToString());

        await broker.PublishAsync(Orders, Order(1, "NL", 1));
        await broker.PublishAsync(Orders, Order(2, "NL", 1, "order.paid"));
        Assert.Equal([2], await DrainAsync(broker, "billing"));

        Assert.True(await broker.UnsubscribeAsync(Orders, "billing", default));
        Assert.False(await broker.UnsubscribeAsync(Orders, "billing", default));
        await broker.PublishAsync(Orders, Order(3, "NL", 1, "order.paid"));
        Assert.Empty(await DrainAsync(broker, "billing"));
    }

    [Fact]
    public async Task unknown_topics_and_queues_are_refused_by_name()
    {
        var (sut, broker) = await CreateBrokerAsync();
        await using var __ = sut;
        var topic = await Assert.ThrowsAsync<TopicNotFoundException>(() => broker.PublishAsync("nowhere", Order(1, "NL", 1)));
        Assert.Equal(new TopicName("nowhere"), topic.Topic);
        await Assert.ThrowsAsync<TopicNotFoundException>(() => broker.SubscribeAsync(new TopicSubscription("nowhere", "s", "q"), default));
        await Assert.ThrowsAsync<TopicNotFoundException>(() => broker.ListSubscriptionsAsync("nowhere", default));
        await broker.DeclareTopicAsync(Orders, default);
        var queue = await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.SubscribeAsync(new TopicSubscription(Orders, "s", "missing"), default));
        Assert.Equal(new QueueName("missing"), queue.Queue);
    }

    [Fact]
    public async Task a_malformed_rule_is_refused_with_the_path_of_the_fault_before_anything_is_stored()
    {
        var (sut, _) = await CreateBrokerAsync();
        await using var __ = sut;
        var broker = await ArrangeAsync(sut);
        var error = Assert.Throws<InvalidFilterRuleException>(() => FilterRule.Parse("""{"data":{"amount":[{"numeric":[">",1,"<"]}]}}"""));
        Assert.Contains("data.amount", error.Path, StringComparison.Ordinal);
        Assert.Empty(await broker.ListSubscriptionsAsync(Orders, default));
    }
}
