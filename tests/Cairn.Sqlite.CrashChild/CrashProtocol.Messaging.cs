using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// The messaging side of the crash child: the queues, the consumer and its effect, the batches sent, and the lines
/// printed for each. A consumer's lines name every message it started and every message whose settlement was durably
/// committed; a sender's name every batch it handed to the broker and every batch the broker acknowledged.
/// </summary>
public static partial class CrashProtocol
{
    /// <summary>Consumes <see cref="WorkQueue"/> with the inbox on, one event per message, until killed.</summary>
    public const string ConsumeMode = "consume";

    /// <summary>Sends batches of <see cref="SendBatchSize"/> messages, each committed with one event, until killed.</summary>
    public const string SendMode = "send";

    /// <summary>The consumer's name, which is its inbox key: the same in every process that consumes the work queue.</summary>
    public const string ConsumerName = "crash-consumer";

    /// <summary>The type of the messages in the work queue.</summary>
    public const string WorkType = "crash.work";

    /// <summary>The type of the event a handled message leaves behind.</summary>
    public const string HandledType = "crash.handled";

    /// <summary>The type of the messages the sender sends.</summary>
    public const string SentType = "crash.sent";

    /// <summary>The type of the event committed with each sent batch.</summary>
    public const string BatchType = "crash.batch";

    /// <summary>The number of messages in one sent batch.</summary>
    public const int SendBatchSize = 50;

    /// <summary>The queue the consumer consumes; the test declares it and fills it.</summary>
    public static QueueName WorkQueue { get; } = new("crash-work");

    /// <summary>The queue the sender sends to; the test declares it.</summary>
    public static QueueName SentQueue { get; } = new("crash-sent");

    /// <summary>
    /// The consumer's settings, the same in the child and in the test: several workers, the inbox on, leases renewed
    /// while a handler runs, and the queue's own lease. A slow message's handler hangs until the kill, so there are more
    /// workers than slow messages (one in twenty of the test's 200): hung handlers can never hold every worker and leave
    /// a child printing nothing more (with 4 workers that happened in one run in five).
    /// </summary>
    public static ConsumerOptions ConsumerOptions() => new(WorkQueue, ConsumerName) { Concurrency = 16, UseInbox = true };

    /// <summary>The label the effects of a consumer child record as their author.</summary>
    public static string ChildLabel(int run) => FormattableString.Invariant($"child-{run}");

    /// <summary>A message of the work queue: its index, and whether a child's handler of it hangs until the kill.</summary>
    public static OutgoingMessage Work(int index, bool slow) => new(MessageId.New(), WorkType, Json(json =>
    {
        json.WriteNumber("index", index);
        json.WriteBoolean("slow", slow);
    }));

    /// <summary>Reads back what <see cref="Work"/> wrote.</summary>
    public static (int Index, bool Slow) ReadWork(ReadOnlyMemory<byte> data)
    {
        using var json = JsonDocument.Parse(data);
        return (json.RootElement.GetProperty("index").GetInt32(), json.RootElement.GetProperty("slow").GetBoolean());
    }

    /// <summary>The stream a handled message's effect goes to, named after the message.</summary>
    public static StreamName HandledStream(MessageId message) => new($"handled-{message.Value:N}");

    /// <summary>
    /// The effect of handling a message: one event, with a new id so a second handling could not pass for a retry of
    /// the first, appended through the context so it commits with the acknowledgement and the inbox record.
    /// </summary>
    public static void RecordEffect(MessageHandlerContext context, string by)
    {
        ArgumentNullException.ThrowIfNull(context);
        var message = context.Message.Id;
        context.Append(HandledStream(message), ExpectedVersion.Any, new EventData(MessageId.New(), HandledType, Json(json =>
        {
            json.WriteString("message", message.Value.ToString("N"));
            json.WriteString("by", by);
        })));
    }

    /// <summary>Reads back what <see cref="RecordEffect"/> wrote: the message handled, and by whom.</summary>
    public static (MessageId Message, string By) ReadEffect(ReadOnlyMemory<byte> data)
    {
        using var json = JsonDocument.Parse(data);
        return (new MessageId(Guid.ParseExact(json.RootElement.GetProperty("message").GetString()!, "N")), json.RootElement.GetProperty("by").GetString()!);
    }

    /// <summary>Message <paramref name="index"/> of a sent batch: its id follows from the batch's, its payload names both.</summary>
    public static OutgoingMessage SentMessage(Guid batch, int index, int padding)
    {
        var payload = Event(batch, index, SendBatchSize, padding);
        return new OutgoingMessage(payload.Id, SentType, payload.Data);
    }

    /// <summary>The event committed with a sent batch: its payload names the batch and its number of messages.</summary>
    public static EventData BatchEvent(Guid batch) => new(MessageId.New(), BatchType, Event(batch, 0, SendBatchSize, 0).Data);

    /// <summary>The line printed when a handler starts on a delivery.</summary>
    public static string Started(Delivery delivery, bool slow)
    {
        ArgumentNullException.ThrowIfNull(delivery);
        return FormattableString.Invariant($"started {delivery.Message.Id.Value:N} {delivery.ReceiveCount} {(delivery.PreviousLeaseExpired ? 1 : 0)} {(slow ? 1 : 0)}{LineEnd}");
    }

    /// <summary>Reads a started line; null for any other line, complete or not.</summary>
    public static StartedMessage? ParseStarted(string line) =>
        line.Split(' ') is ["started", var id, var receives, var expired and ("0" or "1"), var slow and ("0" or "1"), "."]
            ? new StartedMessage(new MessageId(Guid.ParseExact(id, "N")), int.Parse(receives, CultureInfo.InvariantCulture), expired == "1", slow == "1")
            : null;

    /// <summary>The line printed once a settlement of a message is durably committed.</summary>
    public static string Settled(MessageId message, Settlement settlement) =>
        FormattableString.Invariant($"settled {message.Value:N} {settlement}{LineEnd}");

    /// <summary>Reads a settled line; null for any other line, complete or not.</summary>
    public static SettledMessage? ParseSettled(string line) =>
        line.Split(' ') is ["settled", var id, var settlement, "."] && Enum.TryParse<Settlement>(settlement, out var how)
            ? new SettledMessage(new MessageId(Guid.ParseExact(id, "N")), how)
            : null;

    /// <summary>The line printed when a batch is handed to the broker, before its commit.</summary>
    public static string Sending(Guid batch) => FormattableString.Invariant($"sending {batch:N}{LineEnd}");

    /// <summary>Reads a sending line; null for any other line, complete or not.</summary>
    public static Guid? ParseSending(string line) =>
        line.Split(' ') is ["sending", var batch, "."] ? Guid.ParseExact(batch, "N") : null;

    /// <summary>The line printed once a batch is committed: how many messages went in, and where its event landed.</summary>
    public static string Sent(Guid batch, CommitResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var append = result.Appends[0];
        var stream = append.Streams[0];
        return FormattableString.Invariant($"sent {batch:N} {result.MessagesEnqueued} {stream.Stream}:{stream.LastVersion} {append.LastPosition.Value}{LineEnd}");
    }

    /// <summary>Reads a sent line; null for any other line, complete or not.</summary>
    public static SentBatch? ParseSent(string line)
    {
        if (line.Split(' ') is not ["sent", var batch, var messages, var at, var position, "."] || at.Split(':') is not [var stream, var version])
        {
            return null;
        }

        return new SentBatch(
            Guid.ParseExact(batch, "N"),
            int.Parse(messages, CultureInfo.InvariantCulture),
            stream,
            long.Parse(version, CultureInfo.InvariantCulture),
            long.Parse(position, CultureInfo.InvariantCulture));
    }

    private static byte[] Json(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            write(json);
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}

/// <summary>A handler's start on a delivery, as the consumer reported it.</summary>
/// <param name="Id">The message.</param>
/// <param name="ReceiveCount">The delivery's receive count, this one included.</param>
/// <param name="PreviousLeaseExpired">Whether the previous delivery's lease ran out unsettled.</param>
/// <param name="Slow">Whether the handler hangs until the kill.</param>
public sealed record StartedMessage(MessageId Id, int ReceiveCount, bool PreviousLeaseExpired, bool Slow);

/// <summary>A settlement the broker committed, as the consumer reported it.</summary>
public sealed record SettledMessage(MessageId Id, Settlement Settlement);

/// <summary>A batch the child saw committed, and where the broker said its event landed.</summary>
/// <param name="Batch">The batch id, from which every message id follows.</param>
/// <param name="Messages">How many messages the commit said it enqueued.</param>
/// <param name="Stream">The stream of the batch's event.</param>
/// <param name="Version">The version of the batch's event.</param>
/// <param name="Position">The global position of the batch's event.</param>
public sealed record SentBatch(Guid Batch, int Messages, string Stream, long Version, long Position);
