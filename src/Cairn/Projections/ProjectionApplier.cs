using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Projections;

/// <summary>
/// A projection bound to the event types of a registry: which stored type names it handles and how to apply a batch of
/// events to a read model. Unknown types are passed over; a handled type that is not registered is refused here.
/// </summary>
internal sealed class ProjectionApplier
{
    private readonly Dictionary<string, Action<IProjectionContext, object>> _handlers = new(StringComparer.Ordinal);
    private readonly EventSerializer _serializer;
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<IReadOnlyList<RecordedEvent>, object?[]> _decoded = [];

    public ProjectionApplier(Projection projection, EventSerializer serializer)
    {
        ArgumentNullException.ThrowIfNull(projection);
        ArgumentNullException.ThrowIfNull(serializer);
        projection.Validate();
        Projection = projection;
        _serializer = serializer;
        var registrations = serializer.Registry.Registrations;
        foreach (var handled in projection.Handlers.Keys)
        {
            if (!registrations.Values.Any(handled.IsAssignableFrom))
            {
                throw new UnknownEventTypeException(handled.Name, $"Projection '{projection.Name}' handles {handled.FullName}, which has no registered event type name (register it, or a subclass, in CairnOptions.EventTypes)");
            }
        }

        foreach (var (name, type) in registrations)
        {
            // The most specific handled type of the registered type handles it: the one every other candidate is a base
            // class or interface of (an interface it implements beats a catch-all on object). Where there is none, a
            // class (the type or one of its bases, so the classes among the candidates are in one line) beats the
            // interfaces it is not related to, as a family's base record beats an interface some members implement;
            // two unrelated interfaces and no class but object are refused, never picked by the order they were declared in.
            var candidates = projection.Handlers.Keys.Where(h => h.IsAssignableFrom(type)).ToList();
            if (candidates.Count == 0)
            {
                continue;
            }

            var best = candidates.FirstOrDefault(c => candidates.All(other => other.IsAssignableFrom(c)))
                ?? candidates.Where(c => !c.IsInterface && c != typeof(object)).OrderByDescending(Depth).FirstOrDefault()
                ?? throw new InvalidProjectionException(
                    projection.Name,
                    $"the events of {type.FullName} ('{name}') match the handlers of {string.Join(" and ", candidates.Select(c => c.FullName).Order(StringComparer.Ordinal))}, none more specific than the others and no class among them; handle {type.Name} itself, or one type both lead to");
            _handlers[name] = projection.Handlers[best];
        }

        EventTypes = [.. _handlers.Keys.Order(StringComparer.Ordinal)];
        Filter = projection.Filter.WithEventTypes([.. EventTypes]);
    }

    public Projection Projection { get; }

    /// <summary>The stored type names it handles.</summary>
    public IReadOnlyList<string> EventTypes { get; }

    /// <summary>The projection's filter narrowed to the types it handles.</summary>
    public EventFilter Filter { get; }

    /// <summary>
    /// Deserializes a batch ahead of <c>Apply</c>, off the backend's writer, so reading and decoding overlap
    /// with the previous batch's commit. A failure is kept and thrown by <c>Apply</c> for its event.
    /// </summary>
    public void Decode(IReadOnlyList<RecordedEvent> events)
    {
        var payloads = new object?[events.Count];
        for (var i = 0; i < payloads.Length; i++)
        {
            var recorded = events[i];
            if (_handlers.ContainsKey(recorded.Type) && Projection.Filter.Matches(recorded))
            {
                try
                {
                    payloads[i] = _serializer.Deserialize(recorded);
                }
                catch (Exception ex)
                {
                    payloads[i] = new DecodeFailure(ex);
                }
            }
        }

        _decoded.AddOrUpdate(events, payloads);
    }

    /// <summary>Applies events through one document session and flushes it.</summary>
    public void Apply(IReadModelTransaction transaction, IReadOnlyList<RecordedEvent> events) => Apply(transaction, events, null);

    /// <summary>Applies events, loading documents a runner's earlier batches stored from <paramref name="cache"/>.</summary>
    public void Apply(IReadModelTransaction transaction, IReadOnlyList<RecordedEvent> events, DocumentCache? cache)
    {
        cache?.Begin(transaction);
        var session = new DocumentSession(Projection, transaction, _serializer.Options, cache);
        // The payloads decoded ahead serve the first attempt only: its handlers may change them (a document sharing a
        // list with its event, then changed), so an attempt run again after a failure decodes afresh.
        var decoded = _decoded.TryGetValue(events, out var payloads) ? payloads : null;
        _decoded.Remove(events);
        for (var i = 0; i < events.Count; i++)
        {
            var recorded = events[i];
            if (!_handlers.TryGetValue(recorded.Type, out var handler) || !Projection.Filter.Matches(recorded))
            {
                continue;
            }

            session.Begin(recorded);
            try
            {
                var payload = decoded?[i] ?? _serializer.Deserialize(recorded);
                if (payload is DecodeFailure failure)
                {
                    throw new ProjectionEventException(Projection.Name, recorded, failure.Error);
                }

                handler(session, payload);
                session.End();
            }
            // A cancellation too: a handler is given no token, and the statements run for it take none, so one thrown
            // here is the handler's own (a budget of its own running out) and meets the failure policy, whatever token
            // it carries; the runner's stop is seen between batches.
            catch (Exception ex) when (ex is not ProjectionEventException)
            {
                throw new ProjectionEventException(Projection.Name, recorded, ex);
            }
        }

        session.Flush();
    }

    private sealed record DecodeFailure(Exception Error);

    /// <summary>How far down the class hierarchy a class is.</summary>
    private static int Depth(Type type)
    {
        var depth = 0;
        for (var t = type.BaseType; t is not null; t = t.BaseType)
        {
            depth++;
        }

        return depth;
    }
}
