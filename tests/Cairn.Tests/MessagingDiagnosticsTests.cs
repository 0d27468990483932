using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>Messaging is observable: counters per step, queue depths, handler durations, and spans that link producer and consumer.</summary>
[Collection(nameof(DiagnosticsTests))]
public sealed class MessagingDiagnosticsTests : IDisposable
{
    private readonly TelemetryRecorder _telemetry = new(name => name == CairnDiagnostics.MessagingName);
    private readonly string _queue = "diag-" + Guid.NewGuid().ToString("N");

    private ConcurrentQueue<Activity> Spans => _telemetry.Activities;

    public void Dispose() => _telemetry.Dispose();

    private long Total(string key) => _telemetry.Total(key);

    // A stop whose time ran out cancels the handlers and gives their messages back untried: not failures, so not in
    // the handlers' error rate, which every deployment would otherwise raise.
    [Fact]
    public async Task a_handler_cancelled_by_a_stop_is_recorded_as_stopped_not_as_an_error()
    {
        using var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(broker, new ConsumerOptions(_queue) { Concurrency = 1 }, async (_, ct) =>
        {
            entered.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, ct);
        });
        await consumer.StartAsync(default);
        await broker.SendAsync(_queue, new OutgoingMessage("a", Encoding.UTF8.GetBytes("{}")));
        await entered.Task.Bounded();

        await consumer.StopAsync(new CancellationToken(true));

        Assert.Equal(1, (await broker.GetStatsAsync(_queue, default)).Visible);
        Assert.Equal(0, Total($"cairn.messaging.handler.duration|consumer={_queue}|outcome=error"));
        Assert.Equal(1, Total($"cairn.messaging.handler.duration|consumer={_queue}|outcome=stopped"));
    }

    [Fact]
    public async Task sends_receives_retries_dead_letters_depths_and_handling_are_measured()
    {
        using var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition(_queue) { MaxReceiveCount = 1 }, default);
        var sentBefore = Total("cairn.messaging.sent");
        await broker.SendBatchAsync(_queue, [new OutgoingMessage("a", Encoding.UTF8.GetBytes("{}")), new OutgoingMessage("b", Encoding.UTF8.GetBytes("{}"))]);
        Assert.True(Total("cairn.messaging.sent") - sentBefore >= 2);

        var deliveries = await broker.ReceiveAsync(_queue, new ReceiveOptions { MaxMessages = 2 }, default);
        Assert.Equal(2, Total($"cairn.messaging.received|queue={_queue}"));
        _telemetry.RecordObservableInstruments();
        Assert.Equal(2, Total($"cairn.messaging.queue.depth|queue={_queue}|state=leased"));

        await broker.AcknowledgeAsync([deliveries[0].Lease], default);
        await broker.ReleaseAsync(deliveries[1].Lease, TimeSpan.Zero, FailureInfo.From(new InvalidOperationException("x")), default);
        Assert.Equal(1, Total($"cairn.messaging.retried|queue={_queue}"));
        Assert.Equal(1, Total($"cairn.messaging.dead_lettered|queue={_queue}"));
        _telemetry.RecordObservableInstruments();
        Assert.Equal(1, Total($"cairn.messaging.queue.depth|queue={_queue}|state=dead_lettered"));
        Assert.Contains(Spans, a => a.OperationName == $"send {_queue}" && a.Kind == ActivityKind.Producer);
    }

    [Fact]
    public async Task a_lease_that_runs_out_is_counted_as_an_expiry()
    {
        var clock = new ManualTimeProvider();
        using var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(new Cairn.EventStore.EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        await broker.SendAsync(_queue, new OutgoingMessage("a", Encoding.UTF8.GetBytes("{}")));
        await broker.ReceiveAsync(_queue, new ReceiveOptions { Lease = TimeSpan.FromSeconds(1) }, default);
        clock.Advance(TimeSpan.FromSeconds(1));
        await broker.ReceiveAsync(_queue, new ReceiveOptions(), default);
        Assert.Equal(1, Total($"cairn.messaging.lease_expiries|queue={_queue}"));
    }

    [Fact]
    public async Task a_queue_reports_how_long_its_oldest_message_has_waited_and_zero_when_empty()
    {
        var clock = new ManualTimeProvider();
        using var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(new Cairn.EventStore.EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        var age = $"cairn.messaging.queue.oldest_age|queue={_queue}";
        _telemetry.RecordObservableInstruments();
        Assert.Equal(0, _telemetry.Last(age));

        await broker.SendAsync(_queue, new OutgoingMessage("a", Encoding.UTF8.GetBytes("{}")));
        clock.Advance(TimeSpan.FromSeconds(30));
        await broker.SendAsync(_queue, new OutgoingMessage("b", Encoding.UTF8.GetBytes("{}")));
        clock.Advance(TimeSpan.FromSeconds(15));
        _telemetry.RecordObservableInstruments();
        Assert.Equal(45, _telemetry.Last(age));

        var first = Assert.Single(await broker.ReceiveAsync(_queue, new ReceiveOptions { MaxMessages = 1 }, default));
        await broker.AcknowledgeAsync([first.Lease], default);
        _telemetry.RecordObservableInstruments();
        Assert.Equal(15, _telemetry.Last(age));
    }

    [Fact]
    public async Task a_handling_span_is_a_child_of_the_send_span_and_its_duration_is_recorded()
    {
        using var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        var consumerName = "c" + Guid.NewGuid().ToString("N");
        await using var consumer = new QueueConsumer(broker, new ConsumerOptions(_queue, consumerName) { Concurrency = 1 }, (_, _) => ValueTask.CompletedTask);
        await consumer.StartAsync(default);
        await broker.SendAsync(_queue, new OutgoingMessage("a", Encoding.UTF8.GetBytes("{}")));
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the message is handled");
        await consumer.StopAsync(default);

        var send = Assert.Single(Spans, a => a.OperationName == $"send {_queue}");
        var process = Assert.Single(Spans, a => a.OperationName == $"process {_queue}");
        Assert.Equal(send.TraceId, process.TraceId);
        Assert.Equal(send.SpanId, process.ParentSpanId);
        Assert.Equal(ActivityKind.Consumer, process.Kind);
        Assert.Equal(1, Total($"cairn.messaging.handler.duration|consumer={consumerName}|outcome=ok"));
    }

    // A consumer started inside a span (a host's start-up, a request) carried it into its loops for good: the handling
    // of every message without a trace parent became a child of that span, one endless trace of unrelated work.
    [Fact]
    public async Task a_consumer_started_inside_a_span_handles_a_message_without_a_trace_parent_in_a_trace_of_its_own()
    {
        var broker = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        using var source = new ActivitySource("diag-startup");
        using var listener = new ActivityListener { ShouldListenTo = s => s.Name == "diag-startup", Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded };
        ActivitySource.AddActivityListener(listener);
        QueueConsumer consumer;
        ActivityTraceId startupTrace;
        using (var startup = source.StartActivity("host start"))
        {
            startupTrace = startup!.TraceId;
            consumer = new QueueConsumer(broker, new ConsumerOptions(_queue) { Concurrency = 1 }, (_, _) => ValueTask.CompletedTask);
            await consumer.StartAsync(default);
        }

        await using (consumer)
        {
            await broker.SendAsync(_queue, new OutgoingMessage("a", Encoding.UTF8.GetBytes("{}")));
            await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the message is handled");
        }

        var process = Assert.Single(Spans, a => a.OperationName == $"process {_queue}");
        Assert.NotEqual(startupTrace, process.TraceId);
        Assert.Equal(default, process.ParentSpanId);
    }

    // Once something listens to Cairn's sources, the broker's span is tagged with the append's first stream: an append
    // naming no stream must still reach the backend and fail with its error, not with an index out of range.
    [Fact]
    public async Task a_traced_commit_of_an_append_without_streams_fails_with_the_backends_error()
    {
        using var telemetry = new TelemetryRecorder(name => name.StartsWith("Cairn.", StringComparison.Ordinal));
        var transaction = new MessageTransaction().Append(new Cairn.EventStore.AppendRequest([]));
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        var untraced = await Assert.ThrowsAnyAsync<Exception>(() => inner.CommitAsync(transaction, default)).Bounded();
        Assert.IsType<ArgumentException>(untraced);

        using var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        var traced = await Assert.ThrowsAnyAsync<Exception>(() => broker.CommitAsync(transaction, default)).Bounded();
        Assert.IsType<ArgumentException>(traced);
        Assert.Equal(untraced.Message, traced.Message);
    }
}
