using Cairn.EventStore;
using Cairn.Projections.InMemory;
using Cairn.Serialization;

namespace Cairn.Projections;

/// <summary>A read model built in memory for one caller: a live fold, or a view of the past.</summary>
/// <param name="ReadModels">Its documents, queried as the registered read models are.</param>
/// <param name="Position">The position of the last event it includes.</param>
/// <param name="EventsApplied">How many events were applied to build it.</param>
public sealed record ReadModelView(ReadModels ReadModels, GlobalPosition Position, long EventsApplied);

/// <summary>
/// Live projections and point-in-time views: a projection folded in memory over the log (or one stream) up to a
/// position or a time, into a temporary store that nothing else sees. They answer "what did this look like on
/// 1 October" without touching the serving read model.
/// </summary>
public static class ProjectionViews
{
    /// <summary>Builds the projection's read model as it was after the event at <paramref name="position"/>.</summary>
    public static Task<ReadModelView> BuildAsOfAsync(this IEventStore store, Projection projection, EventSerializer serializer, GlobalPosition position, CancellationToken cancellationToken = default) =>
        BuildAsync(store, projection, serializer, position, null, cancellationToken);

    /// <summary>Builds the projection's read model as it was at <paramref name="time"/>: every event committed then or before.</summary>
    public static Task<ReadModelView> BuildAsOfAsync(this IEventStore store, Projection projection, EventSerializer serializer, DateTimeOffset time, CancellationToken cancellationToken = default) =>
        BuildAsync(store, projection, serializer, null, time, cancellationToken);

    /// <summary>Builds the projection's read model now, in memory, without storing anything.</summary>
    public static Task<ReadModelView> BuildLiveAsync(this IEventStore store, Projection projection, EventSerializer serializer, CancellationToken cancellationToken = default) =>
        BuildAsync(store, projection, serializer, null, null, cancellationToken);

    /// <summary>
    /// A live projection of one stream: folds the stream's events (up to <paramref name="asOfVersion"/> when given)
    /// through the projection in memory and returns the document <paramref name="id"/> (the stream's name by
    /// default), or null.
    /// </summary>
    public static async Task<T?> AggregateStreamAsync<T>(this IEventStore store, Projection projection, EventSerializer serializer, StreamName stream, string? id = null, long? asOfVersion = null, CancellationToken cancellationToken = default)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(store);
        var applier = new ProjectionApplier(projection, serializer);
        var target = new InMemoryProjectionStore();
        var builds = await target.OpenAsync(projection, cancellationToken).ConfigureAwait(false);
        var events = new List<RecordedEvent>();
        await foreach (var e in store.ReadStreamAsync(stream, cancellationToken).ConfigureAwait(false))
        {
            if (asOfVersion is { } version && e.Version > version)
            {
                break;
            }

            events.Add(e);
        }

        var position = events.Count == 0 ? GlobalPosition.Start : events[^1].Position;
        await target.ApplyAsync(new ProjectionBatch(projection.Name, builds.Serving.Id, GlobalPosition.Start, position, events, applier.Apply), cancellationToken).ConfigureAwait(false);
        return await new ReadModels(target, serializer, [projection]).Query<T>(projection.Name).LoadAsync(id ?? stream.Value, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<ReadModelView> BuildAsync(IEventStore store, Projection projection, EventSerializer serializer, GlobalPosition? upTo, DateTimeOffset? until, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        var applier = new ProjectionApplier(projection, serializer);
        var target = new InMemoryProjectionStore();
        var builds = await target.OpenAsync(projection, cancellationToken).ConfigureAwait(false);
        var head = await store.GetHeadPositionAsync(cancellationToken).ConfigureAwait(false);
        var end = upTo is { } limit ? GlobalPosition.Min(limit, head) : head;
        var position = GlobalPosition.Start;
        long applied = 0;
        var batch = new List<RecordedEvent>(projection.BatchSize);
        var done = false;
        while (!done)
        {
            batch.Clear();
            await foreach (var e in store.ReadAllAsync(position.Next, applier.Filter, projection.BatchSize, cancellationToken).ConfigureAwait(false))
            {
                // Commit times never go backwards along the log, so the first event past the limit ends the view.
                if (e.Position > end || (until is { } time && e.Time > time))
                {
                    done = true;
                    break;
                }

                batch.Add(e);
            }

            if (batch.Count < projection.BatchSize)
            {
                done = true;
            }

            if (batch.Count == 0)
            {
                break;
            }

            var next = batch[^1].Position;
            await target.ApplyAsync(new ProjectionBatch(projection.Name, builds.Serving.Id, position, next, [.. batch], applier.Apply), cancellationToken).ConfigureAwait(false);
            position = next;
            applied += batch.Count;
        }

        return new ReadModelView(new ReadModels(target, serializer, [projection]), position, applied);
    }
}
