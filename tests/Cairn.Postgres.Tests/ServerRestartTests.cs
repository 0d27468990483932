using Cairn.Conformance.Support;
using Cairn.Messaging;
using Npgsql;
using Xunit.Abstractions;

namespace Cairn.Postgres.Tests;

/// <summary>
/// PostgreSQL crashes and comes back under load: writers whose appends fail retry them (the same event ids, so a
/// retry of an append that had landed is recognised), the store's writer reconnects, a hosted catch-up subscription
/// resumes from its checkpoint, and no acknowledged append is lost.
/// </summary>
public sealed class ServerRestartTests(ITestOutputHelper output)
{
    private const int Writers = 8;
    private const int AppendsPerWriter = 40;

    [Fact]
    public async Task after_a_crash_of_the_server_under_load_writers_and_a_subscription_go_on_and_no_acknowledged_append_is_lost()
    {
        await using var server = await OwnPostgresServer.StartAsync();
        var options = new PostgresEventStoreOptions { ConnectionString = server.ConnectionString, Schema = "restart", ExternalCommitPollInterval = TimeSpan.FromMilliseconds(50) };
        await using var writerStore = new PostgresEventStore(options);
        await using var readerStore = new PostgresEventStore(options);

        var startedBefore = await StartTimeAsync(server.ConnectionString);
        await using var load = await AppendsUnderFault.StartAsync(writerStore, readerStore, Writers, AppendsPerWriter);
        try
        {
            await load.ThirdAcknowledged.Bounded();
            await server.RestartAsync("immediate");
        }
        finally
        {
            // Whatever happened, the writers stop at their quota, so a failed restart fails the test instead of hanging it.
            load.FaultOver();
        }

        // Every acknowledged append is in the log once, at the position it was acknowledged with; positions have no gap.
        // The subscription came back by itself and delivered everything in order.
        var log = await load.CheckLogAsync(writerStore);
        Assert.True(log.Count >= Writers * AppendsPerWriter);
        var delivered = await load.CheckDeliveredAsync(log);
        // The writers append until the fault is over, so the crash met them at work; whether an append was on the wire
        // at that instant (and failed) is timing, so the check is that the server did go down and come back.
        Assert.NotEqual(startedBefore, await StartTimeAsync(server.ConnectionString));
        output.WriteLine($"{log.Count} appends acknowledged, {load.Failures} attempts failed during the crash and were retried; the subscription delivered {delivered} events for {log.Count}.");
    }

    /// <summary>When the server last started: a restart changes it.</summary>
    private static async Task<DateTime> StartTimeAsync(string connectionString)
    {
        // Not from the pool, whose connections the restart broke.
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT pg_postmaster_start_time()", connection);
        return (DateTime)(await command.ExecuteScalarAsync())!;
    }

    [Fact]
    public async Task a_receive_fails_with_the_connections_error_when_the_server_is_down_all_its_wait_and_at_once_when_it_does_not_wait()
    {
        await using var server = await OwnPostgresServer.StartAsync();
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = server.ConnectionString, Schema = "outage" });
        await using var broker = new PostgresMessageBroker(store);
        QueueName queue = "outage";
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await server.HaltAsync();

        // A receive that waits looks again until its wait is over, then fails rather than report an empty queue.
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMilliseconds(400) }, default).Bounded());
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1 }, default).Bounded());

        // Back: the next receive finds the queue as it was.
        await server.ResumeAsync();
        await broker.SendAsync(queue, new OutgoingMessage("outage.over", "{}"u8.ToArray()));
        Assert.Single(await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromSeconds(30) }, default).Bounded());
    }
}
