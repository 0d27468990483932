using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Projections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Diagnostics;

/// <summary>
/// <c>AddHealthChecks().AddCairn()</c> on the in-memory backend: the storage, messaging and processing checks, healthy
/// and each way they turn degraded or unhealthy.
/// </summary>
public sealed class HealthCheckTests
{
    private static IHost Host(
        Action<CairnBuilder> cairn,
        Func<CairnHealthOptions, CairnHealthOptions>? health = null,
        Func<IServiceProvider, EventStoreOptions, IEventStore>? store = null,
        Func<IMessageBroker, IMessageBroker>? transport = null,
        HealthStatus? failureStatus = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        cairn(builder.Services.AddCairn(o =>
        {
            if (store is null)
            {
                o.UseInMemory();
            }
            else
            {
                // A store under test, with no broker (the in-memory broker needs the in-memory store itself).
                o.UseBackend("wrapped in-memory", store, _ => new Subscriptions.InMemoryCheckpointStore());
            }

            if (transport is not null)
            {
                o.UseTransport("test", (_, inner) => transport(inner));
            }

            o.EventTypes.Register<OrderPlaced>().Register<OrderLineAdded>().Register<OrderShipped>();
        }));
        builder.Services.AddHealthChecks().AddCairn(health, ["ready"], failureStatus);
        return builder.Build();
    }

    private static async Task<HealthReportEntry> CheckAsync(IHost host, string name)
    {
        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Name == name);
        return report.Entries[name];
    }

    [Fact]
    public async Task a_started_host_with_every_kind_of_worker_is_healthy_on_all_three_checks()
    {
        using var host = Host(b => b
            .AddQueue("orders")
            .AddConsumer("orders", (_, _) => ValueTask.CompletedTask)
            .AddSubscription("audit", (_, _, _) => ValueTask.CompletedTask)
            .AddProjection(new EventTally())
            .AddTopic("shop")
            .AddEventRoute("orders-out", EventFilter.ForCategory("order"), "shop"));
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        var monitor = host.Services.GetRequiredService<SubscriptionMonitor>();
        await Wait.UntilAsync(() => monitor.Statuses.All(s => s.State == Subscriptions.SubscriptionState.Live), "the subscription is live");

        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        Assert.Equal(
            [CairnHealthCheckExtensions.MessagingCheck, CairnHealthCheckExtensions.ProcessingCheck, CairnHealthCheckExtensions.StorageCheck],
            report.Entries.Keys.Order(StringComparer.Ordinal));
        Assert.All(report.Entries.Values, e => Assert.Equal(HealthStatus.Healthy, e.Status));
        Assert.All(report.Entries.Values, e => Assert.Equal(["cairn", "ready"], e.Tags.Order(StringComparer.Ordinal)));
        Assert.Equal(1L, report.Entries[CairnHealthCheckExtensions.StorageCheck].Data["head"]);
        Assert.Equal(1, report.Entries[CairnHealthCheckExtensions.MessagingCheck].Data["queues"]);
        Assert.Equal(4, report.Entries[CairnHealthCheckExtensions.ProcessingCheck].Data["workers"]);
        await host.StopAsync();
    }

    [Fact]
    public async Task workers_that_are_not_running_make_processing_degraded_and_are_named()
    {
        using var host = Host(b => b
            .AddQueue("orders")
            .AddConsumer("orders", (_, _) => ValueTask.CompletedTask)
            .AddSubscription("audit", (_, _, _) => ValueTask.CompletedTask));

        // As while the host starts: its hosted services are made (the monitors know the workers), none runs yet.
        host.Services.GetServices<IHostedService>().ToList();
        var entry = await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck);
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Contains("subscription 'audit': not running", entry.Description);
        Assert.Contains("consumer 'orders' of queue 'orders': not running", entry.Description);
    }

    [Fact]
    public async Task a_subscription_retrying_a_failure_is_degraded_and_one_that_gave_up_is_unhealthy()
    {
        using var host = Host(b => b
            .AddSubscription("retrying", (_, _, _) => throw new InvalidOperationException("the ledger is locked"), s => s.Configure(o => o with { RetryDelay = TimeSpan.FromMilliseconds(10) }))
            .AddSubscription("gave-up", (_, _, _) => throw new InvalidOperationException("the ledger is gone"), s => s.Configure(o => o with { MaxRetries = 0 })));
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        var monitor = host.Services.GetRequiredService<SubscriptionMonitor>();
        await Wait.UntilAsync(() => monitor.Find("gave-up")!.Status.State == Subscriptions.SubscriptionState.Stopped && monitor.Find("retrying")!.Status.Failures > 0, "both subscriptions failed");

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck);
        Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        Assert.Contains("subscription 'gave-up': gave up after", entry.Description);
        Assert.Contains("threw on event", entry.Description);
        Assert.Contains("the ledger is gone)", entry.Description);
        Assert.Contains("subscription 'retrying': failed", entry.Description);
        Assert.Contains("the ledger is locked", entry.Description);

        // The worst first.
        Assert.StartsWith("subscription 'gave-up'", entry.Description);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_route_retrying_a_failed_publish_is_degraded_until_it_succeeds()
    {
        // The route's topic is not declared: each publish fails, and the route retries from its checkpoint.
        using var host = Host(b => b.AddEventRoute("orders-out", EventFilter.ForCategory("order"), "shop"));
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        var routes = host.Services.GetRequiredService<RouteMonitor>();
        await Wait.UntilAsync(() => routes.Find("orders-out")!.Status.FailuresInARow > 0, "the route failed");

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck);
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Matches("^route 'orders-out' to topic 'shop': failed [0-9]+ time\\(s\\) in a row, retrying \\(.+\\)$", entry.Description);

        await host.Services.GetRequiredService<IMessageBroker>().DeclareTopicAsync("shop", default);
        await Wait.UntilAsync(() => routes.Find("orders-out")!.Status.Position.Value == 1, "the route published once the topic exists");
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck)).Status);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_projection_stopped_at_an_event_is_unhealthy_and_names_the_position()
    {
        using var host = Host(b => b.AddProjection(new Breaking()));
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await Wait.UntilAsync(() => monitor.Find("breaking")!.Status.State == ProjectionState.Failed, "the projection stopped");

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck);
        Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        Assert.Contains("projection 'breaking': stopped at position 1", entry.Description);
        Assert.Contains("no orders today", entry.Description);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_projection_whose_rebuild_stopped_at_an_event_is_degraded_while_its_serving_build_goes_on()
    {
        var projection = new Breaking { Refusing = false };
        using var host = Host(b => b.AddProjection(projection));
        await host.StartAsync();
        var appended = await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        var monitor = host.Services.GetRequiredService<ProjectionMonitor>();
        await monitor.WaitForAsync("breaking", appended.LastPosition, TimeSpan.FromSeconds(30));
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck)).Status);

        projection.Refusing = true;
        await Assert.ThrowsAsync<ProjectionStoppedException>(() => monitor.RebuildAsync("breaking").Bounded());

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck);
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Matches("^projection 'breaking': its rebuild into build [0-9]+ stopped at position 1, the serving build goes on \\(.*no orders today.*\\)$", entry.Description);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_queue_whose_oldest_message_waits_too_long_or_that_holds_dead_letters_is_degraded()
    {
        using var host = Host(b => b.AddQueue("orders").AddQueue("late"), h => h with { MaxQueueAge = TimeSpan.FromMilliseconds(1) });
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(host, CairnHealthCheckExtensions.MessagingCheck)).Status);

        await broker.SendAsync("late", new OutgoingMessage("order.placed", "{}"u8.ToArray()));
        await broker.SendAsync("orders", new OutgoingMessage("order.placed", "{}"u8.ToArray()));
        var delivery = Assert.Single(await broker.ReceiveAsync("orders", new ReceiveOptions { MaxMessages = 1 }, default));
        await broker.DeadLetterAsync(delivery.Lease, "unreadable", null, default);
        HealthReportEntry entry = default;
        await Wait.UntilAsync(
            () => (entry = CheckAsync(host, CairnHealthCheckExtensions.MessagingCheck).GetAwaiter().GetResult()).Description!.Contains("queue 'late': its oldest message has waited", StringComparison.Ordinal),
            "the waiting message is older than the limit");
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Contains("queue 'orders': 1 dead letter(s)", entry.Description);
        Assert.Equal(1L, entry.Data["dead_letters"]);
        await host.StopAsync();
    }

    [Fact]
    public async Task the_messages_figure_counts_fifo_messages_parked_behind_a_dead_letter()
    {
        using var host = Host(b => b.AddQueue("ledger", q => q with { Fifo = true }));
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        foreach (var n in new[] { 1, 2, 3 })
        {
            await broker.SendAsync("ledger", new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}")) { GroupKey = "account-1" });
        }

        var head = Assert.Single(await broker.ReceiveAsync("ledger", new ReceiveOptions { MaxMessages = 10 }, default));
        await broker.DeadLetterAsync(head.Lease, "unreadable", null, default);
        Assert.Equal(2L, (await broker.GetStatsAsync("ledger", default))!.Parked);

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.MessagingCheck);
        Assert.Equal(2L, entry.Data["messages"]);
        Assert.Equal(1L, entry.Data["dead_letters"]);
        await host.StopAsync();
    }

    [Fact]
    public async Task dead_letters_need_not_degrade_the_messaging_check()
    {
        using var host = Host(b => b.AddQueue("orders"), h => h with { DeadLettersDegrade = false });
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        await broker.SendAsync("orders", new OutgoingMessage("order.placed", "{}"u8.ToArray()));
        var delivery = Assert.Single(await broker.ReceiveAsync("orders", new ReceiveOptions { MaxMessages = 1 }, default));
        await broker.DeadLetterAsync(delivery.Lease, "unreadable", null, default);

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.MessagingCheck);
        Assert.Equal(HealthStatus.Healthy, entry.Status);
        Assert.Equal(1L, entry.Data["dead_letters"]);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_log_that_fails_or_hangs_is_unhealthy_within_the_time_out()
    {
        var hang = new TaskCompletionSource();
        Exception? failure = new InvalidOperationException("disk I/O error");
        using var host = Host(
            _ => { },
            h => h with { Timeout = TimeSpan.FromMilliseconds(200) },
            (_, options) => new Flaky(new InMemoryEventStore(options), () => failure, hang.Task));

        var failed = await CheckAsync(host, CairnHealthCheckExtensions.StorageCheck);
        Assert.Equal(HealthStatus.Unhealthy, failed.Status);
        Assert.Equal("The log does not answer: disk I/O error", failed.Description);
        Assert.IsType<InvalidOperationException>(failed.Exception);

        failure = null;
        var hung = await CheckAsync(host, CairnHealthCheckExtensions.StorageCheck).WaitAsync(Wait.Timeout);
        Assert.Equal(HealthStatus.Unhealthy, hung.Status);
        Assert.Equal("The log does not answer: no answer within 0.2 s", hung.Description);

        hang.SetResult();
        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(host, CairnHealthCheckExtensions.StorageCheck)).Status);
        var messaging = await CheckAsync(host, CairnHealthCheckExtensions.MessagingCheck);
        Assert.Equal(HealthStatus.Healthy, messaging.Status);
        Assert.Equal("The wrapped in-memory backend has no message broker.", messaging.Description);
    }

    [Fact]
    public async Task a_failure_status_given_replaces_unhealthy()
    {
        using var host = Host(_ => { }, store: (_, options) => new Flaky(new InMemoryEventStore(options), () => new InvalidOperationException("disk I/O error"), Task.CompletedTask), failureStatus: HealthStatus.Degraded);
        var entry = await CheckAsync(host, CairnHealthCheckExtensions.StorageCheck);
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Equal("The log does not answer: disk I/O error", entry.Description);
    }

    [Fact]
    public async Task a_subscription_stopped_by_its_owner_after_a_failure_is_not_running_rather_than_given_up()
    {
        var fail = true;
        using var host = Host(b => b.AddSubscription("audit", (_, _, _) => fail ? throw new InvalidOperationException("the ledger is locked") : ValueTask.CompletedTask, s => s.Configure(o => o with { RetryDelay = TimeSpan.FromMilliseconds(10), MaxRetries = 5 })));
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync(Orders.Stream("o-1"), ExpectedVersion.Any, [Orders.Placed("o-1", "c-1", 10m)]);
        var subscription = host.Services.GetRequiredService<SubscriptionMonitor>().Find("audit")!;
        await Wait.UntilAsync(() => subscription.Status.LastError is not null, "the subscription failed once");
        fail = false;
        await subscription.StopAsync(default);

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.ProcessingCheck);
        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Equal("subscription 'audit': not running", entry.Description);
        await host.StopAsync();
    }

    [Fact]
    public async Task queues_whose_statistics_hang_are_read_at_once_and_each_read_is_cancelled_at_the_time_out()
    {
        var hanging = new HangingStats();
        using var host = Host(
            b =>
            {
                for (var i = 0; i < 8; i++)
                {
                    b.AddQueue($"q{i}");
                }
            },
            h => h with { Timeout = TimeSpan.FromMilliseconds(300) },
            transport: inner => hanging.Wrap(inner));
        await host.StartAsync();
        hanging.Hang = true;

        var entry = await CheckAsync(host, CairnHealthCheckExtensions.MessagingCheck);
        Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        Assert.Equal(8, System.Text.RegularExpressions.Regex.Matches(entry.Description!, @"queue 'q[0-7]': its statistics cannot be read \(no answer within 0\.3 s\)").Count);

        // All eight were in flight together (one after another, the check would take eight time-outs), and each
        // read's token was cancelled, so none is left hanging. (A metrics collection of another test may read the
        // broker's queues too; its reads give up after their own time-out.)
        Assert.True(hanging.MostAtOnce >= 8, $"at most {hanging.MostAtOnce} reads were in flight at once");
        await Wait.UntilAsync(() => hanging.InFlight == 0, "every hung read was cancelled");
        Assert.True(hanging.Cancelled >= 8);
        await host.StopAsync();
    }

    [Theory]
    [InlineData("Timeout")]
    [InlineData("MaxQueueAge")]
    [InlineData("MaxOutboxAge")]
    [InlineData("MaxProjectionLag")]
    public void a_threshold_that_is_not_a_positive_time_is_refused_by_name(string name)
    {
        var services = new ServiceCollection();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => services.AddHealthChecks().AddCairn(o => name switch
        {
            "Timeout" => o with { Timeout = TimeSpan.Zero },
            "MaxQueueAge" => o with { MaxQueueAge = TimeSpan.FromSeconds(-1) },
            "MaxOutboxAge" => o with { MaxOutboxAge = Timeout.InfiniteTimeSpan },
            _ => o with { MaxProjectionLag = TimeSpan.Zero },
        }));
        Assert.Equal(name, ex.ParamName);
        Assert.Contains($"CairnHealthOptions.{name}", ex.Message);
    }

    private sealed class Breaking : Projection
    {
        public Breaking()
            : base("breaking")
        {
            Document<Tally>(t => t.Id);
            On<OrderPlaced>((_, _) =>
            {
                if (Refusing)
                {
                    throw new InvalidOperationException("no orders today");
                }
            });
            MaxRetries = 0;
        }

        public volatile bool Refusing = true;
    }

    /// <summary>A broker whose statistics reads, once <see cref="Hang"/> is set, wait until cancelled.</summary>
    private sealed class HangingStats
    {
        private int _inFlight;
        private int _mostAtOnce;
        private int _cancelled;

        public volatile bool Hang;

        public int MostAtOnce => Volatile.Read(ref _mostAtOnce);

        public int InFlight => Volatile.Read(ref _inFlight);

        public int Cancelled => Volatile.Read(ref _cancelled);

        public IMessageBroker Wrap(IMessageBroker inner) => new Broker(inner, this);

        private sealed class Broker(IMessageBroker inner, HangingStats owner) : DelegatingMessageBroker(inner)
        {
            public override async Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
            {
                if (!owner.Hang)
                {
                    return await base.GetStatsAsync(queue, cancellationToken);
                }

                var now = Interlocked.Increment(ref owner._inFlight);
                InterlockedMax(ref owner._mostAtOnce, now);
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                    throw new InvalidOperationException("unreachable");
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref owner._cancelled);
                    throw;
                }
                finally
                {
                    Interlocked.Decrement(ref owner._inFlight);
                }
            }

            private static void InterlockedMax(ref int target, int value)
            {
                var seen = Volatile.Read(ref target);
                while (value > seen && Interlocked.CompareExchange(ref target, value, seen) is var previous && previous != seen)
                {
                    seen = previous;
                }
            }
        }
    }

    /// <summary>A store whose head read fails while <c>failure</c> gives an exception, and otherwise waits for <c>hang</c>.</summary>
    private sealed class Flaky(IEventStore inner, Func<Exception?> failure, Task hang) : DelegatingEventStore(inner)
    {
        public override async ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken)
        {
            if (failure() is { } ex)
            {
                throw ex;
            }

            await hang.WaitAsync(cancellationToken);
            return await Inner.GetHeadPositionAsync(cancellationToken);
        }
    }
}
