using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// Sends from <see cref="Senders"/> concurrent tasks, each an endless loop of transactions that append one event to the
/// sender's own stream (at its exact expected version) and send <see cref="CrashProtocol.SendBatchSize"/> messages, so
/// a group commit usually carries several of them. A batch is announced before its commit and printed again once the
/// broker acknowledged it, after and not before.
/// </summary>
internal sealed class CrashSender(SqliteEventStore store, TextWriter output, int seed)
{
    private const int Senders = 4;

    public Task RunAsync()
    {
        var broker = new SqliteMessageBroker(store);
        output.WriteLine(CrashProtocol.Ready);
        return Task.WhenAll(Enumerable.Range(0, Senders).Select(sender => Task.Run(() => SendLoopAsync(broker, sender))));
    }

    private async Task SendLoopAsync(SqliteMessageBroker broker, int sender)
    {
        var random = new Random((seed * 397) + sender);
        var stream = new StreamName($"sender-{Guid.NewGuid():N}");
        long? last = null;
        while (true)
        {
            var batch = Guid.NewGuid();
            var padding = random.Next(0, 1000);
            var transaction = new MessageTransaction()
                .Append(new AppendRequest(stream, last is { } version ? ExpectedVersion.Exactly(version) : ExpectedVersion.NoStream, [CrashProtocol.BatchEvent(batch)]));
            for (var i = 0; i < CrashProtocol.SendBatchSize; i++)
            {
                transaction.Send(CrashProtocol.SentQueue, CrashProtocol.SentMessage(batch, i, padding));
            }

            output.WriteLine(CrashProtocol.Sending(batch));
            var result = await broker.CommitAsync(transaction, CancellationToken.None);
            if (result.MessagesEnqueued != CrashProtocol.SendBatchSize)
            {
                throw new InvalidOperationException($"The commit of batch {batch:N} enqueued {result.MessagesEnqueued} messages, not {CrashProtocol.SendBatchSize}.");
            }

            last = result.Appends[0].Streams[0].LastVersion;
            output.WriteLine(CrashProtocol.Sent(batch, result));
        }
    }
}
