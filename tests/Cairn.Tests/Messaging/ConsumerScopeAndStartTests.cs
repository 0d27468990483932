using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer started after its disposal, a retry policy without its list, and a scope that fails to dispose.</summary>
public sealed class ConsumerScopeAndStartTests
{
    private static InMemoryMessageBroker NewBroker(TimeProvider? clock = null) =>
        new(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock ?? TimeProvider.System }), new InMemoryCheckpointStore());

    private static OutgoingMessage Job() => new("job", Encoding.UTF8.GetBytes("{}"));

    // A consumer started after DisposeAsync reported a successful start, logged "started", and then received nothing:
    // its stop token was already cancelled, so the receiver ended at once and the renewal loop faulted on a disposed
    // source.
    [Fact]
    public async Task a_consumer_started_after_its_disposal_refuses_through_the_task()
    {
        var broker = NewBroker();
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
        var consumer = new QueueConsumer(broker, new ConsumerOptions("work") { Concurrency = 1 }, (_, _) => ValueTask.CompletedTask);
        await consumer.DisposeAsync();

        await ThroughTask.RefusedAsync(() => consumer.StartAsync(default), typeof(ObjectDisposedException));
    }

    // "An impossible setting of ... a retry policy, a consumer ... is refused with InvalidMessageException — each named
    // in the message" (docs/messaging.md, Errors). ConsumerOptions.Validate refuses Retry = null by name, but a policy
    // whose NonRetryable list is null escaped as an ArgumentNullException from Enumerable.All (parameter 'source').
    [Fact]
    public void a_retry_policy_without_a_non_retryable_list_is_refused_by_name()
    {
        var options = new ConsumerOptions("work") { Retry = new RetryPolicy { NonRetryable = null! } };

        var refused = Assert.Throws<InvalidMessageException>(options.Validate);
        Assert.Contains("NonRetryable", refused.Message, StringComparison.Ordinal);
    }

    // "A failed attempt is retried at once ImmediateRetries times; then the message is given back (released) with a
    // delay" (docs/messaging.md, Retries). When disposing the attempt's DI scope throws (a scoped service whose
    // Dispose fails), the exception escaped HandleOnceAsync's finally and replaced the handler's failure: no
    // immediate retry, no release, nothing counted; the message stayed leased until its lease ran out.
    [Fact]
    public async Task a_failed_attempt_whose_scope_fails_to_dispose_is_still_released_for_a_retry()
    {
        var broker = new ReleaseRecordingBroker(NewBroker());
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromHours(1) }, default);
        var services = new ServiceCollection().AddScoped<ThrowsOnDispose>().BuildServiceProvider();
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work")
            {
                Concurrency = 1,
                Prefetch = 1,
                Retry = new RetryPolicy { ImmediateRetries = 0, InitialDelay = TimeSpan.FromMinutes(1), MaxDelay = TimeSpan.FromMinutes(1), Jitter = 0 },
            },
            (context, ct) =>
            {
                Assert.NotNull(context.Services.GetRequiredService<ThrowsOnDispose>());
                throw new InvalidOperationException("the handler failed");
            },
            services);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", Job());

        var (_, failure) = await broker.Released.Task.Bounded();
        Assert.Equal(typeof(InvalidOperationException).FullName, failure?.Type);
        await Wait.UntilAsync(() => consumer.Status.Retried == 1, "the failure is counted as retried");
    }

    private sealed class ThrowsOnDispose : IDisposable
    {
        public void Dispose() => throw new InvalidOperationException("a scoped service failed to dispose");
    }

    private sealed class ReleaseRecordingBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        public TaskCompletionSource<(TimeSpan Delay, FailureInfo? Failure)> Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override async Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken)
        {
            await base.ReleaseAsync(lease, delay, failure, cancellationToken);
            Released.TrySetResult((delay, failure));
        }
    }
}
