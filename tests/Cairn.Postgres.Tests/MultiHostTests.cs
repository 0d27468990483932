using System.Net;
using System.Net.Sockets;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// A connection string that lists several hosts, as for a primary with standbys behind a failover manager: every
/// connection Cairn opens (the pool, the writer, the append and queue listeners, the migrator) goes through Npgsql's
/// multi-host data source and finds the host that is up and writable.
/// </summary>
public sealed class MultiHostTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<IAsyncDisposable> _opened = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _opened.Count - 1; i >= 0; i--)
        {
            await _opened[i].DisposeAsync();
        }

        await PostgresServer.DropSchemaAsync(_schema);
    }

    /// <summary>The tests' server listed second, after a port on which nothing listens, and only a primary accepted.</summary>
    private static string HostsWithOneDown()
    {
        // A port that was free a moment ago: connecting to it is refused.
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var down = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var builder = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString);
        builder.Host = $"127.0.0.1:{down},{builder.Host}:{builder.Port}";
        builder.TargetSessionAttributes = "primary";
        return builder.ConnectionString;
    }

    private PostgresEventStore Open(string connectionString)
    {
        var store = new PostgresEventStore(
            new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = _schema, ExternalCommitPollInterval = TimeSpan.FromHours(1) },
            new EventStoreOptions { Source = "urn:test" });
        _opened.Add(store);
        return store;
    }

    [Fact]
    public async Task with_a_host_down_first_in_the_list_appends_reads_wake_ups_and_queues_go_to_the_one_up()
    {
        var hosts = HostsWithOneDown();
        var writer = Open(hosts);
        var reader = Open(hosts);

        // Another process's live reader, polling once an hour: only the append channel's notification can wake it.
        reader.AppendListener!.Start();
        await reader.AppendListener!.WhenListeningAsync().Bounded();
        var waiting = reader.WaitForAppendAsync(GlobalPosition.Start, default);
        var appended = await writer.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [new EventData(Envelopes.MessageId.New(), "order.placed", "{}"u8.ToArray())]);
        await waiting.Bounded();
        var read = await reader.ReadStreamAsync(new StreamName("order-1")).ToListAsync();
        Assert.Equal(appended.LastPosition, Assert.Single(read).Position);

        // A receive that waits in one process is woken by a send of another, through the queue channel's listener.
        var receiving = new PostgresMessageBroker(reader);
        var sending = new PostgresMessageBroker(writer);
        _opened.Add(receiving);
        _opened.Add(sending);
        QueueName queue = "work";
        await sending.DeclareQueueAsync(new QueueDefinition(queue), default);
        var received = receiving.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMinutes(1) }, default);
        await sending.SendAsync(queue, new OutgoingMessage("work.item", Encoding.UTF8.GetBytes("{\"n\":1}")));
        var delivery = Assert.Single(await received.Bounded());
        Assert.Equal("{\"n\":1}", Encoding.UTF8.GetString(delivery.Message.Data.Span));
        await receiving.AcknowledgeAsync([delivery.Lease], default);
    }
}
