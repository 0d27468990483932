using System.Collections.Concurrent;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Subscriptions;
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

        var delivered = new List<long>();
        await using var subscription = new CatchUpSubscription(
            readerStore,
            new PostgresCheckpointStore(readerStore),
            new SubscriptionOptions { Name = "restart-watch", CheckpointEvery = 10, RetryDelay = TimeSpan.FromMilliseconds(50), MaxRetryDelay = TimeSpan.FromMilliseconds(500) },
            (e, _) =>
            {
                lock (delivered)
                {
                    delivered.Add(e.Position.Value);
                }

                return ValueTask.CompletedTask;
            });
        await subscription.StartAsync(CancellationToken.None);

        var acknowledged = new ConcurrentDictionary<MessageId, long>();
        var failures = 0;
        var attempted = 0;
        var crashAt = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var restarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var abandon = new CancellationTokenSource();
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            // Each writer goes on past its quota until the server is back, so the crash always meets writers at work
            // (appends can be fast enough to finish the quota before the server is down).
            for (var i = 0; i < AppendsPerWriter || !restarted.Task.IsCompleted; i++)
            {
                Interlocked.Increment(ref attempted);
                var e = new EventData("test.appended", Encoding.UTF8.GetBytes($"{{\"w\":{w},\"i\":{i}}}")) { Id = MessageId.New() };
                AppendResult? result = null;
                while (result is null)
                {
                    abandon.Token.ThrowIfCancellationRequested();
                    try
                    {
                        result = await writerStore.AppendToStreamAsync($"writer-{w}", ExpectedVersion.Any, [e]);
                    }
                    catch (NpgsqlException)
                    {
                        // The server is down or starting: the append may or may not have landed; retry it as it was.
                        Interlocked.Increment(ref failures);
                        await Task.Delay(20, abandon.Token);
                    }
                }

                Assert.True(acknowledged.TryAdd(e.Id, result.LastPosition.Value));

                if (acknowledged.Count >= Writers * AppendsPerWriter / 3)
                {
                    crashAt.TrySetResult();
                }
            }
        })).ToList();

        try
        {
            try
            {
                await crashAt.Task.Bounded();
                await server.RestartAsync("immediate");
            }
            finally
            {
                // Whatever happened, the writers stop at their quota, so a failed restart fails the test instead of hanging it.
                restarted.TrySetResult();
            }

            await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(3));
        }
        finally
        {
            // Writers still retrying when the test fails stop rather than outlive it.
            await abandon.CancelAsync();
        }

        // Every acknowledged append is in the log once, at the position it was acknowledged with; positions have no gap.
        var log = new List<RecordedEvent>();
        await foreach (var e in writerStore.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, CancellationToken.None))
        {
            log.Add(e);
        }

        Assert.Equal(attempted, acknowledged.Count);
        Assert.True(attempted >= Writers * AppendsPerWriter);
        Assert.Equal(acknowledged.Count, log.Count);
        Assert.Equal(Enumerable.Range(1, log.Count).Select(p => (long)p), log.Select(e => e.Position.Value));
        foreach (var e in log)
        {
            Assert.Equal(acknowledged[e.Id], e.Position.Value);
        }

        // The subscription came back by itself and delivered everything in order; events after its last checkpoint
        // may come twice (at least once), but never ahead of one not yet delivered.
        await Wait.UntilAsync(() => { lock (delivered) { return delivered.Count > 0 && delivered[^1] == log.Count; } }, "the subscription reaching the head");
        long highest = 0;
        var distinct = new List<long>();
        lock (delivered)
        {
            foreach (var position in delivered)
            {
                if (position > highest)
                {
                    Assert.Equal(highest + 1, position);
                    highest = position;
                    distinct.Add(position);
                }
            }
        }

        Assert.Equal(log.Count, distinct.Count);
        Assert.True(failures > 0, "The crash failed no append: it did not happen under load.");
        output.WriteLine($"{acknowledged.Count} appends acknowledged, {failures} attempts failed during the crash and were retried; the subscription delivered {delivered.Count} events for {log.Count}.");
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
