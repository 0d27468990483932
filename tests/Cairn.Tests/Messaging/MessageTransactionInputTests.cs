using Cairn.Envelopes;
using Cairn.Messaging;

namespace Cairn.Tests.Messaging;

/// <summary>What a message transaction refuses as it is built, before anything reaches a backend.</summary>
public sealed class MessageTransactionInputTests
{
    // An inbox record under the default id would make every later handling marked the same way look like a repeat of the
    // first, and be skipped as AlreadyProcessed: effects lost without an error.
    [Fact]
    public void an_inbox_record_without_a_message_id_is_refused()
    {
        var transaction = new MessageTransaction();

        var refused = Assert.Throws<ArgumentException>(() => transaction.MarkProcessed("billing", default(MessageId)));

        Assert.Equal("messageId", refused.ParamName);
        Assert.Null(transaction.Inbox);
    }

    [Fact]
    public void an_inbox_record_with_a_message_id_is_kept()
    {
        var id = MessageId.New();

        var transaction = new MessageTransaction().MarkProcessed("billing", id);

        Assert.Equal(("billing", id), transaction.Inbox);
    }
}
