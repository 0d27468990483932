using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The transport registered with <c>UseRabbitMq</c> beside the SQLite backend: hosted consumers, the relay, and the
/// fault test, which kills and restarts a broker of its own while messages go out through the outbox.
/// </summary>
public sealed partial class HostingTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "cairn-rabbitmq-test-" + Guid.NewGuid().ToString("N"));

    public HostingTests() => Directory.CreateDirectory(_directory);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private IHost Host(string uri, QueueName queue, string consumer, int concurrency = 4, Action<IServiceCollection>? more = null, Func<RabbitMqOptions, RabbitMqOptions>? rabbit = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        more?.Invoke(builder.Services);
        builder.Services.AddCairn(o => o
                .UseSqlite($"Data Source={Path.Combine(_directory, "cairn.db")}")
                .UseRabbitMq(uri, r => (rabbit ?? (o => o))(r with { RelayPollWait = TimeSpan.FromMilliseconds(200), ReconnectDelay = TimeSpan.FromMilliseconds(100), MaxReconnectDelay = TimeSpan.FromSeconds(1) })))
            .AddQueue(queue)
            .AddConsumer(
                queue,
                HandledEffects.HandleAsync,
                c => new ConsumerOptions(c.Queue, consumer) { Concurrency = concurrency, PollWait = TimeSpan.FromSeconds(1), Retry = c.Retry with { InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(1) } });
        return builder.Build();
    }

    private static OutgoingMessage Numbered(int n) => new("test.message", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static Task<Dictionary<string, int>> EffectsAsync(IHost host) => HandledEffects.CountAsync(host.Services.GetRequiredService<IEventStore>());

    [Fact]
    public async Task use_rabbitmq_wraps_the_backend_and_a_message_delivered_twice_is_handled_once()
    {
        var queue = new QueueName(RabbitMqServer.NewName("hosted"));
        // One at a time: the repeat is handled after the first copy's commit, so the inbox check before the handler sees it.
        using var host = Host(RabbitMqServer.Uri, queue, "billing", concurrency: 1);
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        var once = Numbered(1);

        // The same message id twice: as the relay does when it crashes between a confirm and the outbox acknowledgement.
        await broker.SendAsync(queue, once);
        await broker.SendAsync(queue, once);
        await broker.SendAsync(queue, Numbered(2));
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("billing")!.Status is { Handled: 2, Duplicates: 1 }, "both messages were handled and the repeat recognised");

        Assert.All((await EffectsAsync(host)).Values, count => Assert.Equal(1, count));
        Assert.Equal(2, (await EffectsAsync(host)).Count);
        Assert.IsType<SqliteMessageBroker>(((RabbitMqMessageBroker)((Diagnostics.InstrumentedMessageBroker)broker).Inner).Backend);
        await host.StopAsync();
    }

    [Fact]
    public async Task after_the_broker_is_killed_and_restarted_every_outbox_message_is_delivered_and_none_is_handled_twice()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("fault"));
        using var host = Host(rabbit.Uri, queue, "fault");
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        const int Total = 300;
        var sent = 0;

        async Task SendAsync(int count)
        {
            for (var i = 0; i < count; i += 10)
            {
                await broker.SendBatchAsync(queue, Enumerable.Range(sent, 10).Select(Numbered));
                sent += 10;
            }
        }

        await SendAsync(100);
        await Wait.UntilAsync(() => monitor.Find("fault")!.Status.Handled > 0, "the consumer handled a first message");
        await rabbit.HaltAsync();

        // The outbox is the backend's: sends commit while RabbitMQ is down, and wait there.
        await SendAsync(100);
        await rabbit.ResumeAsync();
        await SendAsync(100);

        await Wait.UntilAsync(() => monitor.Find("fault")!.Status.Handled >= Total, $"all {Total} messages were handled (handled so far: {monitor.Find("fault")!.Status.Handled})");
        var effects = await EffectsAsync(host);
        Assert.Equal(Total, effects.Count);
        Assert.All(effects.Values, count => Assert.Equal(1, count));
        Assert.Equal(Total, monitor.Find("fault")!.Status.Handled);

        // The relay acknowledges a message in the outbox only once RabbitMQ's confirm is back, which may come after
        // the consumer has already handled it: the outbox empties a little after the last handling, not with it.
        var backend = ((RabbitMqMessageBroker)((Diagnostics.InstrumentedMessageBroker)broker).Inner).Backend;
        await Wait.UntilAsync(
            async () => await backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default) is { Visible: 0, Leased: 0, Delayed: 0 },
            "the relay acknowledged every confirmed message in the outbox");
        await host.StopAsync();
    }

    [Fact]
    public async Task the_messaging_health_check_is_unhealthy_while_the_broker_is_down_and_healthy_once_it_is_back()
    {
        await using var rabbit = await OwnRabbitMq.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("health"));
        using var host = Host(rabbit.Uri, queue, "health", more: s => s.AddHealthChecks().AddCairn(h => h with { Timeout = TimeSpan.FromSeconds(2) }));
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        async Task<HealthReportEntry> MessagingAsync() =>
            (await health.CheckHealthAsync(r => r.Name == CairnHealthCheckExtensions.MessagingCheck)).Entries[CairnHealthCheckExtensions.MessagingCheck];

        var healthy = await MessagingAsync();
        Assert.Equal(HealthStatus.Healthy, healthy.Status);
        Assert.Equal(1, healthy.Data["queues"]);

        await rabbit.HaltAsync();
        var down = await MessagingAsync();
        await Wait.UntilAsync(() => (down = MessagingAsync().GetAwaiter().GetResult()).Description!.Contains("rabbitmq: ", StringComparison.Ordinal), "the transport reports the broker down");
        Assert.Equal(HealthStatus.Unhealthy, down.Status);
        Assert.Contains($"queue '{queue}': its statistics cannot be read", down.Description);
        Assert.Matches("rabbitmq: (the (consuming|publishing) connection to RabbitMQ at 127.0.0.1:[0-9]+ is down and recovering|RabbitMQ at 127.0.0.1:[0-9]+ cannot be reached)", down.Description);

        // Sends wait in the outbox meanwhile; once the broker is back, the relay delivers them and the check recovers.
        await host.Services.GetRequiredService<IMessageBroker>().SendBatchAsync(queue, Enumerable.Range(0, 10).Select(Numbered));
        await rabbit.ResumeAsync();
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("health")!.Status.Handled == 10, "the messages sent while the broker was down were handled");
        await Wait.UntilAsync(() => MessagingAsync().GetAwaiter().GetResult().Status == HealthStatus.Healthy, "the check is healthy again");
        await host.StopAsync();
    }

    [Fact]
    public async Task with_cluster_nodes_the_connection_moves_to_another_node_when_its_node_goes_down()
    {
        await using var a = await OwnRabbitMq.StartAsync();
        await using var b = await OwnRabbitMq.StartAsync();
        var queue = new QueueName(RabbitMqServer.NewName("failover"));
        using var host = Host(a.Uri, queue, "failover", rabbit: r => r with { ClusterNodes = [$"127.0.0.1:{new Uri(b.Uri).Port}"] });
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        var transport = (RabbitMqMessageBroker)((Diagnostics.InstrumentedMessageBroker)broker).Inner;
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await broker.SendBatchAsync(queue, Enumerable.Range(0, 10).Select(Numbered));
        await Wait.UntilAsync(() => monitor.Find("failover")!.Status.Handled == 10, "the first messages were handled");

        // The two nodes are not clustered here, so what the first one held stays there; the connection, the queue's
        // declaration, the consumer and the relay's publishes move to the other.
        // The publishing connection opened beside the consuming one, on its node.
        var first = (await transport.Connection.GetAsync(default)).Endpoint.Port;
        Assert.Equal(first, transport.Connection.OpenedPublishing!.Endpoint.Port);
        await (first == new Uri(a.Uri).Port ? a : b).HaltAsync();
        await broker.SendBatchAsync(queue, Enumerable.Range(10, 10).Select(Numbered));
        await Wait.UntilAsync(() => monitor.Find("failover")!.Status.Handled == 20, $"the messages sent after the node went down were handled (so far {monitor.Find("failover")!.Status.Handled})");

        Assert.NotEqual(first, (await transport.Connection.GetAsync(default)).Endpoint.Port);
        Assert.NotEqual(first, transport.Connection.OpenedPublishing!.Endpoint.Port);
        var effects = await EffectsAsync(host);
        Assert.Equal(20, effects.Count);
        Assert.All(effects.Values, count => Assert.Equal(1, count));
        await host.StopAsync();
    }

    [Fact]
    public async Task a_relay_that_is_not_running_reports_itself_degraded()
    {
        await using var broker = new RabbitMqMessageBroker(new Messaging.InMemory.InMemoryMessageBroker(new EventStore.InMemory.InMemoryEventStore(new EventStoreOptions()), new Subscriptions.InMemoryCheckpointStore()), new RabbitMqOptions { Uri = new Uri(RabbitMqServer.Uri) });
        var relay = new RabbitMqOutboxRelay(broker);
        var result = await relay.CheckHealthAsync(new Diagnostics.CairnHealthOptions(), default);
        Assert.Equal(HealthStatus.Degraded, result.Status);
        Assert.Matches("^the outbox relay for RabbitMQ at 127.0.0.1:[0-9]+ is not running$", result.Description);
    }

    [Fact]
    public async Task a_hosted_consumer_of_a_fifo_queue_handles_each_group_in_order_beside_rabbitmq_queues()
    {
        var ledger = new QueueName(RabbitMqServer.NewName("ledger"));
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o
                .UseSqlite($"Data Source={Path.Combine(_directory, "cairn.db")}")
                .UseRabbitMq(RabbitMqServer.Uri, r => r with { RelayPollWait = TimeSpan.FromMilliseconds(200) }))
            .AddQueue(ledger, q => q with { Fifo = true })
            .AddConsumer(
                ledger,
                (context, _) =>
                {
                    // Each group's entries go to a stream of their own, in the order the consumer handled them.
                    context.Append(new StreamName($"ledger-{context.Message.Subject}"), ExpectedVersion.Any, new EventData(MessageId.New(), "entry.posted", context.Message.Data.ToArray()));
                    return ValueTask.CompletedTask;
                },
                c => new ConsumerOptions(c.Queue, "bookkeeper") { Concurrency = 4, PollWait = TimeSpan.FromSeconds(1) });
        using var host = builder.Build();
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        var groups = new[] { "a", "b", "c" };
        const int PerGroup = 20;

        // Interleaved across groups, sent in several commits.
        for (var n = 0; n < PerGroup; n += 5)
        {
            await broker.SendBatchAsync(ledger, Enumerable.Range(n, 5).SelectMany(i => groups.Select(g => Numbered(i) with { GroupKey = g, Subject = g })));
        }

        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("bookkeeper")!.Status.Handled == groups.Length * PerGroup, "every entry was handled");
        var store = host.Services.GetRequiredService<IEventStore>();
        foreach (var group in groups)
        {
            var handled = await store.ReadStreamAsync(new StreamName($"ledger-{group}")).Select(e => Encoding.UTF8.GetString(e.Data.Span)).ToListAsync();
            Assert.Equal(Enumerable.Range(0, PerGroup).Select(n => $"{{\"n\":{n}}}"), handled);
        }

        Assert.Equal(0, (await broker.GetStatsAsync(ledger, default)).Visible);
        Assert.Contains(await broker.ListQueuesAsync(default), q => q.Name == ledger && q.Fifo);
        await host.StopAsync();
    }
}
