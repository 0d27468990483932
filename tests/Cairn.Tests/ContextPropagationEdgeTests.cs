using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Messaging.Routing;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>Edges of how the ambient message context reaches (and leaves) what is appended and sent.</summary>
public sealed class ContextPropagationEdgeTests
{
    // MessageContext.Begin: "Makes a context current until the returned scope is disposed." Scopes disposed out of
    // order (an outer scope first, then an inner one) must not leave the disposed outer context current.
    [Fact]
    public async Task A_context_whose_scope_was_disposed_is_not_current_after_its_inner_scope_is_disposed_too()
    {
        var store = new InMemoryEventStore();
        using (MessageContext.Begin("request-1"))
        {
            var outer = MessageContext.Begin("outer-flow");
            var inner = MessageContext.Begin("inner-flow");
            outer.Dispose();
            inner.Dispose();

            // Both scopes opened here are disposed: the context of the request is current again.
            Assert.Equal("request-1", MessageContext.Current?.CorrelationId);
            await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData(MessageId.New(), "order.placed", "{}"u8.ToArray())]);
        }

        var appended = await store.ReadStreamAsync("order-1").SingleAsync();
        Assert.Equal("request-1", appended.CorrelationId);
    }

    // EventMessages.ToMessage / docs/messaging.md: a message made from an event keeps the event's "correlation,
    // causation and trace context". A replay run while a context is current (an operator's request, a handler) must
    // not make the caller's message the cause of archived events that had none.
    [Fact]
    public async Task A_replayed_event_keeps_its_own_causation_rather_than_the_replaying_callers()
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("replay"), default);
        var from = DateTimeOffset.UtcNow.AddMinutes(-1);
        var eventId = MessageId.New();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData(eventId, "order.placed", "{}"u8.ToArray())]);
        var recorded = await store.ReadStreamAsync("order-1").SingleAsync();
        Assert.Null(recorded.CausationId);

        using (MessageContext.Begin("ops-request", "ops-command-7"))
        {
            Assert.Equal(1, await broker.ReplayAsync(store, new ReplayRequest("replay", from, DateTimeOffset.UtcNow.AddMinutes(1))));
        }

        var delivery = Assert.Single(await broker.ReceiveAsync("replay", new ReceiveOptions { MaxMessages = 10 }, default));
        Assert.Equal(eventId, delivery.Message.Id);
        Assert.Equal(recorded.CorrelationId, delivery.Message.CorrelationId);
        Assert.Equal(recorded.CausationId, delivery.Message.CausationId);
    }
}
