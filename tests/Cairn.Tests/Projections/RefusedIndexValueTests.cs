using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Projections;

[EventType("gauge.read")]
public sealed record GaugeRead(string Id, string Label);

public sealed class GaugeReading
{
    public string Id { get; set; } = "";

    public string Label { get; set; } = "";
}

/// <summary>
/// A document whose index value no index keeps (text past <see cref="DocumentIndex.MaxTextBytes"/>) fails the event
/// that stored it, as its handler left the document, whichever batch it falls in: the same events meet the same failure
/// policy whether the runner applies them one per batch or many, as an inline projection applies them one append at a time.
/// </summary>
public sealed class RefusedIndexValueTests
{
    private static readonly string TooLong = new('x', DocumentIndex.MaxTextBytes + 1);

    private sealed class Gauges : Projection
    {
        public Gauges(int batchSize, Action<IProjectionContext, GaugeRead> handle)
            : base("gauges")
        {
            BatchSize = batchSize;
            CatchUpBatchSize = batchSize;
            MaxRetries = 0;
            RetryDelay = TimeSpan.Zero;
            Document<GaugeReading>(g => g.Id).Index("label", g => g.Label);
            On(handle);
        }
    }

    /// <summary>Applies the labels, as events of one gauge, and returns the status once it failed or applied them all.</summary>
    private static async Task<ProjectionStatus> RunAsync(int batchSize, Action<IProjectionContext, GaugeRead> handle, params string[] labels)
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<GaugeRead>());
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var last = (await store.AppendToStreamAsync(new StreamName("gauge-1"), ExpectedVersion.NoStream, [.. labels.Select(l => serializer.ToEventData(new GaugeRead("g", l)))], default)).LastPosition;
        await using var runner = new ProjectionRunner(new Gauges(batchSize, handle), store, projections, serializer);
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status is var s && (s.State == ProjectionState.Failed || (s.State == ProjectionState.Live && s.Position >= last)), "the projection has failed or applied every event");
        return runner.Status;
    }

    private static void StoreAsRead(IProjectionContext ctx, GaugeRead e) => ctx.Documents.Store(new GaugeReading { Id = e.Id, Label = e.Label });

    [Fact]
    public async Task A_refused_index_value_fails_its_event_even_when_a_later_event_of_the_same_batch_overwrites_the_document()
    {
        var onePerBatch = await RunAsync(1, StoreAsRead, TooLong, "short");
        Assert.Equal(ProjectionState.Failed, onePerBatch.State);
        Assert.Equal(1, onePerBatch.FailedEvent?.Value);

        // The same events in one batch: the refused document is overwritten before the batch writes; its event fails all the same.
        var oneBatch = await RunAsync(1000, StoreAsRead, TooLong, "short");
        Assert.Equal(onePerBatch.State, oneBatch.State);
        Assert.Equal(onePerBatch.FailedEvent, oneBatch.FailedEvent);
    }

    // Changed just after the Store to the refused value, the event passed when a later event of its batch overwrote it.
    [Fact]
    public async Task A_document_changed_after_store_to_a_refused_index_value_fails_its_event_though_a_later_event_overwrites_it()
    {
        var status = await RunAsync(1000, (ctx, e) =>
        {
            var reading = new GaugeReading { Id = e.Id, Label = "pending" };
            ctx.Documents.Store(reading);
            reading.Label = e.Label;
        }, TooLong, "short");

        Assert.Equal(ProjectionState.Failed, status.State);
        Assert.Equal(1, status.FailedEvent?.Value);
    }

    // What is written is the document as its handler leaves it, not as it was when stored.
    [Fact]
    public async Task A_document_whose_index_value_its_handler_fixes_after_storing_it_is_written()
    {
        var status = await RunAsync(1000, (ctx, e) =>
        {
            var reading = new GaugeReading { Id = e.Id, Label = e.Label };
            ctx.Documents.Store(reading);
            reading.Label = reading.Label.Length > 16 ? reading.Label[..16] : reading.Label;
        }, TooLong);

        Assert.Equal(ProjectionState.Live, status.State);
        Assert.Null(status.FailedEvent);
    }
}
