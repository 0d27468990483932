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
}
