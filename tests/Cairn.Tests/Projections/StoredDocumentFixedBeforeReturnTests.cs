using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Projections;

[EventType("meter.read")]
public sealed record MeterRead(string Id, string Label);

public sealed class MeterReading
{
    public string Id { get; set; } = "";

    public string Label { get; set; } = "";
}

/// <summary>What a projection writes is the document as its handler leaves it, not as it was when stored.</summary>
public sealed class StoredDocumentFixedBeforeReturnTests
{
    private sealed class Meters : Projection
    {
        public Meters()
            : base("meters")
        {
            MaxRetries = 0;
            RetryDelay = TimeSpan.Zero;
            Document<MeterReading>(m => m.Id).Index("label", m => m.Label);
            On<MeterRead>((ctx, e) =>
            {
                // Stored first, then trimmed to what the index keeps before the handler returns.
                var reading = new MeterReading { Id = e.Id, Label = e.Label };
                ctx.Documents.Store(reading);
                if (reading.Label.Length > 16)
                {
                    reading.Label = reading.Label[..16];
                }
            });
        }
    }

    [Fact]
    public async Task A_document_whose_index_value_its_handler_fixes_after_storing_it_is_written()
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<MeterRead>());
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var last = (await store.AppendToStreamAsync(new StreamName("meter-1"), ExpectedVersion.NoStream,
        [
            serializer.ToEventData(new MeterRead("m", new string('x', DocumentIndex.MaxTextBytes + 1))),
        ], default)).LastPosition;
        await using var runner = new ProjectionRunner(new Meters(), store, projections, serializer);
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status is var s && (s.State == ProjectionState.Failed || (s.State == ProjectionState.Live && s.Position >= last)), "the projection has failed or applied every event");

        Assert.Equal(ProjectionState.Live, runner.Status.State);
        Assert.Null(runner.Status.FailedEvent);
    }
}
