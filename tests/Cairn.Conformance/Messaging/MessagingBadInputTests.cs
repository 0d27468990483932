using System.Text;
using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>Bad input to the broker: refused with a typed error naming the fault, and nothing written.</summary>
public abstract class MessagingBadInputTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Work = "work";

    [Fact]
    public async Task an_unknown_queue_is_refused_by_name()
    {
        var (sut, broker) = await CreateBrokerAsync();
        await using var _ = sut;
        Assert.Equal(new QueueName("nope"), (await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.SendAsync("nope", Numbered(1)))).Queue);
        await Assert.ThrowsAsync<QueueNotFoundException>(() => ReceiveNowAsync(broker, "nope"));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.GetStatsAsync("nope", default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.ListDeadLettersAsync("nope", 0, 10, default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.RedriveAsync("nope", new RedriveRequest(), default));
        await Assert.ThrowsAsync<QueueNotFoundException>(() => broker.PurgeDeadLettersAsync("nope", null, default));
    }

    [Fact]
    public async Task a_message_over_the_size_limit_is_refused_and_its_batch_writes_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxMessageSize = 1024 });
        await using var _ = sut;
        var big = new OutgoingMessage("test.big", Encoding.UTF8.GetBytes("\"" + new string('x', 1100) + "\""));
        var error = await Assert.ThrowsAsync<MessageTooLargeException>(() => broker.SendBatchAsync(Work, [Numbered(1), big]));
        Assert.Equal((big.Id, 1024L), (error.MessageId, error.Limit));
        Assert.Equal(1102, error.Size);
        Assert.Equal(0, (await broker.GetStatsAsync(Work, default)).Visible);
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("slash/no")]
    [InlineData("ünïcode")]
    public void invalid_queue_and_topic_names_are_refused(string name)
    {
        Assert.Throws<InvalidMessagingNameException>(() => new QueueName(name));
        Assert.Throws<InvalidMessagingNameException>(() => new TopicName(name));
        Assert.Throws<InvalidMessagingNameException>(() => new QueueName(new string('q', 129)));
    }

    [Fact]
    public async Task malformed_messages_are_refused_naming_the_fault()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, new OutgoingMessage("test.bad", Encoding.UTF8.GetBytes("{not json"))));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, new OutgoingMessage("has space", Encoding.UTF8.GetBytes("{}"))));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { Delay = TimeSpan.FromSeconds(-1) }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { Metadata = new Dictionary<string, string> { ["type"] = "x" } }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { GroupKey = "" }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { Subject = "x\ud800" }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { CorrelationId = "\udc00" }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { Source = "order service" }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { DataSchema = "/schemas/order.json" }));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(1) with { Metadata = new Dictionary<string, string> { ["note"] = "\ud800" } }));
        var twice = Numbered(1);
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendBatchAsync(Work, [twice, twice]));
        Assert.Equal(0, (await broker.GetStatsAsync(Work, default)).Visible);

        // Not JSON by declaration: any bytes go.
        await broker.SendAsync(Work, new OutgoingMessage("test.bytes", new byte[] { 0, 1, 2 }) { ContentType = "application/octet-stream" });
        Assert.Equal(new byte[] { 0, 1, 2 }, Assert.Single(await ReceiveNowAsync(broker, Work)).Message.Data.ToArray());
    }

    [Fact]
    public async Task a_message_whose_delay_reaches_past_the_queues_retention_is_refused_and_its_batch_writes_nothing()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Retention = TimeSpan.FromDays(1) });
        await using var _ = sut;

        var late = Numbered(2) with { Delay = TimeSpan.FromDays(2) };
        var error = await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendBatchAsync(Work, [Numbered(1), late]));
        Assert.Contains(late.Id.ToString(), error.Message, StringComparison.Ordinal);
        Assert.Contains("retention", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.SendAsync(Work, Numbered(3) with { DeliverAt = Clock.GetUtcNow() + TimeSpan.FromDays(1) }));
        Assert.Equal(0, (await broker.GetStatsAsync(Work, default)).Visible);

        // Within the retention it is taken, and received once due.
        await broker.SendAsync(Work, Numbered(4) with { Delay = TimeSpan.FromHours(23) });
        Clock.Advance(TimeSpan.FromHours(23));
        Assert.Equal(4, NumberOf(Assert.Single(await ReceiveNowAsync(broker, Work)).Message));
    }

    [Fact]
    public async Task impossible_settings_are_refused_naming_the_setting()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        Assert.Contains("MaxReceiveCount", (await Assert.ThrowsAsync<InvalidMessageException>(() => broker.DeclareQueueAsync(new QueueDefinition("q") { MaxReceiveCount = 0 }, default))).Message, StringComparison.Ordinal);
        Assert.Contains("Lease", (await Assert.ThrowsAsync<InvalidMessageException>(() => broker.DeclareQueueAsync(new QueueDefinition("q") { Lease = TimeSpan.Zero }, default))).Message, StringComparison.Ordinal);
        Assert.Contains("DefaultDelay", (await Assert.ThrowsAsync<InvalidMessageException>(() => broker.DeclareQueueAsync(new QueueDefinition("q") { Retention = TimeSpan.FromDays(1), DefaultDelay = TimeSpan.FromDays(1) }, default))).Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ReceiveAsync(Work, new ReceiveOptions { MaxMessages = 0 }, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.ReceiveAsync(Work, new ReceiveOptions { Wait = TimeSpan.FromHours(1) }, default));
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.RedriveAsync(Work, new RedriveRequest { MessagesPerSecond = 0 }, default));

        // A pace slower than one a day would wait between messages longer than a timer takes.
        Assert.Contains("MessagesPerSecond", (await Assert.ThrowsAsync<InvalidMessageException>(() => broker.RedriveAsync(Work, new RedriveRequest { MessagesPerSecond = 1e-15 }, default))).Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidMessageException>(() => broker.RedriveAsync(Work, new RedriveRequest { MessageIds = [] }, default));
        Assert.Null(await broker.GetQueueAsync("q", default));
    }

    [Fact]
    public async Task a_lease_token_for_another_queue_or_a_made_up_one_is_refused()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work), new QueueDefinition("other"));
        await using var _ = sut;
        await broker.SendAsync(Work, Numbered(1));
        var delivery = Assert.Single(await ReceiveNowAsync(broker, Work));
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(delivery.Lease with { Queue = "other" }));
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(delivery.Lease with { Delivery = 99 }));
        await Assert.ThrowsAsync<LeaseLostException>(() => broker.AcknowledgeAsync(new LeaseToken(Work, 12345, 1)));
        Assert.Equal(delivery.Lease, LeaseToken.Parse(delivery.Lease.ToString()));
        Assert.Throws<FormatException>(() => LeaseToken.Parse("work/x/1"));
        await broker.AcknowledgeAsync(delivery.Lease);
        Assert.False(await broker.WasProcessedAsync("c", MessageId.New(), default));
    }

    // A subscription naming a default topic or queue reached the backend and was reported as "The topic '' does not
    // exist"; a redrive to a default queue as "The queue '' does not exist".
    [Fact]
    public async Task a_default_topic_or_queue_name_is_refused_as_a_missing_name_not_as_an_unknown_one()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;

        Assert.Equal("topic", Assert.Throws<InvalidMessagingNameException>(() => new TopicSubscription(default, "s", Work)).Kind);
        Assert.Equal("queue", Assert.Throws<InvalidMessagingNameException>(() => new TopicSubscription("orders", "s", default)).Kind);
        var redrive = await Assert.ThrowsAsync<InvalidMessagingNameException>(() => broker.RedriveAsync(Work, new RedriveRequest { Target = default(QueueName) }, default));
        Assert.Equal("queue", redrive.Kind);
    }
}
