using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;

namespace Cairn.Tests;

/// <summary>The ids a message context carries are ones every backend can store.</summary>
public sealed class MessageContextTests
{
    [Theory]
    [InlineData("")]
    [InlineData("request\u0000-1")]
    [InlineData("request\n-1")]
    public void An_id_no_backend_stores_is_refused_when_a_context_is_opened(string id)
    {
        Assert.Throws<ArgumentException>(() => MessageContext.Begin(id));
        Assert.Throws<ArgumentException>(() => MessageContext.Begin("request-1", id));
    }

    // A handled message from outside Cairn (another RabbitMQ publisher) may carry ids no backend stores: its handler's
    // context leaves them out, as if the message had none, so its appends and sends land rather than fail every time.
    [Fact]
    public async Task A_handled_messages_ids_no_backend_stores_are_left_out_of_its_context()
    {
        var store = new InMemoryEventStore();
        using (MessageContext.Begin("foreign\u0000correlation", "foreign\u0000cause", "00-\u0000"))
        {
            Assert.NotEqual("foreign\u0000correlation", MessageContext.Current!.CorrelationId);
            Assert.Null(MessageContext.Current.CausationId);
            await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData(MessageId.New(), "order.placed", "{}"u8.ToArray())]);
        }

        var appended = await store.ReadStreamAsync("order-1").SingleAsync();
        Assert.DoesNotContain('\u0000', appended.CorrelationId ?? "");
        Assert.Null(appended.CausationId);
    }
}
