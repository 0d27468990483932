using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Subscriptions;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Load for a test that takes PostgreSQL down: writers that append one event at a time, each to a stream of its own,
/// and a catch-up subscription in another store that records what it delivers. An append that fails with Npgsql's
/// exception is retried as it was, with the same event id, so a retry of one that landed is recognised. Each writer
/// goes on past its quota until <see cref="FaultOver"/>, so the fault always meets writers at work. Disposing stops
/// writers still retrying and the subscription.
/// </summary>
internal sealed class AppendsUnderFault : IAsyncDisposable
{
    private readonly CancellationTokenSource _abandon = new();
    private readonly TaskCompletionSource _faultOver = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _third = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<(long Position, MessageId Id)> _delivered = [];
    private readonly CatchUpSubscription _subscription;
    private readonly Task _writers;
    private int _failures;
    private int _attempted;
    private long _faultOverAt;
    private long _firstAfterFault;

    private AppendsUnderFault(PostgresEventStore writerStore, PostgresEventStore readerStore, int writers, int appendsPerWriter)
    {
        _subscription = new CatchUpSubscription(
            readerStore,
            new PostgresCheckpointStore(readerStore),
            new SubscriptionOptions { Name = "fault-watch", CheckpointEvery = 10, RetryDelay = TimeSpan.FromMilliseconds(50), MaxRetryDelay = TimeSpan.FromMilliseconds(500) },
            (e, _) =>
            {
                lock (_delivered)
                {
                    _delivered.Add((e.Position.Value, e.Id));
                }

                return ValueTask.CompletedTask;
            });
        _writers = Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(() => WriteAsync(writerStore, w, appendsPerWriter, writers))));
    }

    /// <summary>Starts the subscription, then the writers.</summary>
    public static async Task<AppendsUnderFault> StartAsync(PostgresEventStore writerStore, PostgresEventStore readerStore, int writers, int appendsPerWriter)
    {
        var load = new AppendsUnderFault(writerStore, readerStore, writers, appendsPerWriter);
        await load._subscription.StartAsync(CancellationToken.None);
        return load;
    }

    /// <summary>Each acknowledged append's event id and position.</summary>
    public ConcurrentDictionary<MessageId, long> Acknowledged { get; } = new();

    /// <summary>Append attempts that failed and were retried.</summary>
    public int Failures => Volatile.Read(ref _failures);

    /// <summary>A third of the writers' quota is acknowledged: time for the fault.</summary>
    public Task ThirdAcknowledged => _third.Task;

    /// <summary>How long after <see cref="FaultOver"/> the first append was acknowledged.</summary>
    public TimeSpan ResumedAfter => Stopwatch.GetElapsedTime(Volatile.Read(ref _faultOverAt), Volatile.Read(ref _firstAfterFault));

    /// <summary>Lets the writers stop at their quota, once each has its current append acknowledged.</summary>
    public void FaultOver()
    {
        Volatile.Write(ref _faultOverAt, Stopwatch.GetTimestamp());
        _faultOver.TrySetResult();
    }

    /// <summary>
    /// Waits for the writers, then reads the whole log and checks that every acknowledged append, and nothing else, is
    /// in it once, at the position it was acknowledged with, with no gap; returns the log.
    /// </summary>
    public async Task<List<RecordedEvent>> CheckLogAsync(PostgresEventStore store)
    {
        await _writers.WaitAsync(TimeSpan.FromMinutes(3));
        var log = new List<RecordedEvent>();
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, CancellationToken.None))
        {
            log.Add(e);
        }

        Assert.Equal(Volatile.Read(ref _attempted), Acknowledged.Count);
        Assert.Equal(Acknowledged.Count, log.Count);
        Assert.Equal(Enumerable.Range(1, log.Count).Select(p => (long)p), log.Select(e => e.Position.Value));
        foreach (var e in log)
        {
            Assert.Equal(Acknowledged[e.Id], e.Position.Value);
        }

        return log;
    }

    /// <summary>
    /// Waits until the subscription reaches the end of <paramref name="log"/>, and checks that it delivered every event
    /// in order, at least once (those after its last checkpoint may come twice), each the one the log has at its
    /// position; returns how many it delivered.
    /// </summary>
    public async Task<int> CheckDeliveredAsync(List<RecordedEvent> log)
    {
        await Conformance.Support.Wait.UntilAsync(() => { lock (_delivered) { return _delivered.Count > 0 && _delivered[^1].Position == log.Count; } }, "the subscription reaching the head");
        long highest = 0;
        lock (_delivered)
        {
            foreach (var (position, id) in _delivered)
            {
                Assert.Equal(log[(int)position - 1].Id, id);
                if (position > highest)
                {
                    Assert.Equal(highest + 1, position);
                    highest = position;
                }
            }

            Assert.Equal(log.Count, highest);
            return _delivered.Count;
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Writers still retrying when a test fails stop rather than outlive it.
        _faultOver.TrySetResult();
        await _abandon.CancelAsync();
        try
        {
            await _writers;
        }
        catch (Exception)
        {
            // Stopped while retrying; a writer's own failure is the test's, through CheckLogAsync.
        }

        await _subscription.DisposeAsync();
        _abandon.Dispose();
    }

    private async Task WriteAsync(PostgresEventStore store, int w, int appendsPerWriter, int writers)
    {
        for (var i = 0; i < appendsPerWriter || !_faultOver.Task.IsCompleted; i++)
        {
            Interlocked.Increment(ref _attempted);
            var e = new EventData("test.appended", Encoding.UTF8.GetBytes($"{{\"w\":{w},\"i\":{i}}}")) { Id = MessageId.New() };
            AppendResult? result = null;
            while (result is null)
            {
                _abandon.Token.ThrowIfCancellationRequested();
                try
                {
                    result = await store.AppendToStreamAsync($"writer-{w}", ExpectedVersion.Any, [e]);
                }
                catch (NpgsqlException)
                {
                    // The server is down, starting or failing over: the append may or may not have landed; retry it as it was.
                    Interlocked.Increment(ref _failures);
                    await Task.Delay(20, _abandon.Token);
                }
            }

            Assert.True(Acknowledged.TryAdd(e.Id, result.LastPosition.Value));
            if (Volatile.Read(ref _faultOverAt) != 0)
            {
                Interlocked.CompareExchange(ref _firstAfterFault, Stopwatch.GetTimestamp(), 0);
            }

            if (Acknowledged.Count >= writers * appendsPerWriter / 3)
            {
                _third.TrySetResult();
            }
        }
    }
}
