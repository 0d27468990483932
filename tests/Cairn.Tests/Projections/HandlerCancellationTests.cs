using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Projections;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Tests.Projections;

[EventType("cancel.noted")]
public sealed record CancelNoted(string Id, bool Cancels);

public sealed record CancelNote(string Id);

/// <summary>
/// A handler that throws an OperationCanceledException of its own (from a token it cancelled, not the runner's) has
/// failed its event like any other exception: the failure policy meets it, and an inline append fails with
/// ProjectionEventException. It is not the runner being stopped, nor a failure of the store.
/// </summary>
public sealed class HandlerCancellationTests
{
    private static EventSerializer Serializer() => new(new EventTypeRegistry().Register<CancelNoted>());

    private sealed class Notes : Projection
    {
        public Notes(ProjectionLifecycle lifecycle)
            : base("cancel-notes")
        {
            Lifecycle = lifecycle;
            OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter;
            MaxRetries = 0;
            RetryDelay = TimeSpan.Zero;
            Document<CancelNote>(n => n.Id);
            On<CancelNoted>((ctx, e) =>
            {
                if (e.Cancels)
                {
                    // The handler's own cancelled token: a budget of its own running out, say.
                    using var budget = new CancellationTokenSource();
                    budget.Cancel();
                    budget.Token.ThrowIfCancellationRequested();
                }

                ctx.Documents.Store(new CancelNote(e.Id));
            });
        }
    }

    [Fact]
    public async Task A_handler_throwing_its_own_cancellation_is_dead_lettered_by_SkipAndDeadLetter_and_the_projection_goes_on()
    {
        var serializer = Serializer();
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        var last = (await store.AppendToStreamAsync(new StreamName("note-1"), ExpectedVersion.NoStream,
        [
            serializer.ToEventData(new CancelNoted("a", false)),
            serializer.ToEventData(new CancelNoted("b", true)),
            serializer.ToEventData(new CancelNoted("c", false)),
        ], default)).LastPosition;

        await using var runner = new ProjectionRunner(new Notes(ProjectionLifecycle.Async), store, projections, serializer);
        await runner.StartAsync(default);

        // Expected: the event is skipped into a dead letter and the projection reaches the last event. The
        // cancellation escapes the event's failure handling instead, and the runner retries it forever as Faulted.
        await runner.WaitForPositionAsync(last, TimeSpan.FromSeconds(5));
        var deadLetters = await runner.ListDeadLettersAsync();
        Assert.Single(deadLetters);
        Assert.Equal(1, runner.Status.DeadLetters);
        Assert.NotEqual(ProjectionState.Faulted, runner.Status.State);
        var models = new ReadModels(projections, serializer, [runner.Projection]);
        Assert.NotNull(await models.LoadAsync<CancelNote>("c"));
        Assert.Null(await models.LoadAsync<CancelNote>("b"));
    }

    [Fact]
    public async Task An_inline_handler_throwing_its_own_cancellation_fails_the_append_with_ProjectionEventException()
    {
        var serializer = Serializer();
        var store = new InMemoryEventStore();
        var projections = new InMemoryProjectionStore(store);
        await store.AppendToStreamAsync(new StreamName("note-0"), ExpectedVersion.NoStream, [serializer.ToEventData(new CancelNoted("z", false))], default);
        await using var runner = new ProjectionRunner(new Notes(ProjectionLifecycle.Inline), store, projections, serializer);
        await runner.StartAsync(default);
        await Cairn.Conformance.Support.Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection live");

        await Assert.ThrowsAsync<ProjectionEventException>(() =>
            store.AppendToStreamAsync(new StreamName("note-1"), ExpectedVersion.NoStream, [serializer.ToEventData(new CancelNoted("b", true))], default));
    }
}
