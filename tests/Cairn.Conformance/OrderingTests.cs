using System.Collections.Concurrent;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Subscriptions;

namespace Cairn.Conformance;

/// <summary>
/// The promise the rest stands on: under any concurrency, positions strictly increase in commit order and a live
/// reader of the log never skips an event that commits later with a lower position (Eventuous #222, #291).
/// </summary>
public abstract class OrderingTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private const int Writers = 16;
    private const int AppendsPerWriter = 200;
    private const int SharedStreams = 4;

    /// <summary>One event that a writer appended, and where it landed.</summary>
    private sealed record Appended(MessageId Id, StreamName Stream, GlobalPosition Position, long Version);

    private sealed record WriteOutcome(IReadOnlyList<Appended> Events, int Conflicts);

    /// <summary>
    /// Sixteen writers, each appending single events: half to a stream of its own with exact versions, a quarter to
    /// shared streams with exact versions (re-reading and retrying on conflict), and a quarter to shared streams with
    /// any version.
    /// </summary>
    private static async Task<WriteOutcome> WriteConcurrentlyAsync(IEventStore store)
    {
        var appended = new ConcurrentBag<Appended>();
        var conflicts = 0;
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            await go.Task;
            var own = new StreamName($"own-w{w}");
            long? ownVersion = null;
            for (var i = 0; i < AppendsPerWriter; i++)
            {
                var e = TestEvents.Numbered(w * AppendsPerWriter + i);
                AppendResult result;
                StreamName stream;
                if (i % 2 == 0)
                {
                    stream = own;
                    result = await store.AppendToStreamAsync(own, ownVersion is { } v ? ExpectedVersion.Exactly(v) : ExpectedVersion.NoStream, [e]);
                    ownVersion = result.NextExpectedVersion;
                }
                else if (i % 4 == 1)
                {
                    stream = new StreamName($"shared-{(w + i) % SharedStreams}");
                    while (true)
                    {
                        var version = await store.GetStreamVersionAsync(stream);
                        await Task.Yield();
                        try
                        {
                            result = await store.AppendToStreamAsync(stream, version is { } sv ? ExpectedVersion.Exactly(sv) : ExpectedVersion.NoStream, [e]);
                            break;
                        }
                        catch (WrongExpectedVersionException)
                        {
                            Interlocked.Increment(ref conflicts);
                        }
                    }
                }
                else
                {
                    stream = new StreamName($"shared-{(w + i) % SharedStreams}");
                    result = await store.AppendToStreamAsync(stream, ExpectedVersion.Any, [e]);
                }

                Assert.False(result.WasDuplicate);
                Assert.Equal(result.FirstPosition, result.LastPosition);
                appended.Add(new Appended(e.Id, stream, result.FirstPosition, result.NextExpectedVersion));
                await Task.Yield();
            }
        })).ToList();

        go.SetResult();

        // A guard against a hang, not a measure: 3,200 appends by 16 writers take a backend that serialises appends
        // across processes (PostgreSQL's) well past the usual bound on a loaded 2-core machine.
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(3));
        return new WriteOutcome([.. appended.OrderBy(a => a.Position)], conflicts);
    }

    private static void AssertSameEventsInOrder(IReadOnlyList<Appended> expected, IReadOnlyList<RecordedEvent> seen)
    {
        Assert.Equal(expected.Count, seen.Count);
        Assert.Equal(expected.Count, seen.Select(e => e.Position).Distinct().Count());
        for (var i = 0; i < expected.Count; i++)
        {
            if (i > 0)
            {
                Assert.True(seen[i].Position > seen[i - 1].Position, $"Event {i} at {seen[i].Position} came after {seen[i - 1].Position}.");
            }

            Assert.Equal(expected[i].Position, seen[i].Position);
            Assert.Equal(expected[i].Id, seen[i].Id);
            Assert.Equal(expected[i].Stream, seen[i].Stream);
            Assert.Equal(expected[i].Version, seen[i].Version);
        }
    }

    [Fact]
    public async Task concurrent_appends_get_unique_strictly_increasing_positions_and_gap_free_versions()
    {
        await using var sut = await CreateAsync();
        var outcome = await WriteConcurrentlyAsync(sut.Store);

        Assert.Equal(Writers * AppendsPerWriter, outcome.Events.Count);
        Assert.Equal(outcome.Events.Count, outcome.Events.Select(a => a.Position).Distinct().Count());

        // Each stream's versions, in position order, are 0, 1, 2, ... with none skipped or repeated.
        foreach (var stream in outcome.Events.GroupBy(a => a.Stream))
        {
            Assert.Equal(Enumerable.Range(0, stream.Count()).Select(v => (long)v), stream.Select(a => a.Version));
            var read = await sut.Store.ReadStreamAsync(stream.Key).ToListAsync();
            Assert.Equal(stream.Select(a => a.Id), read.Select(e => e.Id));
        }

        AssertSameEventsInOrder(outcome.Events, await sut.Store.ReadAllAsync().ToListAsync());
    }

    [Fact]
    public async Task a_live_subscription_started_before_concurrent_writers_sees_every_event_once_in_position_order()
    {
        await using var sut = await CreateAsync();
        var recorder = new Recorder();
        await using var subscription = new CatchUpSubscription(sut.Store, sut.Checkpoints, new SubscriptionOptions { Name = "ordering", BufferSize = 64 }, recorder.HandleAsync);
        await subscription.StartAsync(default);

        var outcome = await WriteConcurrentlyAsync(sut.Store);

        // A last event after the writers: once it is handled, every earlier delivery (or duplicate) is recorded.
        var sentinel = await sut.Store.AppendToStreamAsync("sentinel-1", ExpectedVersion.NoStream, [TestEvents.Numbered(-1)]);
        await subscription.WaitForPositionAsync(sentinel.FirstPosition, default).Bounded();

        var seen = recorder.Events;
        Assert.Equal(sentinel.FirstPosition, seen[^1].Position);
        AssertSameEventsInOrder(outcome.Events, [.. seen.Take(seen.Count - 1)]);
    }

    [Fact]
    public async Task a_live_category_subscription_started_before_concurrent_writers_sees_every_event_of_its_category_once_in_order()
    {
        await using var sut = await CreateAsync();
        var recorder = new Recorder();
        var options = new SubscriptionOptions { Name = "ordering-own", Filter = EventFilter.ForCategory("own"), BufferSize = 16 };
        await using var subscription = new CatchUpSubscription(sut.Store, sut.Checkpoints, options, recorder.HandleAsync);
        await subscription.StartAsync(default);

        var outcome = await WriteConcurrentlyAsync(sut.Store);

        var sentinel = await sut.Store.AppendToStreamAsync("own-sentinel", ExpectedVersion.NoStream, [TestEvents.Numbered(-1)]);
        await subscription.WaitForPositionAsync(sentinel.FirstPosition, default).Bounded();

        var seen = recorder.Events;
        Assert.Equal(sentinel.FirstPosition, seen[^1].Position);
        var expected = outcome.Events.Where(a => a.Stream.Category == "own").ToList();
        Assert.Equal(Writers * AppendsPerWriter / 2, expected.Count);
        AssertSameEventsInOrder(expected, [.. seen.Take(seen.Count - 1)]);
    }

    [Fact]
    public async Task the_store_subscription_started_before_concurrent_writers_yields_every_event_once_in_position_order()
    {
        await using var sut = await CreateAsync();
        using var cancel = new CancellationTokenSource();
        var seen = new List<RecordedEvent>();
        var sentinelId = MessageId.New();
        var sentinelSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = Task.Run(async () =>
        {
            await foreach (var e in sut.Store.SubscribeAsync(GlobalPosition.Start, EventFilter.All, cancel.Token, pageSize: 32, onProgress: (_, _) => subscribed.TrySetResult()))
            {
                seen.Add(e);
                if (e.Id == sentinelId)
                {
                    sentinelSeen.TrySetResult();
                }
            }
        });
        await subscribed.Task.Bounded();

        var outcome = await WriteConcurrentlyAsync(sut.Store);
        await sut.Store.AppendToStreamAsync("sentinel-1", ExpectedVersion.NoStream, [TestEvents.Numbered(-1) with { Id = sentinelId }]);
        await sentinelSeen.Task.Bounded();
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => reader).Bounded();

        Assert.Equal(sentinelId, seen[^1].Id);
        AssertSameEventsInOrder(outcome.Events, [.. seen.Take(seen.Count - 1)]);
    }
}
