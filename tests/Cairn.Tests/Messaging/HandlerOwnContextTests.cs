using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Messaging;

/// <summary>A MessageContext a handler opens itself stamps what it gathers inside it, though the commit comes later.</summary>
public sealed class HandlerOwnContextTests
{
    // A handler splitting a batch opens a context per item so that each item's effects form a flow of their own. The
    // effects are only gathered there and written when the handling commits, after the handler returned: they all took
    // the handled message's correlation, and the handler's context was silently ignored.
    [Fact]
    public async Task what_a_handler_gathers_inside_its_own_context_carries_that_contexts_correlation()
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("batches"), default);
        await broker.DeclareQueueAsync(new QueueDefinition("items"), default);
        await using var consumer = new QueueConsumer(broker, new ConsumerOptions("batches"), (context, _) =>
        {
            using (MessageContext.Begin(correlationId: "item-1"))
            {
                context.Send("items", new OutgoingMessage("item.split", "{}"u8.ToArray()));
                context.Append("item-1", ExpectedVersion.NoStream, TestEvents.Json(type: "item.received"));
            }

            using (MessageContext.Begin(correlationId: "item-2", causationId: "an-upstream-id"))
            {
                context.Send("items", new OutgoingMessage("item.split", "{}"u8.ToArray()));
            }

            context.Send("items", new OutgoingMessage("batch.split", "{}"u8.ToArray()));
            return ValueTask.CompletedTask;
        });
        await consumer.StartAsync(default);

        var batch = new OutgoingMessage("batch.received", "{}"u8.ToArray()) { CorrelationId = "batch-9" };
        await broker.SendAsync("batches", batch);
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the batch is handled");

        var items = await broker.ReceiveAsync("items", new ReceiveOptions { MaxMessages = 10 }, default);
        var sent = items.Select(d => d.Message).ToList();
        Assert.Equal(3, sent.Count);
        Assert.Equal(("item-1", batch.Id.ToString()), (sent[0].CorrelationId, sent[0].CausationId));
        Assert.Equal(("item-2", "an-upstream-id"), (sent[1].CorrelationId, sent[1].CausationId));
        Assert.Equal(("batch-9", batch.Id.ToString()), (sent[2].CorrelationId, sent[2].CausationId));
        var appended = await store.ReadStreamAsync("item-1").SingleAsync();
        Assert.Equal(("item-1", batch.Id.ToString()), (appended.CorrelationId, appended.CausationId));
    }
}
