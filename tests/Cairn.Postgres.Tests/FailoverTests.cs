using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.Messaging;
using Npgsql;
using Xunit.Abstractions;

namespace Cairn.Postgres.Tests;

/// <summary>
/// A failover under load: the primary is killed and its synchronous standby promoted, as a failover manager would.
/// Cairn's connection string lists both hosts and asks for the primary, so every connection it opens again (the
/// writer's, the pool's, the append and queue listeners') finds the promoted one. Writers retry their failed appends
/// with the same ids; no acknowledged append is lost, since each was on the standby before it was acknowledged.
/// </summary>
public sealed class FailoverTests(ITestOutputHelper output)
{
    private const int Writers = 6;
    private const int AppendsPerWriter = 40;

    [Fact]
    public async Task after_the_primary_dies_and_its_standby_is_promoted_writers_a_subscription_and_a_waiting_receive_go_on_and_no_acknowledged_append_is_lost()
    {
        await using var primary = await OwnPostgresServer.StartAsync();
        await using var standby = await primary.StartStandbyAsync();
        await using (var primaryOnly = NpgsqlDataSource.Create(primary.ConnectionString))
        {
            await MakeStandbySynchronousAsync(primaryOnly);

            // Commits wait for this standby: with it down, one waits on SyncRep until it is back.
            await using (var create = primaryOnly.CreateCommand("CREATE TABLE sync_probe (x int)"))
            {
                await create.ExecuteNonQueryAsync();
            }

            await standby.HaltAsync();
            await using var insert = primaryOnly.CreateCommand("INSERT INTO sync_probe VALUES (1)");
            var inserting = insert.ExecuteNonQueryAsync();
            await using var syncWaits = primaryOnly.CreateCommand("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
            await Wait.UntilAsync(async () => (long)(await syncWaits.ExecuteScalarAsync())! == 1, "a commit waiting for the standby");
            Assert.False(inserting.IsCompleted);
            await standby.ResumeAsync();
            Assert.Equal(1, await inserting.Bounded());
            await WaitUntilSynchronousAsync(primaryOnly);
        }

        var hosts = new NpgsqlConnectionStringBuilder(primary.ConnectionString);
        var standbyHost = new NpgsqlConnectionStringBuilder(standby.ConnectionString);
        hosts.Host = $"{hosts.Host}:{hosts.Port},{standbyHost.Host}:{standbyHost.Port}";
        hosts.TargetSessionAttributes = "primary";

        // Npgsql remembers which host was a standby for this long; the promoted one is taken once it has looked again.
        hosts.HostRecheckSeconds = 1;
        var options = new PostgresEventStoreOptions { ConnectionString = hosts.ConnectionString, Schema = "failover", ExternalCommitPollInterval = TimeSpan.FromMilliseconds(50) };
        await using var writerStore = new PostgresEventStore(options);
        await using var readerStore = new PostgresEventStore(options);

        // A receive waiting in one process across the failover, for a message another sends after it.
        await using var receiving = new PostgresMessageBroker(readerStore);
        await using var sending = new PostgresMessageBroker(writerStore);
        QueueName queue = "after-failover";
        await sending.DeclareQueueAsync(new QueueDefinition(queue), default);

        await using var load = await AppendsUnderFault.StartAsync(writerStore, readerStore, Writers, AppendsPerWriter);
        Task<IReadOnlyList<Delivery>> waiting;
        try
        {
            await load.ThirdAcknowledged.Bounded();
            waiting = receiving.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1, Wait = TimeSpan.FromMinutes(2) }, default);
            await primary.HaltAsync();
            await standby.PromoteAsync();
        }
        finally
        {
            // Whatever happened, the writers stop at their quota, so a failed promotion fails the test instead of hanging it.
            load.FaultOver();
        }

        // The log is read from the promoted server, the only one up: every acknowledged append is there once, at the
        // position it was acknowledged with, and positions have no gap. The subscription moved to the promoted server
        // by itself and delivered everything in order, each event as the promoted server has it at its position.
        var log = await load.CheckLogAsync(writerStore);
        await SendUntilAcceptedAsync(sending, queue);
        var delivery = Assert.Single(await waiting.Bounded());
        Assert.Equal("{\"after\":\"failover\"}", Encoding.UTF8.GetString(delivery.Message.Data.Span));
        await receiving.AcknowledgeAsync([delivery.Lease], default);
        var delivered = await load.CheckDeliveredAsync(log);
        Assert.True(load.Failures > 0, "The failover failed no append: it did not happen under load.");
        output.WriteLine($"{log.Count} appends acknowledged, {load.Failures} attempts failed during the failover and were retried; the subscription delivered {delivered} events for {log.Count}; appends went on {load.ResumedAfter.TotalMilliseconds:F0} ms after the promotion.");
    }

    /// <summary>Makes the primary's commits wait for the standby (any standby, '*'), and waits until they do.</summary>
    internal static async Task MakeStandbySynchronousAsync(NpgsqlDataSource primary)
    {
        await using (var configure = primary.CreateCommand("ALTER SYSTEM SET synchronous_standby_names = '*'"))
        {
            await configure.ExecuteNonQueryAsync();
        }

        await using (var reload = primary.CreateCommand("SELECT pg_reload_conf()"))
        {
            await reload.ExecuteNonQueryAsync();
        }

        await WaitUntilSynchronousAsync(primary);
    }

    /// <summary>Waits until the primary has a synchronous standby streaming from it.</summary>
    internal static async Task WaitUntilSynchronousAsync(NpgsqlDataSource primary)
    {
        await using var state = primary.CreateCommand("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'");
        await Wait.UntilAsync(async () => (long)(await state.ExecuteScalarAsync())! == 1, "the standby becoming synchronous");
    }

    /// <summary>Sends one message, retrying while the sending store has not yet found the promoted server.</summary>
    private static async Task SendUntilAcceptedAsync(PostgresMessageBroker broker, QueueName queue)
    {
        var message = new OutgoingMessage("failover.done", Encoding.UTF8.GetBytes("{\"after\":\"failover\"}")) { Id = MessageId.New() };
        await Wait.UntilAsync(
            async () =>
            {
                try
                {
                    await broker.SendAsync(queue, message);
                    return true;
                }
                catch (NpgsqlException)
                {
                    return false;
                }
            },
            "a send to the promoted server");
    }
}
