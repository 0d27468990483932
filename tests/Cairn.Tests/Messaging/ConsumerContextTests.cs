using System.Collections.Concurrent;
using System.Diagnostics;
using Cairn.Conformance.Support;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer's loops do not carry the span or the context of whoever started it.</summary>
public sealed class ConsumerContextTests
{
    private static readonly AsyncLocal<string?> StartersContext = new();

    // The lease-renewal loop, started with the consumer, ran every lease extension for the consumer's whole life (and
    // any span a backend or driver started for it: an Npgsql command, say) inside the span and the AsyncLocals of
    // whoever started the consumer, as the workers did before.
    [Fact]
    public async Task The_consumers_lease_renewal_loop_does_not_carry_its_starters_span_or_context()
    {
        using var source = new ActivitySource("consumer-context-starter");
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == source.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);

        var broker = new ContextRecordingBroker(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromSeconds(1) }, default);
        var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handlerSaw = new ConcurrentQueue<(string? Span, string? Context)>();
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, HandlerTimeout = TimeSpan.FromMinutes(1) },
            async (_, ct) =>
            {
                handlerSaw.Enqueue((Activity.Current?.OperationName, StartersContext.Value));
                await finish.Task.WaitAsync(ct);
            });

        using (source.StartActivity("host start-up"))
        {
            StartersContext.Value = "the starter's";
            await consumer.StartAsync(default);
            StartersContext.Value = null;
        }

        Assert.Null(Activity.Current);
        await broker.SendAsync("work", new OutgoingMessage("job", "{}"u8.ToArray()));
        await Wait.UntilAsync(() => !broker.Extensions.IsEmpty, "a lease extension while the handler runs");
        finish.SetResult();
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the message is handled");

        // The workers were fixed: the handler sees neither.
        Assert.All(handlerSaw, seen => Assert.NotEqual("host start-up", seen.Span));
        Assert.All(handlerSaw, seen => Assert.Null(seen.Context));

        // Nor does the renewal loop.
        Assert.All(broker.Extensions, seen => Assert.Null(seen.Span));
        Assert.All(broker.Extensions, seen => Assert.Null(seen.Context));
    }

    private sealed class ContextRecordingBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public ConcurrentQueue<(string? Span, string? Context)> Extensions { get; } = new();

        public override Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
        {
            Extensions.Enqueue((Activity.Current?.OperationName, StartersContext.Value));
            return base.ExtendLeaseAsync(lease, duration, cancellationToken);
        }
    }
}
