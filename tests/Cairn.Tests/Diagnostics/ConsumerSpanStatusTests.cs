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

/// <summary>
/// A handling's span says whether it failed the way tracing back ends read it, from its status: an exception event per
/// failed attempt, and status <c>Error</c> only when the handling ends in a failure.
/// </summary>
[Collection(nameof(DiagnosticsTests))]
public sealed class ConsumerSpanStatusTests : IDisposable
{
    private readonly TelemetryRecorder _telemetry = new(name => name == CairnDiagnostics.MessagingName);
    private readonly string _queue = "spans-" + Guid.NewGuid().ToString("N");

    public void Dispose() => _telemetry.Dispose();

    private Activity ProcessSpan() => Assert.Single(_telemetry.Activities, a => a.OperationName == $"process {_queue}");

    private async Task<QueueConsumer> ConsumeAsync(IMessageBroker broker, int immediateRetries, Func<int, ValueTask> handle)
    {
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        var attempts = 0;
        var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions(_queue) { Concurrency = 1, Retry = new RetryPolicy { ImmediateRetries = immediateRetries } },
            (_, _) => handle(Interlocked.Increment(ref attempts)));
        await consumer.StartAsync(default);
        await broker.SendAsync(_queue, new OutgoingMessage("customer.notify", Encoding.UTF8.GetBytes("{}")));
        return consumer;
    }

    private static InstrumentedMessageBroker Broker() => new(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));

    [Fact]
    public async Task a_handling_dead_lettered_for_its_failure_ends_its_span_with_an_error_status()
    {
        using var broker = Broker();
        await using var consumer = await ConsumeAsync(broker, 0, _ => throw new NonRetryableMessageException("the template is missing"));
        await Wait.UntilAsync(() => consumer.Status.DeadLettered == 1, "the message is dead-lettered");
        await Wait.UntilAsync(() => _telemetry.Activities.Any(a => a.OperationName == $"process {_queue}"), "the handling's span stops");

        var process = ProcessSpan();
        Assert.Equal(ActivityStatusCode.Error, process.Status);
        Assert.Equal("the template is missing", process.StatusDescription);
        Assert.Single(process.Events, e => e.Name == "exception");
    }

    [Fact]
    public async Task a_handling_whose_immediate_retry_succeeds_keeps_the_failed_attempt_as_an_event_but_not_as_its_status()
    {
        using var broker = Broker();
        await using var consumer = await ConsumeAsync(broker, 1, attempt => attempt == 1 ? throw new InvalidOperationException("a passing fault") : ValueTask.CompletedTask);
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the retry handles the message");
        await Wait.UntilAsync(() => _telemetry.Activities.Any(a => a.OperationName == $"process {_queue}"), "the handling's span stops");

        var process = ProcessSpan();
        Assert.Equal(ActivityStatusCode.Unset, process.Status);
        Assert.Null(process.StatusDescription);
        Assert.Single(process.Events, e => e.Name == "exception");
    }

    // A stop whose time is up cancels the immediate retry and gives the message back untried: no failure.
    [Fact]
    public async Task a_handling_whose_immediate_retry_is_cut_off_by_a_stop_does_not_end_its_span_with_an_error_status()
    {
        using var broker = Broker();
        var retrying = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await broker.DeclareQueueAsync(new QueueDefinition(_queue), default);
        var attempts = 0;
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions(_queue) { Concurrency = 1, Retry = new RetryPolicy { ImmediateRetries = 1 } },
            async (_, ct) =>
            {
                if (Interlocked.Increment(ref attempts) == 1)
                {
                    throw new InvalidOperationException("a passing fault");
                }

                retrying.TrySetResult();
                await Task.Delay(Timeout.InfiniteTimeSpan, ct);
            });
        await consumer.StartAsync(default);
        await broker.SendAsync(_queue, new OutgoingMessage("customer.notify", Encoding.UTF8.GetBytes("{}")));
        await retrying.Task.Bounded();

        using (var now = new CancellationTokenSource())
        {
            await now.CancelAsync();
            await consumer.StopAsync(now.Token);
        }

        await Wait.UntilAsync(() => _telemetry.Activities.Any(a => a.OperationName == $"process {_queue}"), "the handling's span stops");
        var process = ProcessSpan();
        Assert.Equal(ActivityStatusCode.Unset, process.Status);
        Assert.Contains(process.Events, e => e.Name == "exception");
        Assert.Equal((0L, 0L), (consumer.Status.DeadLettered, consumer.Status.Retried - 1));
    }

    [Fact]
    public async Task a_handling_given_back_for_a_later_retry_ends_its_span_with_an_error_status()
    {
        using var broker = Broker();
        await using var consumer = await ConsumeAsync(broker, 0, _ => throw new InvalidOperationException("the mail server is down"));
        await Wait.UntilAsync(() => consumer.Status.Retried >= 1, "the message is given back");
        await Wait.UntilAsync(() => _telemetry.Activities.Any(a => a.OperationName == $"process {_queue}"), "the handling's span stops");

        var first = _telemetry.Activities.First(a => a.OperationName == $"process {_queue}");
        Assert.Equal(ActivityStatusCode.Error, first.Status);
        Assert.Equal("the mail server is down", first.StatusDescription);
    }
}
