using System.Text;
using System.Text.Json;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;

namespace Cairn.Postgres.ConsumerChild;

/// <summary>
/// The child process of the PostgreSQL multi-process tests: <c>Cairn.Postgres.ConsumerChild &lt;connection string&gt;
/// &lt;schema&gt; &lt;label&gt;</c> consumes <see cref="WorkQueue"/> of the schema with the inbox on until it is killed.
/// Each message's effect is one event in the message's own stream, appended through the handler's context, so it
/// commits with the acknowledgement and the inbox record. It prints <c>ready</c> once consuming and
/// <c>handled &lt;id&gt;</c> when a handler has run (before its commit). It stops by itself only when its stdin closes
/// (exit 3), which happens when the test process is gone, so no child outlives its parent.
/// </summary>
public static class Program
{
    /// <summary>The queue the children compete for; the test declares and fills it.</summary>
    public static readonly QueueName WorkQueue = new("multi-process-work");

    /// <summary>The type of the event a handled message leaves behind.</summary>
    public const string HandledType = "test.handled";

    private static async Task<int> Main(string[] args)
    {
        if (args.Length != 3)
        {
            await Console.Error.WriteLineAsync("usage: Cairn.Postgres.ConsumerChild <connection string> <schema> <label>");
            return 2;
        }

        ExitWhenParentIsGone();
        var output = TextWriter.Synchronized(new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" });
        var label = args[2];
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = args[0], Schema = args[1], ExternalCommitPollInterval = TimeSpan.FromMilliseconds(200) });
        await using var broker = new PostgresMessageBroker(store);
        var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions(WorkQueue, "multi-process-consumer") { Concurrency = 4, UseInbox = true },
            async (context, cancellationToken) =>
            {
                // Long enough that a kill finds handlers running and messages leased.
                await Task.Delay(2, cancellationToken);
                var message = context.Message.Id;
                context.Append(
                    new StreamName($"handled-{message.Value:N}"),
                    ExpectedVersion.Any,
                    new EventData(Cairn.Envelopes.MessageId.New(), HandledType, JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["by"] = label })));
                output.WriteLine($"handled {message.Value:N}");
            });
        await consumer.StartAsync(CancellationToken.None);
        output.WriteLine("ready");

        // Consumes until the kill; the consumer is never stopped, so nothing is given back on the way out.
        await Task.Delay(Timeout.InfiniteTimeSpan);
        return 0;
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
