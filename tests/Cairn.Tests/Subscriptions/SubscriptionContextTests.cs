using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>A subscription's handler reacts to an event inside that event's correlation, as a consumer's does to a message.</summary>
public sealed class SubscriptionContextTests
{
    [Fact]
    public async Task what_a_subscription_handler_appends_carries_the_events_correlation_and_the_event_as_its_cause()
    {
        var store = new InMemoryEventStore();
        AppendResult placed;
        using (MessageContext.Begin(correlationId: "order-flow-7"))
        {
            placed = await store.AppendToStreamAsync(new StreamName("order-7"), ExpectedVersion.NoStream, [TestEvents.Json(type: "order.placed")]);
        }

        var reacted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            if (e.Type == "order.placed")
            {
                await store.AppendToStreamAsync(new StreamName("invoice-7"), ExpectedVersion.NoStream, [TestEvents.Json(type: "invoice.drafted")], cancellationToken);
                reacted.TrySetResult();
            }
        }

        var options = new SubscriptionOptions { Name = "invoicing" };
        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), options, Handle);
        using (MessageContext.Begin(correlationId: "the-starters-own"))
        {
            await subscription.StartAsync(default);
        }

        await reacted.Task.Bounded();
        var cause = await store.ReadStreamAsync(new StreamName("order-7")).SingleAsync();
        var effect = await store.ReadStreamAsync(new StreamName("invoice-7")).SingleAsync();
        Assert.Equal(placed.LastPosition, cause.Position);
        Assert.Equal("order-flow-7", effect.CorrelationId);
        Assert.Equal(cause.Id.ToString(), effect.CausationId);
    }

    [Fact]
    public async Task an_event_that_started_its_own_flow_correlates_what_its_handler_appends_by_its_own_id()
    {
        var store = new InMemoryEventStore();
        await store.AppendToStreamAsync(new StreamName("order-8"), ExpectedVersion.NoStream, [TestEvents.Json(type: "order.placed")]);
        var reacted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            if (e.Type == "order.placed")
            {
                await store.AppendToStreamAsync(new StreamName("invoice-8"), ExpectedVersion.NoStream, [TestEvents.Json(type: "invoice.drafted")], cancellationToken);
                reacted.TrySetResult();
            }
        }

        await using var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), new SubscriptionOptions { Name = "invoicing" }, Handle);
        await subscription.StartAsync(default);

        await reacted.Task.Bounded();
        var cause = await store.ReadStreamAsync(new StreamName("order-8")).SingleAsync();
        var effect = await store.ReadStreamAsync(new StreamName("invoice-8")).SingleAsync();
        Assert.Equal(cause.Id.ToString(), effect.CorrelationId);
        Assert.Equal(cause.Id.ToString(), effect.CausationId);
    }
}
