using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Diagnostics;

/// <summary>
/// Edges of the messaging instruments: a queue-depth gauge over a backend that hangs holds a collection no longer than
/// the statistics time-out.
/// </summary>
[Collection(nameof(DiagnosticsTests))]
public sealed class InstrumentEdgeTests
{
    /// <summary>A listener of the queue-depth gauge alone, so a collection reads nothing else.</summary>
    private static MeterListener DepthListener(ConcurrentBag<string> queues)
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == CairnDiagnostics.MessagingName && instrument.Name == "cairn.messaging.queue.depth")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "queue" && tag.Value is string q)
                {
                    queues.Add(q);
                }
            }
        });
        listener.Start();
        return listener;
    }

    private static InMemoryMessageBroker InMemory() => new(new InMemoryEventStore(), new InMemoryCheckpointStore());

    // CairnDiagnostics.ReadForGauge's doc: "a backend that hangs (a RabbitMQ stopped but not gone) holds it [the
    // collection] no longer than StatisticsTimeout"; messaging.md: "A read waits at most 2 s". The decorator reads its
    // queues one after the other, each waiting out its own 2 s: a broker with N queues that hangs holds every metric
    // collection of the process N x 2 s per gauge.
    [Fact]
    public async Task a_hung_backend_holds_a_queue_depth_collection_one_statistics_timeout_however_many_queues()
    {
        var hung = new HangingStatsBroker(InMemory());
        var broker = new InstrumentedMessageBroker(hung);
        var suffix = Guid.NewGuid().ToString("N");
        QueueName[] names = [$"hung-a-{suffix}", $"hung-b-{suffix}", $"hung-c-{suffix}"];
        foreach (var name in names)
        {
            await broker.DeclareQueueAsync(name);
        }

        var seen = new ConcurrentBag<string>();
        using var listener = DepthListener(seen);
        try
        {
            hung.Hang = true;
            var started = Stopwatch.GetTimestamp();
            await Task.Run(listener.RecordObservableInstruments);
            var elapsed = Stopwatch.GetElapsedTime(started);

            // The reads of this broker's queues: all three asked, and (read at once) asked within a moment of each other.
            // Each runs on the thread pool, which a busy test run may start late, after the collection gave up on it:
            // waited for, not assumed.
            await Wait.UntilAsync(() => hung.Calls.Count(c => names.Contains(c.Queue)) == 3, "the three queues' reads are asked");
            var calls = hung.Calls.Where(c => names.Contains(c.Queue)).OrderBy(c => c.At).ToList();
            Assert.Equal(3, calls.Count);
            var spread = Stopwatch.GetElapsedTime(calls[0].At, calls[^1].At);
            Assert.True(
                spread < TimeSpan.FromSeconds(3),
                $"the reads of the hung broker's 3 queues started {spread.TotalSeconds:0.0} s apart (the collection took {elapsed.TotalSeconds:0.0} s); one hung backend should hold a collection about one {CairnDiagnostics.StatisticsTimeout.TotalSeconds} s time-out, not one per queue");
        }
        finally
        {
            hung.Hang = false;
            hung.ReleaseAll();
            broker.Dispose();
        }
    }

    // The same promise for a backend that blocks before it returns its task (the health checks' WithinAsync runs a read on
    // a thread of its own for this very reason: "SQLite's reads wait for a lock there"). ReadForGauge calls the read on
    // the collecting thread and only then starts its 2 s wait, so such a read holds the collection as long as it blocks.
    [Fact]
    public async Task a_backend_that_blocks_before_returning_its_statistics_task_holds_a_collection_no_longer_than_the_timeout()
    {
        var blocking = new BlockingStatsBroker(InMemory());
        var broker = new InstrumentedMessageBroker(blocking);
        var queue = new QueueName("blocking-" + Guid.NewGuid().ToString("N"));
        await broker.DeclareQueueAsync(queue);

        var seen = new ConcurrentBag<string>();
        using var listener = DepthListener(seen);
        try
        {
            blocking.Block = true;
            var collecting = Task.Run(listener.RecordObservableInstruments);
            var finished = await Task.WhenAny(collecting, Task.Delay(TimeSpan.FromSeconds(6)));
            Assert.True(
                finished == collecting,
                $"a queue-depth collection was still held after 6 s by a backend whose statistics read blocks; it should be left out after {CairnDiagnostics.StatisticsTimeout.TotalSeconds} s");
            Assert.DoesNotContain(queue.Value, seen);
        }
        finally
        {
            blocking.Block = false;
            blocking.Release();
            broker.Dispose();
        }
    }

    /// <summary>A broker whose statistics reads never answer while <see cref="Hang"/> is set, and heed no token.</summary>
    private sealed class HangingStatsBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        private readonly TaskCompletionSource<QueueStats> _never = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public volatile bool Hang;

        public ConcurrentQueue<(string Queue, long At)> Calls { get; } = new();

        public override Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
        {
            if (!Hang)
            {
                return base.GetStatsAsync(queue, cancellationToken);
            }

            Calls.Enqueue((queue.Value, Stopwatch.GetTimestamp()));
            return _never.Task;
        }

        public void ReleaseAll() => _never.TrySetException(new InvalidOperationException("released"));
    }

    /// <summary>A broker whose statistics read blocks its caller (for at most 15 s) before it returns a task, while <see cref="Block"/> is set.</summary>
    private sealed class BlockingStatsBroker(IMessageBroker inner) : DelegatingMessageBroker(inner)
    {
        private readonly ManualResetEventSlim _released = new(false);

        public volatile bool Block;

        public override Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
        {
            if (Block)
            {
                _released.Wait(TimeSpan.FromSeconds(15), CancellationToken.None);
                return Task.FromException<QueueStats>(new TimeoutException("blocked"));
            }

            return base.GetStatsAsync(queue, cancellationToken);
        }

        public void Release() => _released.Set();
    }
}
