using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// PostgreSQL keeps a commit whose wait for the synchronous standby is cancelled (here by Npgsql's <c>Command
/// Timeout</c>) on the primary alone, and answers it as committed, with a warning. Cairn does not answer such a write
/// as done, and answers a retry of an append only once the standby has it, so an acknowledged write survives a
/// failover to the standby.
/// </summary>
public sealed class SynchronousStandbyTests
{
    private static EventData Event(int n) => new("test.noted", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}")) { Id = MessageId.New() };

    [Fact]
    public async Task a_write_whose_wait_for_the_standby_is_cancelled_fails_and_a_retry_of_the_append_is_answered_once_the_standby_has_it()
    {
        await using var primary = await OwnPostgresServer.StartAsync();
        await using var standby = await primary.StartStandbyAsync();
        await using (var primaryOnly = NpgsqlDataSource.Create(primary.ConnectionString))
        {
            await FailoverTests.MakeStandbySynchronousAsync(primaryOnly);
        }

        // Warnings are not sent to this connection string's sessions unless Cairn asks for them.
        var connectionString = new NpgsqlConnectionStringBuilder(primary.ConnectionString) { CommandTimeout = 2, Options = "-c client_min_messages=error" }.ConnectionString;
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = "syncrep" });
        await using var broker = new PostgresMessageBroker(store);
        QueueName queue = "syncrep";
        QueueName empty = "syncrep-empty";
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await broker.DeclareQueueAsync(new QueueDefinition(empty), default);
        StreamName stream = "order-1";
        await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, [Event(1)]);

        await standby.HaltAsync();
        EventData[] events = [Event(2), Event(3)];
        Task<AppendResult> AppendAsync() => store.AppendToStreamAsync(stream, ExpectedVersion.Exactly(0), events);

        // PostgreSQL cancels the commit's wait after the two seconds and keeps it: the events are on the primary, but
        // the append is not answered as done.
        await Assert.ThrowsAsync<ReplicationNotConfirmedException>(AppendAsync).Bounded();
        Assert.Equal(3, (await store.ReadStreamAsync(stream).ToListAsync()).Count);

        // Work that writes nothing the second time (the same metadata set again) waits for the standby all the same.
        var metadata = new StreamMetadata { MaxCount = 10 };
        await Assert.ThrowsAsync<ReplicationNotConfirmedException>(() => store.SetStreamMetadataAsync(stream, metadata, default)).Bounded();
        await Assert.ThrowsAsync<ReplicationNotConfirmedException>(() => store.SetStreamMetadataAsync(stream, metadata, default)).Bounded();

        // Nor is the append's retry while the standby is away, though the primary recognises it; nor any other write.
        await Assert.ThrowsAsync<ReplicationNotConfirmedException>(AppendAsync).Bounded();
        var sent = new OutgoingMessage("test.sent", Encoding.UTF8.GetBytes("{}")) { Id = MessageId.New() };
        await Assert.ThrowsAsync<ReplicationNotConfirmedException>(() => broker.SendAsync(queue, sent)).Bounded();

        // Its retry is recognised by its id and writes nothing: it waits for the standby all the same.
        await Assert.ThrowsAsync<ReplicationNotConfirmedException>(() => broker.SendAsync(queue, sent)).Bounded();

        // A receive that finds nothing, or an inbox prune, wrote nothing and repeats no write: each is answered at once.
        Assert.Empty(await broker.ReceiveAsync(empty, new ReceiveOptions { MaxMessages = 1 }, default).Bounded());
        Assert.Equal(0, await broker.PruneInboxAsync("nobody", DateTimeOffset.UtcNow, default).Bounded());

        // Once the standby is back, the retry is answered with the original positions.
        await standby.ResumeAsync();
        await using (var primaryOnly = NpgsqlDataSource.Create(primary.ConnectionString))
        {
            await FailoverTests.WaitUntilSynchronousAsync(primaryOnly);
        }

        var retried = await AppendAsync().Bounded();
        Assert.True(retried.WasDuplicate);
        Assert.Equal(new GlobalPosition(2), retried.FirstPosition);
        Assert.Equal(new GlobalPosition(3), retried.LastPosition);
        await store.SetStreamMetadataAsync(stream, metadata, default).Bounded();
        Assert.Equal(10, (await store.GetStreamInfoAsync(stream, default)).Metadata.MaxCount);
        var next = await store.AppendToStreamAsync(stream, ExpectedVersion.Exactly(2), [Event(4)]).Bounded();
        Assert.False(next.WasDuplicate);
    }

    [Fact]
    public async Task a_role_that_may_not_write_logical_decoding_messages_still_writes_and_is_told_once()
    {
        // PostgreSQL checks the right to call a function as a statement starts, even where the statement would not
        // call it; Cairn asks for the right before it writes the message, and without it answers a write that wrote
        // nothing as PostgreSQL alone would, saying so once.
        await using var server = await OwnPostgresServer.StartAsync();
        await using var standby = await server.StartStandbyAsync();
        await using (var admin = NpgsqlDataSource.Create(server.ConnectionString))
        {
            await FailoverTests.MakeStandbySynchronousAsync(admin);
            await using var setup = admin.CreateCommand("""
                REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) FROM PUBLIC;
                CREATE ROLE cairn_plain LOGIN;
                GRANT CREATE ON DATABASE cairn TO cairn_plain;
                """);
            await setup.ExecuteNonQueryAsync();
        }

        var log = new RecordingLogger<PostgresEventStore>();
        var connectionString = new NpgsqlConnectionStringBuilder(server.ConnectionString) { Username = "cairn_plain", Password = null }.ConnectionString;
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = "plain" }, logger: log);
        await using var broker = new PostgresMessageBroker(store);
        await broker.DeclareQueueAsync(new QueueDefinition("plain"), default);
        await broker.DeclareQueueAsync(new QueueDefinition("plain"), default);
        StreamName stream = "order-1";
        EventData[] events = [Event(1)];
        var first = await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, events);
        var retried = await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, events);
        Assert.True(retried.WasDuplicate);
        Assert.Equal(first.LastPosition, retried.LastPosition);
        var metadata = new StreamMetadata { MaxCount = 10 };
        await store.SetStreamMetadataAsync(stream, metadata, default);
        await store.SetStreamMetadataAsync(stream, metadata, default);
        Assert.Equal(10, (await store.GetStreamInfoAsync(stream, default)).Metadata.MaxCount);
        Assert.Single(log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("pg_logical_emit_message", StringComparison.Ordinal));
    }
}
