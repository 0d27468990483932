using Cairn.Messaging.Consumers;
using Microsoft.Extensions.Logging;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// Consumes <see cref="CrashProtocol.WorkQueue"/> with a <see cref="QueueConsumer"/> until killed. Each message's effect
/// is one event appended through the handler's context, so it commits with the acknowledgement and the inbox record.
/// A message marked slow never finishes here: its handler waits, and the consumer keeps renewing its lease, until the
/// kill, so the kill always finds messages leased. A line is printed when a handler starts and once a settlement's
/// commit has returned, never before.
/// </summary>
internal sealed class CrashConsumer(SqliteEventStore store, TextWriter output, int run, ILogger<QueueConsumer> logger)
{
    public async Task RunAsync()
    {
        var broker = new ReportingBroker(new SqliteMessageBroker(store), (id, settlement) => output.WriteLine(CrashProtocol.Settled(id, settlement)));
        var consumer = new QueueConsumer(broker, CrashProtocol.ConsumerOptions(), HandleAsync, logger: logger);
        await consumer.StartAsync(CancellationToken.None);
        output.WriteLine(CrashProtocol.Ready);

        // Consumes until the kill; the consumer is never stopped, so nothing is given back on the way out.
        await Task.Delay(Timeout.InfiniteTimeSpan);
    }

    private async ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var (_, slow) = CrashProtocol.ReadWork(context.Message.Data);
        output.WriteLine(CrashProtocol.Started(context.Delivery, slow));
        if (slow)
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
        }

        CrashProtocol.RecordEffect(context, CrashProtocol.ChildLabel(run));
    }
}
