using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer whose lease renewal finds the lease gone stops the handler, and neither retries nor settles.</summary>
public sealed class ConsumerLeaseLossTests
{
    [Fact]
    public async Task a_handler_whose_lease_is_lost_is_cancelled_once_and_not_retried()
    {
        var clock = new ManualTimeProvider();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new LeaseLosingBroker(inner);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = TimeSpan.FromSeconds(10) }, default);
        var calls = 0;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, Retry = new RetryPolicy { ImmediateRetries = 3 } },
            async (_, ct) =>
            {
                Interlocked.Increment(ref calls);
                started.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        await started.Task.WaitAsync(Wait.Timeout);

        // Half the lease left: the renewal is due, and finds the lease gone.
        await Wait.UntilAsync(() => clock.ArmedTimers == 2, "the renewal is armed");
        clock.Advance(TimeSpan.FromSeconds(5));
        await Wait.UntilAsync(() => consumer.Status.LeasesLost == 1, "the lost lease is noticed");

        Assert.Equal(1, calls);
        Assert.Equal(0, consumer.Status.Retried);
        Assert.Equal(0, broker.Settlements);
    }

    /// <summary>A broker whose lease extensions all fail as if another receiver had taken the message.</summary>
    private sealed class LeaseLosingBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        private int _settlements;

        public int Settlements => Volatile.Read(ref _settlements);

        public override Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken) =>
            throw new LeaseLostException(lease, "the lease ran out and the message was delivered again");

        public override Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken) => Settle(Inner.AcknowledgeAsync(leases, cancellationToken));

        public override Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken) => Settle(Inner.ReleaseAsync(lease, delay, failure, cancellationToken));

        public override Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken) => Settle(Inner.ReturnAsync(lease, cancellationToken));

        public override Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken) => Settle(Inner.DeadLetterAsync(lease, reason, failure, cancellationToken));

        public override Task<CommitResult> CommitAsync(MessageTransaction transaction, CancellationToken cancellationToken)
        {
            if (transaction.Acknowledgements.Count > 0)
            {
                Interlocked.Increment(ref _settlements);
            }

            return Inner.CommitAsync(transaction, cancellationToken);
        }

        private Task Settle(Task settlement)
        {
            Interlocked.Increment(ref _settlements);
            return settlement;
        }
    }
}
