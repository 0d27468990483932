using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Postgres;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The transport beside the PostgreSQL backend, as a team that outgrew one machine runs it: events and the outbox
/// commit in one PostgreSQL transaction, the relay publishes to RabbitMQ, and the consumer's effects, inbox record and
/// acknowledgement commit in PostgreSQL. Each test has a schema of its own, dropped at the end.
/// </summary>
public sealed class PostgresBackendTests : IAsyncLifetime
{
    private readonly string _schema = "rmq_" + Guid.NewGuid().ToString("N");

    private static string ConnectionString
    {
        get
        {
            var connectionString = Environment.GetEnvironmentVariable("CAIRN_POSTGRES");
            return string.IsNullOrWhiteSpace(connectionString)
                ? throw new InvalidOperationException("CAIRN_POSTGRES is not set. Run ./test.sh, which starts a throwaway PostgreSQL beside the RabbitMQ, or start one with tests/postgres.sh.")
                : connectionString;
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP SCHEMA IF EXISTS {_schema} CASCADE", connection);
        await drop.ExecuteNonQueryAsync();
    }

    [Fact]
    public async Task events_and_the_outbox_commit_in_postgres_and_each_message_is_handled_once_through_rabbitmq()
    {
        var queue = new QueueName(RabbitMqServer.NewName("pg-hosted"));
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o
                .UsePostgres(ConnectionString, p => p with { Schema = _schema })
                .UseRabbitMq(RabbitMqServer.Uri, r => r with { RelayPollWait = TimeSpan.FromMilliseconds(200), MaxReconnectDelay = TimeSpan.FromSeconds(1) }))
            .AddQueue(queue)
            .AddConsumer(
                queue,
                HandledEffects.HandleAsync,
                // One at a time: the repeat is handled after the first copy's commit, so the inbox check sees it.
                c => new ConsumerOptions(c.Queue, "pg-billing") { Concurrency = 1, PollWait = TimeSpan.FromSeconds(1) });
        using var host = builder.Build();
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        var store = host.Services.GetRequiredService<IEventStore>();

        // The order's event and its message commit together; the same message id sent again is a repeat.
        var placed = new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("{\"order\":1}"));
        await broker.AppendAndSendAsync(
            new AppendRequest(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData(MessageId.New(), "order.placed", Encoding.UTF8.GetBytes("{\"order\":1}"))]),
            queue,
            placed);
        await broker.SendAsync(queue, placed);
        await broker.SendAsync(queue, new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("{\"order\":2}")));

        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("pg-billing")!.Status is { Handled: 2, Duplicates: 1 }, "both messages were handled and the repeat recognised");

        var effects = await HandledEffects.CountAsync(store);
        Assert.Equal(2, effects.Count);
        Assert.All(effects.Values, count => Assert.Equal(1, count));
        Assert.Single(await store.ReadStreamAsync("order-1").ToListAsync());
        var transport = Assert.IsType<RabbitMqMessageBroker>(((Diagnostics.InstrumentedMessageBroker)broker).Inner);
        Assert.IsType<PostgresMessageBroker>(transport.Backend);
        await host.StopAsync();
    }

    [Fact]
    public async Task a_fifo_queue_kept_in_postgres_keeps_each_group_in_order_across_two_hosts()
    {
        var ledger = new QueueName(RabbitMqServer.NewName("pg-ledger"));
        var handled = new System.Collections.Concurrent.ConcurrentQueue<(string Host, string Group, int N)>();
        var secondTookOne = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        IHost Start(string name)
        {
            var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
            builder.Services.AddCairn(o => o
                    .UsePostgres(ConnectionString, p => p with { Schema = _schema })
                    .UseRabbitMq(RabbitMqServer.Uri, r => r with { RelayPollWait = TimeSpan.FromMilliseconds(200) }))
                .AddQueue(ledger, q => q with { Fifo = true })
                .AddConsumer(
                    ledger,
                    async (context, cancellationToken) =>
                    {
                        // The first host holds its first head until the second has handled one of another group, so
                        // both take part whatever the timing (bounded, so a second host that never does fails below).
                        if (name == "first" && handled.IsEmpty)
                        {
                            await Task.WhenAny(secondTookOne.Task, Task.Delay(TimeSpan.FromSeconds(20), cancellationToken));
                        }

                        if (name == "second")
                        {
                            secondTookOne.TrySetResult();
                        }

                        // The group's entries land in its stream in handling order; a second copy of a group's head
                        // in flight at once would show as a version conflict, since the appends expect no gap.
                        var n = int.Parse(Encoding.UTF8.GetString(context.Message.Data.Span), System.Globalization.CultureInfo.InvariantCulture);
                        context.Append(new StreamName($"ledger-{context.Message.Subject}"), n == 0 ? ExpectedVersion.NoStream : ExpectedVersion.Exactly(n - 1), new EventData(MessageId.New(), "entry.posted", context.Message.Data.ToArray()));
                        handled.Enqueue((name, context.Message.Subject!, n));
                    },
                    c => new ConsumerOptions(c.Queue, "pg-bookkeeper") { Concurrency = 1, Prefetch = 1, PollWait = TimeSpan.FromSeconds(1) });
            return builder.Build();
        }

        using var first = Start("first");
        using var second = Start("second");
        await first.StartAsync();
        await second.StartAsync();
        var broker = first.Services.GetRequiredService<IMessageBroker>();
        var groups = new[] { "a", "b", "c", "d" };
        const int PerGroup = 15;
        for (var n = 0; n < PerGroup; n++)
        {
            await broker.SendBatchAsync(ledger, groups.Select(g => new OutgoingMessage("entry.posted", Encoding.UTF8.GetBytes(n.ToString(System.Globalization.CultureInfo.InvariantCulture))) { GroupKey = g, Subject = g }));
        }

        // Handled counts a handling once its commit is done.
        long Committed(IHost host) => host.Services.GetRequiredService<ConsumerMonitor>().Find("pg-bookkeeper")!.Status.Handled;
        await Wait.UntilAsync(() => Committed(first) + Committed(second) >= groups.Length * PerGroup, "every entry was handled");
        var store = first.Services.GetRequiredService<IEventStore>();
        foreach (var group in groups)
        {
            var entries = await store.ReadStreamAsync(new StreamName($"ledger-{group}")).Select(e => Encoding.UTF8.GetString(e.Data.Span)).ToListAsync();
            Assert.Equal(Enumerable.Range(0, PerGroup).Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture)), entries);
        }

        // Each entry handled once, and both hosts took part.
        Assert.Equal(groups.Length * PerGroup, handled.Count);
        Assert.Equal(2, handled.Select(h => h.Host).Distinct().Count());
        Assert.Equal(0, (await broker.GetStatsAsync(ledger, default)).Visible);
        await second.StopAsync();
        await first.StopAsync();
    }
}
