using System.Collections.Concurrent;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>A consumer's one renewal timer keeps every lease in hand alive, each on its own schedule.</summary>
public sealed class ConsumerLeaseRenewalTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task deliveries_received_at_different_times_are_each_renewed_before_their_lease_runs_out_and_a_finished_one_never()
    {
        var clock = new ManualTimeProvider();
        var start = clock.GetUtcNow();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new ExtensionRecordingBroker(inner, clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = Lease }, default);
        var started = new ConcurrentDictionary<string, Delivery>(StringComparer.Ordinal);
        var finish = new ConcurrentDictionary<string, TaskCompletionSource>(StringComparer.Ordinal);
        foreach (var name in new[] { "a", "b", "c" })
        {
            finish[name] = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 3, Prefetch = 3, HandlerTimeout = TimeSpan.FromMinutes(5) },
            async (context, ct) =>
            {
                var name = Encoding.UTF8.GetString(context.Message.Data.Span).Trim('"');
                started[name] = context.Delivery;
                await finish[name].Task.WaitAsync(ct);
            },
            timeProvider: clock);
        await consumer.StartAsync(default);

        // Three deliveries two seconds apart: leases running out at 10, 12 and 14 s.
        foreach (var name in new[] { "a", "b", "c" })
        {
            if (name != "a")
            {
                clock.Advance(TimeSpan.FromSeconds(2));
            }

            await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes($"\"{name}\"")));
            await Wait.UntilAsync(() => started.ContainsKey(name), $"{name} is being handled");
        }

        Assert.Equal([10.0, 12.0, 14.0], new[] { "a", "b", "c" }.Select(n => (started[n].LeaseExpiresAt - start).TotalSeconds));

        // b ends before half its lease is spent; a and c go on working.
        finish["b"].SetResult();
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "b is handled");

        // The clock moves to the next renewal's due time (half the lease it extends), and on only once that renewal
        // is made, so how fast the consumer works never decides the outcome.
        while (new[] { "a", "c" }.Any(n => broker.ExtensionsOf(started[n].Lease).Count < 3))
        {
            var (name, due, made) = new[] { "a", "c" }
                .Select(n => (Name: n, Extensions: broker.ExtensionsOf(started[n].Lease)))
                .Where(n => n.Extensions.Count < 3)
                .Select(n => (n.Name, Due: (n.Extensions.Count == 0 ? started[n.Name].LeaseExpiresAt : n.Extensions[^1] + Lease) - (Lease / 2), Made: n.Extensions.Count))
                .MinBy(n => n.Due);
            if (due > clock.GetUtcNow())
            {
                await RenewalLoopSleepsUntilAsync(clock, due);
                clock.Advance(due - clock.GetUtcNow());
            }

            await Wait.UntilAsync(() => broker.ExtensionsOf(started[name].Lease).Count > made, $"{name}'s renewal {made + 1}");
        }

        Assert.Empty(broker.ExtensionsOf(started["b"].Lease));
        foreach (var name in new[] { "a", "c" })
        {
            // Each extension comes when half the lease it extends is spent, before it runs out.
            var expires = started[name].LeaseExpiresAt;
            foreach (var at in broker.ExtensionsOf(started[name].Lease))
            {
                Assert.Equal(expires - (Lease / 2), at);
                expires = at + Lease;
            }
        }

        // Well past the leases they were received with, nobody else can take a or c.
        Assert.True(clock.GetUtcNow() - start > TimeSpan.FromSeconds(15));
        Assert.Empty(await inner.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 10, Wait = TimeSpan.Zero }, default));
        finish["a"].SetResult();
        finish["c"].SetResult();
        await Wait.UntilAsync(() => consumer.Status.Handled == 3, "a and c are handled");
        Assert.Equal(0, consumer.Status.LeasesLost);
    }

    [Fact]
    public async Task a_handler_past_its_timeout_has_its_lease_no_longer_renewed_so_its_message_is_delivered_again()
    {
        var clock = new ManualTimeProvider();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new ExtensionRecordingBroker(inner, clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = Lease }, default);
        var handling = new TaskCompletionSource<Delivery>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 1, HandlerTimeout = TimeSpan.FromSeconds(3) },
            async (context, _) =>
            {
                // A handler that ignores its token: stuck in a call that cannot be cancelled.
                handling.TrySetResult(context.Delivery);
                await release.Task;
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("\"stuck\"")));
        var delivery = await handling.Task.Bounded();
        Assert.Equal(1, consumer.LeasesRenewed);

        // Past the timeout, then past half the lease: the renewal loop lets the lease go instead of extending it.
        await RenewalLoopSleepsUntilAsync(clock, delivery.LeaseExpiresAt - (Lease / 2));
        clock.Advance(TimeSpan.FromSeconds(3));
        clock.Advance(TimeSpan.FromSeconds(2));
        await Wait.UntilAsync(() => consumer.LeasesRenewed == 0, "the timed-out handling's lease is let go");
        Assert.Empty(broker.ExtensionsOf(delivery.Lease));

        // Once the lease has run out, the message goes to whoever receives next.
        clock.Advance(TimeSpan.FromSeconds(5) + TimeSpan.FromTicks(1));
        var again = Assert.Single(await inner.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 10, Wait = TimeSpan.Zero }, default));
        Assert.Equal(delivery.Message.Id, again.Message.Id);
        Assert.Empty(broker.ExtensionsOf(delivery.Lease));
        release.SetResult();
    }

    [Fact]
    public async Task a_prefetched_delivery_waiting_behind_a_slow_handler_keeps_its_lease_and_is_handled_once()
    {
        var clock = new ManualTimeProvider();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new ExtensionRecordingBroker(inner, clock);
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = Lease }, default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("\"slow\"")));
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("\"waiting\"")));
        var started = new ConcurrentDictionary<string, Delivery>(StringComparer.Ordinal);
        var finishSlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 2, HandlerTimeout = TimeSpan.FromMinutes(5) },
            async (context, ct) =>
            {
                var name = Encoding.UTF8.GetString(context.Message.Data.Span).Trim('"');
                started[name] = context.Delivery;
                if (name == "slow")
                {
                    await finishSlow.Task.WaitAsync(ct);
                }
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await Wait.UntilAsync(() => started.ContainsKey("slow"), "the slow message is being handled");

        // One receive took both: the second waits in the buffer for the only worker, its lease in the renewal loop.
        await Wait.UntilAsync(() => consumer.LeasesRenewed == 2, "both leases are kept");
        var expires = started["slow"].LeaseExpiresAt;

        // Three renewals each, a half lease apart: past the lease both were received with.
        for (var round = 1; round <= 3; round++)
        {
            var due = expires - (Lease / 2);
            await RenewalLoopSleepsUntilAsync(clock, due);
            clock.Advance(due - clock.GetUtcNow());
            await Wait.UntilAsync(() => broker.ExtendedLeases >= 2 * round, $"renewal round {round}");
            expires = due + Lease;
        }

        Assert.True(clock.GetUtcNow() > started["slow"].LeaseExpiresAt);
        Assert.Empty(await inner.ReceiveAsync("work", new ReceiveOptions { MaxMessages = 10, Wait = TimeSpan.Zero }, default));

        finishSlow.SetResult();
        await Wait.UntilAsync(() => consumer.Status.Handled == 2, "both are handled");
        Assert.Equal(3, broker.ExtensionsOf(started["waiting"].Lease).Count);
        Assert.Equal(0, consumer.Status.LeasesLost);
        await Wait.UntilAsync(() => consumer.LeasesRenewed == 0, "no lease is kept once both are settled");
    }

    [Fact]
    public async Task a_prefetched_delivery_whose_lease_is_lost_while_it_waits_is_never_handled()
    {
        var clock = new ManualTimeProvider();
        var inner = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = clock }), new InMemoryCheckpointStore());
        var broker = new ExtensionRecordingBroker(inner, clock) { LoseLeaseOf = "\"waiting\"" };
        await broker.DeclareQueueAsync(new QueueDefinition("work") { Lease = Lease }, default);
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("\"slow\"")));
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("\"waiting\"")));
        var started = new ConcurrentQueue<string>();
        var finishSlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("work") { Concurrency = 1, Prefetch = 2, HandlerTimeout = TimeSpan.FromMinutes(5) },
            async (context, ct) =>
            {
                var name = Encoding.UTF8.GetString(context.Message.Data.Span).Trim('"');
                started.Enqueue(name);
                if (name == "slow")
                {
                    await finishSlow.Task.WaitAsync(ct);
                }
            },
            timeProvider: clock);
        await consumer.StartAsync(default);
        await Wait.UntilAsync(() => started.Contains("slow"), "the slow message is being handled");
        await Wait.UntilAsync(() => consumer.LeasesRenewed == 2, "both leases are kept");

        // The waiting message's renewal finds its lease gone (another receiver holds it): it is let go.
        var due = (await broker.FirstLeaseExpiryAsync()) - (Lease / 2);
        await RenewalLoopSleepsUntilAsync(clock, due);
        clock.Advance(due - clock.GetUtcNow());
        await Wait.UntilAsync(() => consumer.LeasesRenewed == 1, "the lost lease is no longer kept");

        finishSlow.SetResult();
        await Wait.UntilAsync(() => consumer.Status.LeasesLost == 1, "the waiting message is let go unhandled");
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the slow message is handled");
        Assert.Equal(["slow"], started);
    }

    /// <summary>
    /// Waits until the renewal loop has armed its timer for <paramref name="due"/>. The loop arms it relative to the
    /// clock as it reads it, so a clock moved on before that would leave the timer due later than the renewal, and the
    /// test waiting for a renewal that never comes; how fast the loop gets to sleep must not decide the outcome.
    /// </summary>
    private static Task RenewalLoopSleepsUntilAsync(ManualTimeProvider clock, DateTimeOffset due) =>
        Wait.UntilAsync(() => clock.DueTimes.Contains(due), $"the renewal loop sleeps until {due:HH:mm:ss.fff}");

    /// <summary>A broker that notes when each lease is extended.</summary>
    private sealed class ExtensionRecordingBroker(IMessageBroker inner, TimeProvider clock) : DelegatingMessageBroker(inner)
    {
        private readonly ConcurrentQueue<(LeaseToken Lease, DateTimeOffset At)> _extensions = new();
        private readonly ConcurrentDictionary<LeaseToken, string> _bodies = new();
        private readonly TaskCompletionSource<DateTimeOffset> _firstExpiry = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The body of a message whose every extension is refused as a lost lease.</summary>
        public string? LoseLeaseOf { get; init; }

        public int ExtendedLeases => _extensions.Count;

        public List<DateTimeOffset> ExtensionsOf(LeaseToken lease) => [.. _extensions.Where(e => e.Lease == lease).Select(e => e.At)];

        public Task<DateTimeOffset> FirstLeaseExpiryAsync() => _firstExpiry.Task.Bounded();

        public override async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
        {
            var deliveries = await Inner.ReceiveAsync(queue, options, cancellationToken);
            foreach (var delivery in deliveries)
            {
                _bodies[delivery.Lease] = Encoding.UTF8.GetString(delivery.Message.Data.Span);
                _firstExpiry.TrySetResult(delivery.LeaseExpiresAt);
            }

            return deliveries;
        }

        public override async Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
        {
            if (LoseLeaseOf is not null && _bodies.TryGetValue(lease, out var body) && body == LoseLeaseOf)
            {
                throw new LeaseLostException(lease, "another receiver holds the message");
            }

            var at = clock.GetUtcNow();
            await Inner.ExtendLeaseAsync(lease, duration, cancellationToken);
            _extensions.Enqueue((lease, at));
        }
    }
}
