using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.Messaging;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// A host over RabbitMQ at its edges: disposed without a stop (its start failed, or it was built for a command), with
/// AddCairn called twice, and its messaging check's data.
/// </summary>
public sealed class HostLifetimeTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "cairn-host-rmq-" + Guid.NewGuid().ToString("N"));

    public HostLifetimeTests() => Directory.CreateDirectory(_directory);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private sealed class FailsToStart : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => throw new InvalidOperationException("a later hosted service fails to start");

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private IHost Build(QueueName queue, Action<IServiceCollection>? more = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o
                .UseSqlite($"Data Source={Path.Combine(_directory, "cairn.db")}")
                .UseRabbitMq(RabbitMqServer.Uri, r => r with { RelayPollWait = TimeSpan.FromMilliseconds(200) }))
            .AddQueue(queue);
        more?.Invoke(builder.Services);
        return builder.Build();
    }

    /// <summary>
    /// A hosted service added after Cairn fails to start, so <c>RunAsync</c> throws and disposes the host without a
    /// stop: the container owns the relay and the broker, and closes the RabbitMQ connection.
    /// </summary>
    [Fact]
    public async Task a_host_whose_start_fails_after_the_relay_started_closes_the_rabbitmq_connection_when_disposed()
    {
        var queue = new QueueName(RabbitMqServer.NewName("leak"));
        var host = Build(queue, s => s.AddHostedService<FailsToStart>());
        var transport = (RabbitMqMessageBroker)((InstrumentedMessageBroker)host.Services.GetRequiredService<IMessageBroker>()).Inner;

        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => host.RunAsync());
        Assert.Equal("a later hosted service fails to start", failure.Message);

        // RunAsync has disposed the host and its container.
        Assert.True(transport.Connection.ConsumingIsOpen == false, "the RabbitMQ consuming connection is still open after the host was disposed");
    }

    /// <summary>The same without any start: a host built and disposed (as for a command of the CLI) whose broker was used.</summary>
    [Fact]
    public async Task a_built_host_whose_broker_was_used_closes_the_rabbitmq_connection_when_disposed()
    {
        var queue = new QueueName(RabbitMqServer.NewName("leak-built"));
        var host = Build(queue);
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var transport = (RabbitMqMessageBroker)((InstrumentedMessageBroker)broker).Inner;
        Assert.True(transport.Connection.ConsumingIsOpen);

        await ((IAsyncDisposable)host).DisposeAsync();

        Assert.True(transport.Connection.ConsumingIsOpen == false, "the RabbitMQ consuming connection is still open after the host was disposed");
    }

    /// <summary>
    /// docs/health-checks.md, "Over RabbitMQ": cairn-messaging's data carries <c>outbox_waiting</c> and the relay's
    /// <c>published</c> and <c>returned</c> counts, healthy or not.
    /// </summary>
    [Fact]
    public async Task the_messaging_check_carries_the_relays_data_as_documented()
    {
        var queue = new QueueName(RabbitMqServer.NewName("health"));
        using var host = Build(queue, s => s.AddHealthChecks().AddCairn());
        await host.StartAsync();
        try
        {
            var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Name == CairnHealthCheckExtensions.MessagingCheck);
            var entry = report.Entries[CairnHealthCheckExtensions.MessagingCheck];
            Assert.Equal(HealthStatus.Healthy, entry.Status);
            Assert.True(entry.Data.ContainsKey("outbox_waiting"), $"data has only: {string.Join(", ", entry.Data.Keys)}");
            Assert.True(entry.Data.ContainsKey("published"), $"data has only: {string.Join(", ", entry.Data.Keys)}");
            Assert.True(entry.Data.ContainsKey("returned"), $"data has only: {string.Join(", ", entry.Data.Keys)}");
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>
    /// A second <c>AddCairn</c> (a module adding its event types and queues) does not start the outbox relay twice: a
    /// second start left loops no stop cancelled, and the host's stop waited out its whole shutdown time-out.
    /// </summary>
    [Fact]
    public async Task a_host_with_two_add_cairn_calls_stops_promptly()
    {
        var queue = new QueueName(RabbitMqServer.NewName("twice"));
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(20));
        builder.Services.AddCairn(o => o
                .UseSqlite($"Data Source={Path.Combine(_directory, "cairn.db")}")
                .UseRabbitMq(RabbitMqServer.Uri, r => r with { RelayPollWait = TimeSpan.FromMilliseconds(200) }))
            .AddQueue(queue);
        builder.Services.AddCairn(_ => { }).AddQueue(new QueueName(queue.Value + "-b"));
        using var host = builder.Build();
        await host.StartAsync();

        var stopping = System.Diagnostics.Stopwatch.StartNew();
        await host.StopAsync();

        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(10), $"the stop took {stopping.Elapsed}");
    }
}
