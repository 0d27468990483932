using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Serialization;

namespace Quickstart;

// An event of another category, appended by a handler: a compliance review of a large deposit.
[EventType("review.opened")]
public sealed record ReviewOpened(string Owner, decimal Amount);

// A message, not an event: it goes to a queue and is never stored in the log.
[EventType("customer.notify")]
public sealed record NotifyCustomer(string Owner, string Text);

/// <summary>
/// Reacts to each large deposit routed from the log: opens a review and asks for the customer to be told. Both are
/// written through the context, so they commit with the acknowledgement of the deposit, or not at all.
/// </summary>
public sealed class LargeDepositHandler(EventSerializer serializer, TextWriter output) : IMessageHandler<Deposited>
{
    public static readonly QueueName Queue = "large-deposits";

    public ValueTask HandleAsync(Deposited deposit, MessageHandlerContext context, CancellationToken cancellationToken)
    {
        // A routed event keeps its envelope: the subject is the stream it was appended to.
        var account = new StreamName(context.Message.Subject!);
        var owner = account.Value[(account.Category.Length + 1)..];
        context.Append(StreamName.For("review", owner), ExpectedVersion.Any, serializer.ToEventData(new ReviewOpened(owner, deposit.Amount)));
        context.Send(Mailer.Queue, new NotifyCustomer(owner, $"your deposit of {deposit.Amount} is under review"));
        output.WriteLine($"  [{context.Consumer}] {account} deposited {deposit.Amount}: review opened, notice queued");
        return ValueTask.CompletedTask;
    }
}

/// <summary>Sends notices, once its template is installed; until then every notice is a poison message.</summary>
public sealed class Mailer(TextWriter output)
{
    public static readonly QueueName Queue = "notifications";

    private volatile bool _templateInstalled;

    /// <summary>The fix: after it, the dead-lettered notices can be redriven.</summary>
    public void InstallTemplate() => _templateInstalled = true;

    public ValueTask SendAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var notice = context.Read<NotifyCustomer>();
        if (!_templateInstalled)
        {
            // Retrying cannot help until someone installs the template: the consumer lists this type as non-retryable.
            throw new MissingTemplateException(context.Message.Type);
        }

        output.WriteLine($"  [{context.Consumer}] to {notice.Owner}: {notice.Text}");
        return ValueTask.CompletedTask;
    }
}

/// <summary>No template for a kind of notice: a failure that no retry can fix.</summary>
public sealed class MissingTemplateException(string type) : Exception($"There is no template for '{type}'.");
