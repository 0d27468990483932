using System.Diagnostics;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Postgres.ConsumerChild;
using Xunit.Sdk;

namespace Cairn.Postgres.Tests;

/// <summary>
/// Real processes: three consumer children compete for one queue of a shared schema; one is killed with SIGKILL while
/// it handles messages. Every message must still be handled, and each one's effect (an event committed with its
/// acknowledgement and inbox record) must be in the log exactly once.
/// </summary>
public sealed class MultiProcessConsumerTests
{
    private const int Messages = 400;
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task three_consumer_processes_handle_every_message_once_when_one_is_killed_mid_stream()
    {
        var schema = PostgresServer.NewSchema();
        var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema });
        var broker = new PostgresMessageBroker(store);
        var children = new List<(Process Process, StringBuilder Errors, List<string> Lines, Task Reader)>();
        try
        {
            // A killed child's leases run out soon, and no message is dead-lettered for the receives they cost.
            await broker.DeclareQueueAsync(new QueueDefinition(Program.WorkQueue) { Lease = TimeSpan.FromSeconds(2), MaxReceiveCount = 100 }, default);
            for (var c = 0; c < 3; c++)
            {
                children.Add(StartChild(schema, $"child-{c}"));
            }

            foreach (var child in children)
            {
                await WaitForLineAsync(child.Lines, l => l == "ready", child.Errors, "a child starts consuming");
            }

            // Sent once all three consume: sent before, the child that started first could drain most of the queue
            // alone while a slower one was still starting, and the kill below would come after the last message.
            for (var i = 0; i < Messages; i += 50)
            {
                await broker.SendBatchAsync(Program.WorkQueue, Enumerable.Range(i, 50).Select(n => new OutgoingMessage("test.work", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"))));
            }

            // The first child well into its share is killed, with handlers running and messages still to come.
            var victim = -1;
            await Wait.UntilAsync(() => (victim = children.FindIndex(c => Handled(c.Lines) >= 20)) >= 0, "a child handles twenty messages");
            children[victim].Process.Kill();
            Assert.True(children[victim].Process.WaitForExit(Guard), "The killed child did not die.");
            Assert.Equal(128 + 9, children[victim].Process.ExitCode);
            var left = await broker.GetStatsAsync(Program.WorkQueue, default);
            Assert.True(left.Visible + left.Leased > 0, $"The kill came after the queue was drained: {left}.");

            var deadline = Stopwatch.StartNew();
            while (true)
            {
                var stats = await broker.GetStatsAsync(Program.WorkQueue, default);
                if (stats is { Visible: 0, Leased: 0, Delayed: 0 })
                {
                    Assert.Equal(0, stats.DeadLettered);
                    break;
                }

                if (deadline.Elapsed > TimeSpan.FromMinutes(3))
                {
                    throw new XunitException($"The queue was not drained: {stats}.\n{string.Join('\n', children.Select(c => c.Errors.ToString()))}");
                }

                await Task.Delay(50);
            }

            // Every message's effect is in the log exactly once.
            var effects = await store.ReadAllAsync().Where(e => e.Type == Program.HandledType).ToListAsync();
            var byMessage = effects.GroupBy(e => e.Stream.Value).ToDictionary(g => g.Key, g => g.Count());
            Assert.Equal(Messages, byMessage.Count);
            Assert.All(byMessage, pair => Assert.Equal(1, pair.Value));
            Assert.Equal(Messages, effects.Count);
        }
        finally
        {
            foreach (var (process, _, _, reader) in children)
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit();
                }

                await reader.WaitAsync(Guard);
                process.Dispose();
            }

            await broker.DisposeAsync();
            await store.DisposeAsync();
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    private static int Handled(List<string> lines)
    {
        lock (lines)
        {
            return lines.Count(l => l.StartsWith("handled ", StringComparison.Ordinal));
        }
    }

    private static (Process Process, StringBuilder Errors, List<string> Lines, Task Reader) StartChild(string schema, string label)
    {
        var start = ChildProcess.StartInfo(typeof(Program).Assembly.Location, PostgresServer.ConnectionString, schema, label);
        start.RedirectStandardInput = true;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.StandardOutputEncoding = new UTF8Encoding(false);

        var process = Process.Start(start) ?? throw new XunitException("The consumer child did not start.");
        var errors = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
            {
                errors.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
        var lines = new List<string>();
        var reader = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (lines)
                {
                    lines.Add(line);
                }
            }
        });
        return (process, errors, lines, reader);
    }

    private static async Task WaitForLineAsync(List<string> lines, Func<string, bool> match, StringBuilder errors, string what)
    {
        var started = Stopwatch.StartNew();
        while (true)
        {
            lock (lines)
            {
                if (lines.Any(match))
                {
                    return;
                }
            }

            if (started.Elapsed > Guard)
            {
                lock (errors)
                {
                    throw new XunitException($"Gave up waiting until {what}:\n{errors}");
                }
            }

            await Task.Delay(5);
        }
    }
}
