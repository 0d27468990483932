using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;

namespace Cairn.Conformance.Messaging;

/// <summary>
/// Tracing one correlation id: every event appended and message handled, waiting or dead-lettered that it caused, once,
/// in order, with its causation tree, across streams, queues and consumers.
/// </summary>
public abstract class CorrelationTraceTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Orders = "orders";
    private static readonly QueueName Payments = "payments";
    private static readonly QueueName Receipts = "receipts";
    private static readonly QueueName Ledger = "ledger";
    private static readonly TopicName Billing = "billing";
    private static readonly StreamName Order = new("order-1");

    /// <summary>
    /// place-order, handled by orders: appends order.placed and sends charge-payment; handled by payments: publishes
    /// payment.charged to billing, which receipts (no consumer yet) and ledger (a consumer that refuses it) subscribe
    /// to. Each step a second apart. Returns the id of the command.
    /// </summary>
    private async Task<(MessageId Command, MessageId Charge, MessageId Charged)> RunChoreographyAsync(IMessageBroker broker, string correlationId)
    {
        await broker.DeclareTopicAsync(Billing, default);
        await broker.SubscribeAsync(new TopicSubscription(Billing, "receipts", Receipts), default);
        await broker.SubscribeAsync(new TopicSubscription(Billing, "ledger", Ledger), default);
        var charge = Numbered(2, "payment.charge");
        var charged = Numbered(3, "payment.charged");
        var command = Numbered(1, "order.place");

        await using (var orders = Consumer(broker, Orders, (context, _) =>
        {
            context.Append(Order, ExpectedVersion.NoStream, TestEvents.Numbered(1, "order.placed"));
            context.Send(Payments, charge);
            return ValueTask.CompletedTask;
        }))
        {
            await orders.StartAsync(default);
            using (MessageContext.Begin(correlationId))
            {
                await broker.SendAsync(Orders, command);
            }

            await Wait.UntilAsync(() => orders.Status.Handled == 1, "orders handles the command");
        }

        Clock.Advance(TimeSpan.FromSeconds(1));
        await using (var payments = Consumer(broker, Payments, (context, _) =>
        {
            context.Publish(Billing, charged);
            return ValueTask.CompletedTask;
        }))
        {
            await payments.StartAsync(default);
            await Wait.UntilAsync(() => payments.Status.Handled == 1, "payments handles the charge");
        }

        Clock.Advance(TimeSpan.FromSeconds(1));
        await using (var ledger = Consumer(broker, Ledger, (_, _) => throw new NonRetryableMessageException("the ledger is closed for the year")))
        {
            await ledger.StartAsync(default);
            await Wait.UntilAsync(() => ledger.Status.DeadLettered == 1, "ledger dead-letters the charge");
        }

        return (command.Id, charge.Id, charged.Id);
    }

    private QueueConsumer Consumer(IMessageBroker broker, QueueName queue, Func<MessageHandlerContext, CancellationToken, ValueTask> handler) =>
        new(broker, new ConsumerOptions(queue) { Concurrency = 1, ExtendLeaseWhileHandling = false, Retry = new RetryPolicy { ImmediateRetries = 0 } }, handler, timeProvider: Clock);

    private Task<(StoreUnderTest Sut, IMessageBroker Broker)> CreateQueuesAsync() =>
        CreateBrokerAsync(new QueueDefinition(Orders), new QueueDefinition(Payments), new QueueDefinition(Receipts), new QueueDefinition(Ledger));

    [Fact]
    public async Task a_choreography_is_traced_step_by_step_once_in_order_with_its_causation_tree()
    {
        var (sut, broker) = await CreateQueuesAsync();
        await using var _ = sut;
        var start = Clock.GetUtcNow();
        var (command, charge, charged) = await RunChoreographyAsync(broker, "flow-1");

        // Another flow in the same queues and stream category stays out of the trace.
        using (MessageContext.Begin("flow-2"))
        {
            await broker.SendAsync(Orders, Numbered(9, "order.place"));
            await sut.Store.AppendToStreamAsync(new StreamName("order-2"), ExpectedVersion.NoStream, [TestEvents.Numbered(9, "order.placed")]);
        }

        var trace = await new CorrelationTracer(sut.Traces).TraceAsync("flow-1", default);

        Assert.Equal("flow-1", trace.CorrelationId);
        Assert.False(trace.Truncated);
        Assert.Equal(
            [
                (TraceEntryKind.MessageHandled, "order.place", command.ToString(), "orders", start),
                (TraceEntryKind.EventAppended, "order.placed", null, null, start),
                (TraceEntryKind.MessageHandled, "payment.charge", charge.ToString(), "payments", start.AddSeconds(1)),
                (TraceEntryKind.MessageWaiting, "payment.charged", charged.ToString(), "receipts", start.AddSeconds(1)),
                (TraceEntryKind.MessageDeadLettered, "payment.charged", charged.ToString(), "ledger", start.AddSeconds(2)),
            ],
            trace.Timeline.Select(e => (e.Kind, e.Type, e.IsEvent ? null : e.Id, e.Queue, e.Time)));
        var placed = trace.Timeline[1];
        Assert.Equal((Order.Value, 0L), (placed.Stream, placed.StreamVersion));
        Assert.Equal("orders", trace.Timeline[0].Consumer);
        Assert.Equal("payments", trace.Timeline[2].Consumer);
        Assert.Equal("the ledger is closed for the year", trace.Timeline[4].Failure?.Message);
        Assert.Contains("the ledger is closed for the year", trace.Timeline[4].DeadLetterReason, StringComparison.Ordinal);

        // The tree: the command caused the event and the charge; the charge caused the publication, one node with its
        // two fates.
        var root = Assert.Single(trace.Roots);
        Assert.Equal(command.ToString(), root.Id);
        Assert.False(root.CauseMissing);
        Assert.Equal(["order.placed", "payment.charge"], root.Children.Select(c => c.Type));
        var chargeNode = root.Children[1];
        var chargedNode = Assert.Single(chargeNode.Children);
        Assert.Equal(charged.ToString(), chargedNode.Id);
        Assert.Equal([TraceEntryKind.MessageWaiting, TraceEntryKind.MessageDeadLettered], chargedNode.Entries.Select(e => e.Kind));
        Assert.True(chargedNode.DeadLettered);
        Assert.Empty(root.Children[0].Children);
        Assert.Equal([chargedNode], trace.DeadLetters);
        Assert.Empty(trace.MissingCauses);
        Assert.Equal(TimeSpan.FromSeconds(2), trace.Duration);

        // Rendered, every step shows once.
        var text = trace.ToText();
        Assert.Contains("message order.place handled by orders from queue orders", text, StringComparison.Ordinal);
        Assert.Contains("event order.placed appended to order-1@0", text, StringComparison.Ordinal);
        Assert.Single(text.Split('\n'), l => l.Contains("handled by payments", StringComparison.Ordinal) && l.Contains("+   1.000 s", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(trace.ToJson());
        Assert.Equal(5, json.RootElement.GetProperty("timeline").GetArrayLength());
        Assert.Equal(4, json.RootElement.GetProperty("nodes").GetArrayLength());
        Assert.Contains(" --> ", trace.ToMermaid(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_flow_started_by_a_message_without_a_correlation_is_traced_by_the_message_id()
    {
        var (sut, broker) = await CreateQueuesAsync();
        await using var _ = sut;
        var command = Numbered(1, "order.place");
        await broker.SendAsync(Orders, command);
        await using var orders = Consumer(broker, Orders, (context, _) =>
        {
            context.Append(Order, ExpectedVersion.NoStream, TestEvents.Numbered(1, "order.placed"));
            context.Send(Payments, Numbered(2, "payment.charge"));
            return ValueTask.CompletedTask;
        });
        await orders.StartAsync(default);
        await Wait.UntilAsync(() => orders.Status.Handled == 1, "orders handles the command");

        var trace = await new CorrelationTracer(sut.Traces).TraceAsync(command.Id.ToString(), default);

        Assert.Equal([TraceEntryKind.MessageHandled, TraceEntryKind.EventAppended, TraceEntryKind.MessageWaiting], trace.Timeline.Select(e => e.Kind));
        Assert.Equal(command.Id.ToString(), Assert.Single(trace.Roots).Id);
        Assert.Equal(2, trace.Roots[0].Children.Count);
    }

    [Fact]
    public async Task an_event_that_starts_a_flow_is_found_by_its_own_id_with_what_it_caused()
    {
        var (sut, broker) = await CreateQueuesAsync();
        await using var _ = sut;
        var first = TestEvents.Numbered(1, "order.placed");
        await sut.Store.AppendToStreamAsync(Order, ExpectedVersion.NoStream, [first]);
        var correlation = first.Id.ToString();
        await broker.SendAsync(Payments, Numbered(2, "payment.charge") with { CorrelationId = correlation, CausationId = correlation });
        await broker.SendAsync(Payments, Numbered(3, "payment.charge"));

        var trace = await new CorrelationTracer(sut.Traces).TraceAsync(correlation, default);

        Assert.Equal([TraceEntryKind.EventAppended, TraceEntryKind.MessageWaiting], trace.Timeline.Select(e => e.Kind));
        var root = Assert.Single(trace.Roots);
        Assert.Equal(correlation, root.Id);
        Assert.Equal("payment.charge", Assert.Single(root.Children).Type);
        Assert.True(trace.Pending.Count == 1);
    }

    [Fact]
    public async Task every_event_of_a_flow_is_found_whether_appended_together_interleaved_or_across_streams()
    {
        var (sut, _) = await CreateQueuesAsync();
        await using var __ = sut;
        using (MessageContext.Begin("flow-a"))
        {
            await sut.Store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, TestEvents.Many(3));
        }

        using (MessageContext.Begin("flow-b"))
        {
            await sut.Store.AppendToStreamAsync(new StreamName("order-2"), ExpectedVersion.NoStream, [TestEvents.Numbered(10)]);
        }

        using (MessageContext.Begin("flow-a"))
        {
            await sut.Store.AppendAsync(
                new AppendRequest([
                    new StreamAppend(new StreamName("order-1"), ExpectedVersion.Exactly(2), [TestEvents.Numbered(3), TestEvents.Numbered(11) with { CorrelationId = "flow-b" }, TestEvents.Numbered(4)]),
                    new StreamAppend(new StreamName("order-3"), ExpectedVersion.NoStream, TestEvents.Many(2, first: 5)),
                ]),
                default);
        }

        var tracer = new CorrelationTracer(sut.Traces);
        var a = await tracer.TraceAsync("flow-a", default);
        var b = await tracer.TraceAsync("flow-b", default);

        Assert.Equal([1L, 2, 3, 5, 7, 8, 9], a.Timeline.Select(e => e.Position!.Value));
        Assert.Equal([4L, 6], b.Timeline.Select(e => e.Position!.Value));
        var limited = await tracer.TraceAsync("flow-a", 4, default);
        Assert.Equal([1L, 2, 3, 5], limited.Timeline.Select(e => e.Position!.Value));
        Assert.True(limited.Truncated);
    }

    [Fact]
    public async Task a_trace_keeps_the_earliest_entries_up_to_the_limit_and_says_it_was_truncated()
    {
        var (sut, broker) = await CreateQueuesAsync();
        await using var _ = sut;
        await RunChoreographyAsync(broker, "flow-1");

        var trace = await new CorrelationTracer(sut.Traces).TraceAsync("flow-1", 3, default);

        Assert.True(trace.Truncated);
        Assert.Equal(["order.place", "order.placed", "payment.charge"], trace.Timeline.Select(e => e.Type));

        // A handling commits what it made at its own time: cut at one record, the trace keeps the handling, not the
        // event it appended (which then named its cause as missing, though the backend holds it).
        var first = await new CorrelationTracer(sut.Traces).TraceAsync("flow-1", 1, default);
        Assert.Equal(["order.place"], first.Timeline.Select(e => e.Type));
        Assert.Empty(first.MissingCauses);

        var records = await sut.Traces.ReadAsync("flow-1", 5, default);
        Assert.False(records.Truncated);
        Assert.Equal(5, records.Count);
    }

    [Fact]
    public async Task a_correlation_id_nothing_carries_gives_an_empty_trace()
    {
        var (sut, broker) = await CreateQueuesAsync();
        await using var _ = sut;
        await RunChoreographyAsync(broker, "flow-1");

        var trace = await new CorrelationTracer(sut.Traces).TraceAsync("flow-404", default);

        Assert.True(trace.IsEmpty);
        Assert.False(trace.Truncated);
        Assert.Empty(trace.Roots);
        Assert.Contains("nothing found", trace.ToText(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", 10, "correlationId")]
    [InlineData("   ", 10, "correlationId")]
    [InlineData("flow\n1", 10, "correlationId")]
    [InlineData("flow-1", 0, "limit")]
    [InlineData("flow-1", -1, "limit")]
    [InlineData("flow-1", CorrelationTraceLimits.MaxLimit + 1, "limit")]
    public async Task bad_input_is_refused_naming_the_field(string correlationId, int limit, string field)
    {
        var (sut, _) = await CreateQueuesAsync();
        await using var __ = sut;

        var read = await ThroughTask.RefusedAsync<InvalidTraceRequestException>(() => sut.Traces.ReadAsync(correlationId, limit, default));
        var traced = await ThroughTask.RefusedAsync<InvalidTraceRequestException>(() => new CorrelationTracer(sut.Traces).TraceAsync(correlationId, limit, default));

        Assert.Equal(field, read.Field);
        Assert.Equal(field, traced.Field);
    }

    [Fact]
    public async Task an_oversized_or_null_correlation_id_is_refused()
    {
        var (sut, _) = await CreateQueuesAsync();
        await using var __ = sut;

        var oversized = await ThroughTask.RefusedAsync<InvalidTraceRequestException>(() => sut.Traces.ReadAsync(new string('x', CorrelationTraceLimits.MaxCorrelationIdLength + 1), 10, default));
        var none = await ThroughTask.RefusedAsync<InvalidTraceRequestException>(() => sut.Traces.ReadAsync(null!, 10, default));

        Assert.Contains("at most 256", oversized.Message, StringComparison.Ordinal);
        Assert.Equal("correlationId", none.Field);
        Assert.True((await sut.Traces.ReadAsync(new string('x', CorrelationTraceLimits.MaxCorrelationIdLength), CorrelationTraceLimits.MaxLimit, default)).Count == 0);
    }

    [Fact]
    public async Task a_read_with_a_cancelled_token_is_cancelled_through_its_task()
    {
        var (sut, _) = await CreateQueuesAsync();
        await using var __ = sut;

        await ThroughTask.RefusedAsync<OperationCanceledException>(() => sut.Traces.ReadAsync("flow-1", 10, new CancellationToken(canceled: true)));
    }

    /// <summary>
    /// A trace's records are ordered by time, a queued message's being when it was dead-lettered, else when it was
    /// enqueued. A and C, sent first, are dead-lettered late; B, sent after them, waits with the earliest time: a trace
    /// limited to one record keeps B (backends that took the first queued messages by queue order kept A).
    /// </summary>
    [Fact]
    public async Task A_limited_trace_keeps_the_earliest_queued_message_when_those_sent_before_it_were_dead_lettered_later()
    {
        QueueName work = "work";
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(work));
        await using var _ = sut;
        var a = Numbered(1, "job.a");
        var c = Numbered(2, "job.c");
        var b = Numbered(3, "job.b");
        using (MessageContext.Begin("flow-trace-1"))
        {
            await broker.SendAsync(work, a);
            Clock.Advance(TimeSpan.FromSeconds(1));
            await broker.SendAsync(work, c);
            Clock.Advance(TimeSpan.FromSeconds(1));
            await broker.SendAsync(work, b);
        }

        Clock.Advance(TimeSpan.FromSeconds(10));
        foreach (var expected in new[] { a, c })
        {
            var delivery = Assert.Single(await ReceiveNowAsync(broker, work, max: 1));
            Assert.Equal(expected.Id, delivery.Message.Id);
            await broker.DeadLetterAsync(delivery.Lease, "refused", null, default);
            Clock.Advance(TimeSpan.FromSeconds(1));
        }

        var all = await sut.Traces.ReadAsync("flow-trace-1", 10, default);
        Assert.Equal([b.Id, a.Id, c.Id], all.Queued.OrderBy(q => q.Time).Select(q => q.Message.Id));
        var limited = await sut.Traces.ReadAsync("flow-trace-1", 1, default);
        Assert.True(limited.Truncated);
        Assert.Equal([b.Id], limited.Queued.Select(q => q.Message.Id));
    }
}
