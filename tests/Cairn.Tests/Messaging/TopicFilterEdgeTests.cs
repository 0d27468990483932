using System.Text;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Filtering;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>
/// Topics, fan-out and filter rules at their edges: text a rule cannot hold, values a string test cannot read, refusals
/// through the task, and numbers compared exactly where a decimal holds them.
/// </summary>
public sealed class TopicFilterEdgeTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static async Task<InMemoryMessageBroker> BrokerWithSubscriptionAsync(string? rule)
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareTopicAsync("orders", default);
        await broker.DeclareQueueAsync(new QueueDefinition("copies"), default);
        await broker.SubscribeAsync(new TopicSubscription("orders", "sub", "copies", rule is null ? null : FilterRule.Parse(rule)), default);
        return broker;
    }

    // "FilterRule.Parse ... refuses a malformed one with InvalidFilterRuleException, whose Path says where": a rule
    // holding an escaped half of a surrogate pair is valid JSON text, but no text.
    [Fact]
    public void a_rule_value_with_an_unpaired_surrogate_is_refused_with_a_typed_error_and_its_path()
    {
        var error = Record.Exception(() => FilterRule.Parse("""{"a":["\ud800"]}"""));

        var refused = Assert.IsType<InvalidFilterRuleException>(error);
        Assert.Equal("$.a[0]", refused.Path);
    }

    [Fact]
    public void a_rule_operator_with_an_unpaired_surrogate_is_refused_with_a_typed_error_and_its_path()
    {
        var error = Record.Exception(() => FilterRule.Parse("""{"a":[{"prefix":"\udc00"}]}"""));

        var refused = Assert.IsType<InvalidFilterRuleException>(error);
        Assert.Equal("$.a[0].prefix", refused.Path);
    }

    [Fact]
    public void a_rule_field_name_with_an_unpaired_surrogate_is_refused_with_a_typed_error()
    {
        var error = Record.Exception(() => FilterRule.Parse("""{"\ud800":["x"]}"""));

        Assert.IsType<InvalidFilterRuleException>(error);
    }

    // A send accepts data holding an escaped half of a surrogate pair (it is valid JSON): a compiled rule answers yes or
    // no for any message a send accepts, never throws.
    [Theory]
    [InlineData("""{"data":{"s":[{"prefix":"a"}]}}""")]
    [InlineData("""{"data":{"s":[{"suffix":"a"}]}}""")]
    [InlineData("""{"data":{"s":[{"equals-ignore-case":"a"}]}}""")]
    [InlineData("""{"data":{"s":[{"wildcard":"a*"}]}}""")]
    [InlineData("""{"data":{"s":[{"anything-but":{"prefix":"a"}}]}}""")]
    [InlineData("""{"data":{"s":[{"cidr":"10.0.0.0/8"}]}}""")]
    public void a_string_operator_answers_for_a_value_with_an_unpaired_surrogate_instead_of_throwing(string rule)
    {
        var compiled = FilterRule.Parse(rule);
        using var document = JsonDocument.Parse("""{"data":{"s":"b\ud800"}}""");

        var error = Record.Exception(() => compiled.Matches(document.RootElement));

        Assert.Null(error);
    }

    // The same at the broker: "a publish that no rule matches ... enqueues nothing and is not an error", so a route
    // publishing such an event is never held at it.
    [Fact]
    public async Task a_publish_whose_data_holds_an_unpaired_surrogate_is_filtered_not_failed()
    {
        var broker = await BrokerWithSubscriptionAsync("""{"data":{"s":[{"prefix":"a"}]}}""");
        var message = new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("""{"s":"b\ud800"}"""));
        await broker.DeclareQueueAsync(new QueueDefinition("direct"), default);
        var sent = await broker.SendAsync("direct", message).WaitAsync(Bound);
        Assert.Equal(1, sent.MessagesEnqueued);

        var error = await Record.ExceptionAsync(() => broker.PublishAsync("orders", message with { Id = MessageId.New() }).WaitAsync(Bound));

        Assert.Null(error);
        Assert.Equal(0, (await broker.GetStatsAsync("copies", default))!.Visible);
    }

    // "For every call of the ... message broker, a refusal (bad input ...) comes through the returned task, never
    // thrown by the call itself" (docs/event-store.md), the shorthands that build a transaction included.
    [Fact]
    public async Task the_shorthands_refuse_a_null_message_through_the_task()
    {
        var broker = await BrokerWithSubscriptionAsync(null);

        await ThroughTask.RefusedAsync<ArgumentNullException>(() => broker.PublishAsync("orders", null!));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => broker.SendAsync("copies", null!));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => broker.SendBatchAsync("copies", [new OutgoingMessage("a", "{}"u8.ToArray()), null!]));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => broker.SendBatchAsync("copies", null!));
        await ThroughTask.RefusedAsync<ArgumentNullException>(() => ((IMessageSender)null!).SendAsync("copies", new OutgoingMessage("a", "{}"u8.ToArray())));
        Assert.Equal(0, (await broker.GetStatsAsync("copies", default))!.Visible);
    }

    // "Numbers compare as numbers ..., exactly when both hold at most 28 significant digits and need at most 28 places
    // after the point" (docs/messaging.md): numbers that doubles cannot tell apart, at 28 places, in exact values,
    // numeric bounds and anything-but alike; and 1e-20, whose 20 places a decimal holds, is exact too.
    [Theory]
    [InlineData("""{"n":[{"numeric":[">",0.0000012345678901234567890122]}]}""", """{"n":0.0000012345678901234567890123}""", true)]
    [InlineData("""{"n":[0.0000012345678901234567890122]}""", """{"n":0.0000012345678901234567890123}""", false)]
    [InlineData("""{"n":[{"anything-but":[0.0000012345678901234567890122]}]}""", """{"n":0.0000012345678901234567890123}""", true)]
    [InlineData("""{"n":[1e-20]}""", """{"n":0.00000000000000000001}""", true)]
    [InlineData("""{"n":[{"numeric":["<",1e-20]}]}""", """{"n":0.0000000000000000000099999999}""", true)]
    public void numbers_a_decimal_holds_compare_exactly(string rule, string json, bool expected)
    {
        using var document = JsonDocument.Parse(json);

        Assert.Equal(expected, FilterRule.Parse(rule).Matches(document.RootElement));
    }
}
