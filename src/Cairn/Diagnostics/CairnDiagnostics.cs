using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Cairn.Diagnostics;

/// <summary>
/// The names under which Cairn records metrics and traces, so OpenTelemetry picks them up with
/// <c>AddMeter("Cairn.*")</c> and <c>AddSource("Cairn.*")</c> and no further glue.
/// </summary>
public static class CairnDiagnostics
{
    /// <summary>The meter and activity source of the event store.</summary>
    public const string EventStoreName = "Cairn.EventStore";

    /// <summary>The meter and activity source of subscriptions.</summary>
    public const string SubscriptionsName = "Cairn.Subscriptions";

    internal static readonly ActivitySource EventStoreSource = new(EventStoreName);
    internal static readonly ActivitySource SubscriptionSource = new(SubscriptionsName);

    private static readonly Meter EventStoreMeter = new(EventStoreName);
    private static readonly Meter SubscriptionMeter = new(SubscriptionsName);

    internal static readonly Counter<long> Appends = EventStoreMeter.CreateCounter<long>("cairn.eventstore.appends", "{append}", "Appends attempted, by outcome.");
    internal static readonly Counter<long> EventsAppended = EventStoreMeter.CreateCounter<long>("cairn.eventstore.events_appended", "{event}", "Events written.");
    internal static readonly Counter<long> Conflicts = EventStoreMeter.CreateCounter<long>("cairn.eventstore.conflicts", "{append}", "Appends refused for a wrong expected version or a failed condition.");
    internal static readonly Histogram<double> AppendDuration = EventStoreMeter.CreateHistogram<double>("cairn.eventstore.append.duration", "s", "Time from the call to the durable commit.");

    internal static readonly Counter<long> SubscriptionEvents = SubscriptionMeter.CreateCounter<long>("cairn.subscription.events", "{event}", "Events delivered to subscription handlers.");
    internal static readonly Counter<long> SubscriptionFailures = SubscriptionMeter.CreateCounter<long>("cairn.subscription.failures", "{failure}", "Subscription stops: a handler threw or the store failed.");
    internal static readonly Histogram<double> SubscriptionHandlerDuration = SubscriptionMeter.CreateHistogram<double>("cairn.subscription.handler.duration", "s", "Time a handler took for one event.");

    private static readonly ConcurrentDictionary<object, Func<Measurement<long>>> LagSources = new();

    static CairnDiagnostics()
    {
        SubscriptionMeter.CreateObservableGauge("cairn.subscription.lag", () => LagSources.Values.Select(f => f()), "{event}", "Events in the log not yet handled by the subscription.");
    }

    internal static void TrackLag(object owner, Func<Measurement<long>> measure) => LagSources[owner] = measure;

    internal static void UntrackLag(object owner) => LagSources.TryRemove(owner, out _);
}
