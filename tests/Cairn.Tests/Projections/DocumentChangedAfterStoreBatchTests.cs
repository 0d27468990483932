using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Projections;

[EventType("dial.read")]
public sealed record DialRead(string Id, string Label);

public sealed class DialReading
{
    public string Id { get; set; } = "";

    public string Label { get; set; } = "";
}

/// <summary>
/// A document its handler changes after storing it, to a value its index refuses: the event fails whichever batch it
/// falls in, as one that stores the refused value at once does.
/// </summary>
public sealed class DocumentChangedAfterStoreBatchTests
{
    private sealed class Dials : Projection
    {
        public Dials(int batchSize)
            : base("dials")
        {
            BatchSize = batchSize;
            CatchUpBatchSize = batchSize;
            MaxRetries = 0;
            RetryDelay = TimeSpan.Zero;
            Document<DialReading>(d => d.Id).Index("label", d => d.Label);
            On<DialRead>((ctx, e) =>
            {
                var reading = new DialReading { Id = e.Id, Label = "pending" };
                ctx.Documents.Store(reading);
                reading.Label = e.Label;
            });
        }
    }

    private static async Task<ProjectionStatus> RunAsync(int batchSize)
    {
        var serializer = new EventSerializer(new EventTypeRegistry().Register<DialRead>());
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var last = (await store.AppendToStreamAsync(new StreamName("dial-1"), ExpectedVersion.NoStream,
        [
            serializer.ToEventData(new DialRead("d", new string('x', DocumentIndex.MaxTextBytes + 1))),
            serializer.ToEventData(new DialRead("d", "short")),
        ], default)).LastPosition;
        await using var runner = new ProjectionRunner(new Dials(batchSize), store, projections, serializer);
        await runner.StartAsync(default);
        await Wait.UntilAsync(() => runner.Status is var s && (s.State == ProjectionState.Failed || (s.State == ProjectionState.Live && s.Position >= last)), "the projection has failed or applied every event");
        return runner.Status;
    }

    // Stored at once with the refused value, the event fails even when a later event of its batch overwrites the
    // document (BatchBoundaryFailureTests); changed to it just after the Store, it passed when so overwritten.
    [Fact]
    public async Task A_document_changed_after_store_to_a_refused_index_value_fails_its_event_though_a_later_event_overwrites_it()
    {
        var status = await RunAsync(batchSize: 1000);

        Assert.Equal(ProjectionState.Failed, status.State);
        Assert.Equal(1, status.FailedEvent?.Value);
    }
}
