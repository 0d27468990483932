using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// What one statement can carry: PostgreSQL closes the connection over a protocol message of more than 1 GB, so one
/// append is refused past <see cref="PostgresEventStoreOptions.MaxAppendBytes"/> and a group-commit batch of appends
/// stays within it. Here with a limit of 64 KiB rather than 768 MiB, so the test needs no gigabytes.
/// </summary>
public sealed class AppendSizeTests : OwnSchemaStoreTests
{
    private const long ParkKey = 7_340_034;
    private const int Limit = 64 * 1024;

    protected override PostgresEventStoreOptions Configure(PostgresEventStoreOptions options) => options with { MaxAppendBytes = Limit };

    private static EventData Blob(int bytes) => new("test.blob", new byte[bytes]) { Id = MessageId.New(), ContentType = "application/octet-stream" };

    [Fact]
    public async Task an_append_over_the_limit_is_refused_whole_and_writes_nothing()
    {
        var error = await Assert.ThrowsAsync<AppendTooLargeException>(() => Store.AppendToStreamAsync("big-1", ExpectedVersion.Any, [Blob(40 * 1024), Blob(40 * 1024)]));

        Assert.InRange(error.Size, 80 * 1024, 81 * 1024); // the data, and the two events' envelopes
        Assert.Equal(Limit, error.Limit);
        Assert.Empty(await Store.ReadAllAsync().ToListAsync());
        await Store.AppendToStreamAsync("big-1", ExpectedVersion.NoStream, [Blob(40 * 1024)]);
    }

    [Fact]
    public async Task a_messaging_transaction_with_an_append_over_the_limit_is_refused_whole_and_writes_nothing()
    {
        await using var broker = new PostgresMessageBroker(Store);
        QueueName queue = "work";
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var transaction = new MessageTransaction()
            .Append(new AppendRequest("small", ExpectedVersion.NoStream, [Blob(1024)]))
            .Append(new AppendRequest("big-1", ExpectedVersion.Any, [Blob(40 * 1024), Blob(40 * 1024)]))
            .Send(queue, new OutgoingMessage("test.note", "{}"u8.ToArray()));

        var error = await Assert.ThrowsAsync<AppendTooLargeException>(() => broker.CommitAsync(transaction, default));

        Assert.InRange(error.Size, 80 * 1024, 81 * 1024); // the data, and the two events' envelopes
        Assert.Empty(await Store.ReadAllAsync().ToListAsync());
        Assert.Equal(0L, (await broker.GetStatsAsync(queue, default)).Visible);
    }

    [Fact]
    public async Task appends_that_together_pass_the_limit_commit_in_separate_batches_and_all_succeed()
    {
        // The writer is parked on a lock of its own while three appends queue behind it.
        await using var parker = new NpgsqlConnection(PostgresServer.ConnectionString);
        await parker.OpenAsync();
        await using (var park = new NpgsqlCommand($"SELECT pg_advisory_lock({ParkKey})", parker))
        {
            await park.ExecuteNonQueryAsync();
        }

        var parked = Store.WriteAsync(async context =>
        {
            await using var wait = context.Command($"SELECT pg_advisory_xact_lock({ParkKey})");
            await wait.ExecuteNonQueryAsync();
            return true;
        }, default);
        await Wait.UntilAsync(() => Store.Writer.Queued == 0, "the parked work taken");
        var appends = Enumerable.Range(1, 3).Select(i => Store.AppendToStreamAsync($"big-{i}", ExpectedVersion.NoStream, [Blob(40 * 1024)])).ToList();
        await Wait.UntilAsync(() => Store.Writer.Queued == 3, "the three appends queued");
        await using (var unpark = new NpgsqlCommand($"SELECT pg_advisory_unlock({ParkKey})", parker))
        {
            await unpark.ExecuteNonQueryAsync();
        }

        Assert.True(await parked);
        await Task.WhenAll(appends);

        // Each pair would pass 64 KiB: three commits, one per append.
        await using var count = new NpgsqlCommand($"SELECT count(DISTINCT xmin::text) FROM \"{Schema}\".events", parker);
        Assert.Equal(3L, await count.ExecuteScalarAsync());
        Assert.Equal(3, (await Store.ReadAllAsync().ToListAsync()).Count);
    }
}
