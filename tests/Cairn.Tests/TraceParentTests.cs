using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Routing;

namespace Cairn.Tests;

/// <summary>
/// A traceparent is W3C Trace Context's, as CloudEvents' distributed tracing extension carries it: one in another form
/// is refused where it is given, and never passed on from what was stored or received before.
/// </summary>
public sealed class TraceParentTests
{
    private const string Valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    [Theory]
    [InlineData(Valid, true)]
    [InlineData("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later", true)]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later", false)]
    [InlineData("not-a-traceparent", false)]
    [InlineData("00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", false)]
    [InlineData("00-00000000000000000000000000000000-b7ad6b7169203331-01", false)]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", false)]
    [InlineData("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false)]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0", false)]
    [InlineData("00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false)]
    public void the_w3c_form_is_told_apart(string traceParent, bool valid)
    {
        Assert.Equal(valid, TraceParentText.IsValid(traceParent));
    }

    [Fact]
    public void a_message_given_a_traceparent_in_another_form_is_refused_naming_it()
    {
        var message = new OutgoingMessage("order.placed", "{}"u8.ToArray()) { TraceParent = "not-a-traceparent" };

        var refused = Assert.Throws<InvalidMessageException>(() => PreparedMessage.Prepare(message, new EventStoreOptions()));

        Assert.Contains("not-a-traceparent", refused.Message, StringComparison.Ordinal);
        Assert.Equal(Valid, PreparedMessage.Prepare(message with { TraceParent = Valid }, new EventStoreOptions()).TraceParent);
    }

    // An event stored before traceparents were checked is still routed: its malformed traceparent is left behind, not
    // a send refused for ever.
    [Fact]
    public void a_stored_event_with_a_traceparent_in_another_form_is_routed_without_it()
    {
        static RecordedEvent Recorded(string traceParent) =>
            new(MessageId.New(), "order-1", 0, new GlobalPosition(1), "order.placed", "urn:test", DateTimeOffset.UnixEpoch, EventData.JsonContentType, "{}"u8.ToArray())
            {
                TraceParent = traceParent,
            };

        var message = EventMessages.ToMessage(Recorded("trace-1"));

        Assert.Null(message.TraceParent);
        Assert.Equal(Valid, EventMessages.ToMessage(Recorded(Valid)).TraceParent);
        PreparedMessage.Prepare(message, new EventStoreOptions());
    }

    // A handled message from another publisher with a malformed traceparent: what the handler sends carries none, rather
    // than every send being refused for it.
    [Fact]
    public void a_handled_messages_traceparent_in_another_form_is_not_passed_on()
    {
        using (MessageContext.Begin("c-1", "m-1", "trace-1"))
        {
            Assert.Null(MessageContext.CurrentTraceParent());
        }

        using (MessageContext.Begin("c-1", "m-1", Valid))
        {
            Assert.Equal(Valid, MessageContext.CurrentTraceParent());
        }
    }
}
