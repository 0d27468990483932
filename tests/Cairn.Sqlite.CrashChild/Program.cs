using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// The child process of the SQLite crash-safety tests:
/// <c>Cairn.Sqlite.CrashChild &lt;file&gt; &lt;mode&gt; Full|Normal &lt;seed&gt;</c> opens the store in the file
/// with the given durability and, until it is killed, appends from several tasks (<c>mixed</c>, <c>huge</c>), consumes
/// the work queue (<c>consume</c>, where the seed is the run's number), sends batches of messages each committed with
/// an event (<c>send</c>), appends while a projection runs (<c>project-async</c>, <c>project-inline</c>,
/// <c>project-rebuild</c>), or hosts the checkout workflow and its services (<c>workflow</c>), printing a line for
/// everything the store acknowledged. It stops by itself only when a write fails (exit 1) or when its stdin closes
/// (exit 3), which happens when the test process is gone, so no child outlives its parent.
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        if (args.Length != 4
            || args[1] is not (CrashProtocol.MixedMode or CrashProtocol.HugeMode or CrashProtocol.ConsumeMode or CrashProtocol.SendMode
                or CrashProtocol.ProjectAsyncMode or CrashProtocol.ProjectInlineMode or CrashProtocol.ProjectRebuildMode or CrashProtocol.WorkflowMode)
            || !Enum.TryParse<SqliteDurability>(args[2], out var durability)
            || !int.TryParse(args[3], NumberStyles.None, CultureInfo.InvariantCulture, out var seed))
        {
            await Console.Error.WriteLineAsync("usage: Cairn.Sqlite.CrashChild <file> mixed|huge|consume|send|project-async|project-inline|project-rebuild|workflow Full|Normal <seed>");
            return 2;
        }

        ExitWhenParentIsGone();
        var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        try
        {
            // Standard output is the protocol; the store's and the consumer's warnings go to standard error.
            using var logging = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Warning).AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace));
            using var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = $"Data Source={args[0]}", Durability = durability }, logger: logging.CreateLogger<SqliteEventStore>());
            switch (args[1])
            {
                case CrashProtocol.ConsumeMode:
                    await new CrashConsumer(store, TextWriter.Synchronized(output), seed, logging.CreateLogger<Messaging.Consumers.QueueConsumer>()).RunAsync();
                    break;
                case CrashProtocol.SendMode:
                    await new CrashSender(store, TextWriter.Synchronized(output), seed).RunAsync();
                    break;
                case CrashProtocol.ProjectAsyncMode or CrashProtocol.ProjectInlineMode or CrashProtocol.ProjectRebuildMode:
                    await new CrashProjector(store, TextWriter.Synchronized(output), args[1], seed).RunAsync();
                    break;
                case CrashProtocol.WorkflowMode:
                    await new CrashWorkflow(store, TextWriter.Synchronized(output)).RunAsync();
                    break;
                default:
                    var appender = new CrashAppender(store, output, seed);
                    appender.Say(CrashProtocol.Ready);
                    await appender.RunAsync(huge: args[1] == CrashProtocol.HugeMode);
                    break;
            }

            return 0;
        }
        catch (Exception ex)
        {
            await Console.Error.WriteLineAsync(ex.ToString());
            return 1;
        }
    }

    private static void ExitWhenParentIsGone()
    {
        var thread = new Thread(() =>
        {
            using var input = Console.OpenStandardInput();
            var buffer = new byte[256];
            while (input.Read(buffer) > 0)
            {
            }

            Environment.Exit(3);
        })
        {
            IsBackground = true,
            Name = "parent watch",
        };
        thread.Start();
    }
}
