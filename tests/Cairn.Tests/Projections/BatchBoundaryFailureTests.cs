using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Projections;

[EventType("gauge.read")]
public sealed record GaugeRead(string Id, string Label);

public sealed record GaugeReading(string Id, string Label);

/// <summary>
/// An event whose stored document has a value its index refuses (text past DocumentIndex.MaxTextBytes) fails, whichever batch it falls in: the same
/// events must meet the same failure policy whether the runner applies them one per batch or many per batch, as an
/// inline projection applies them one append at a time.
/// </summary>
public sealed class BatchBoundaryFailureTests
{
    private sealed class Gauges : Projection
    {
        public Gauges(int batchSize)
            : base("gauges")
        {
            BatchSize = batchSize;
            CatchUpBatchSize = batchSize;
            MaxRetries = 0;
            RetryDelay = TimeSpan.Zero;
            Document<GaugeReading>(g => g.Id).Index("label", g => g.Label);
            On<GaugeRead>((ctx, e) => ctx.Documents.Store(new GaugeReading(e.Id, e.Label)));
        }
    }

    private static async Task<ProjectionStatus> RunAsync(int batchSize)
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<GaugeRead>());
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var last = (await store.AppendToStreamAsync(new StreamName("gauge-1"), ExpectedVersion.NoStream,
        [
            serializer.ToEventData(new GaugeRead("g", new string('x', DocumentIndex.MaxTextBytes + 1))),
            serializer.ToEventData(new GaugeRead("g", "short")),
        ], default)).LastPosition;
        await using var runner = new ProjectionRunner(new Gauges(batchSize), store, projections, serializer);
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status is var s && (s.State == ProjectionState.Failed || (s.State == ProjectionState.Live && s.Position >= last)), "the projection has failed or applied every event");
        return runner.Status;
    }

    [Fact]
    public async Task A_refused_index_value_fails_its_event_even_when_a_later_event_of_the_same_batch_overwrites_the_document()
    {
        var onePerBatch = await RunAsync(batchSize: 1);
        Assert.Equal(ProjectionState.Failed, onePerBatch.State);
        Assert.Equal(1, onePerBatch.FailedEvent?.Value);

        // The same events in one batch: the refused document is overwritten before the batch writes, and the event that
        // stored it passes; the outcome depends on where the batches fall.
        var oneBatch = await RunAsync(batchSize: 1000);
        Assert.Equal(onePerBatch.State, oneBatch.State);
        Assert.Equal(onePerBatch.FailedEvent, oneBatch.FailedEvent);
    }
}
