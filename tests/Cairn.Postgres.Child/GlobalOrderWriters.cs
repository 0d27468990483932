using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Postgres.Child;

/// <summary>
/// The writers of one process in the global-order test: each appends a mix of batches to its own stream with exact
/// versions, single events to contested streams with exact versions (conflicts roll back and are retried), atomic
/// appends to two streams, and appends to shared streams with any version.
/// </summary>
public static class GlobalOrderWriters
{
    /// <summary>How many streams every process contends for with exact versions.</summary>
    public const int ContestedStreams = 32;

    private const int SharedStreams = 8;

    /// <summary>The line a process prints once its store is open.</summary>
    public const string Ready = "READY";

    /// <summary>The prefix of a committed event's line.</summary>
    public const string Committed = "C ";

    /// <summary>The prefix of the last line: appends and conflicts.</summary>
    public const string Done = "DONE ";

    private static EventData Event() =>
        new("test.appended", Encoding.UTF8.GetBytes($"{{\"at\":{Stopwatch.GetTimestamp()}}}")) { Id = MessageId.New() };

    /// <summary>Runs one process's writers: opens the store, reports ready, waits for the go line, appends, reports.</summary>
    public static async Task<int> RunProcessAsync(string connectionString, string schema, int process, int writers, int appendsPerWriter)
    {
        var options = new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = schema };
        await using var store = new PostgresEventStore(options);
        Console.Out.WriteLine(Ready);
        Console.Out.Flush();
        if (await Console.In.ReadLineAsync() is null)
        {
            return 3;
        }

        var committed = new ConcurrentQueue<MessageId>();
        var (appends, conflicts) = await RunAsync(store, process, writers, appendsPerWriter, committed);
        var output = new StringBuilder();
        foreach (var id in committed)
        {
            output.Append(Committed).Append(id.Value.ToString("D")).Append('\n');
        }

        output.Append(Done).Append(appends).Append(' ').Append(conflicts).Append('\n');
        await Console.Out.WriteAsync(output.ToString());
        await Console.Out.FlushAsync();
        return 0;
    }

    /// <summary>Runs the writers on a store and returns how many appends they made and how many conflicts they retried.</summary>
    public static async Task<(int Appends, int Conflicts)> RunAsync(IEventStore store, int process, int writers, int appendsPerWriter, ConcurrentQueue<MessageId> committed)
    {
        var appends = 0;
        var conflicts = 0;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var writer = $"p{process}w{w}";
            long? own = null;
            for (var i = 0; i < appendsPerWriter; i++)
            {
                AppendResult result;
                EventData[] events;
                switch (i % 8)
                {
                    case 0 or 4:
                        events = [Event(), Event(), Event()];
                        result = await store.AppendToStreamAsync($"own-{writer}", own is { } v ? ExpectedVersion.Exactly(v) : ExpectedVersion.NoStream, events);
                        own = result.NextExpectedVersion;
                        break;
                    case 1:
                        var contested = new StreamName($"contested-{(process * writers + w + i) % ContestedStreams}");
                        while (true)
                        {
                            events = [Event()];
                            var version = await store.GetStreamVersionAsync(contested);
                            try
                            {
                                result = await store.AppendToStreamAsync(contested, version is { } sv ? ExpectedVersion.Exactly(sv) : ExpectedVersion.NoStream, events);
                                break;
                            }
                            catch (WrongExpectedVersionException)
                            {
                                Interlocked.Increment(ref conflicts);
                            }
                        }

                        break;
                    case 2 or 6:
                        var a = Event();
                        var b = Event();
                        events = [a, b];
                        result = await store.AppendToStreamsAsync(
                        [
                            new StreamAppend($"pair-{writer}-{i}", ExpectedVersion.NoStream, [a]),
                            new StreamAppend($"shared-{i % SharedStreams}", ExpectedVersion.Any, [b]),
                        ]);
                        break;
                    default:
                        events = [Event()];
                        result = await store.AppendToStreamAsync($"shared-{(w + i) % SharedStreams}", ExpectedVersion.Any, events);
                        break;
                }

                if (result.WasDuplicate || result.LastPosition.Value - result.FirstPosition.Value + 1 != events.Length)
                {
                    throw new InvalidOperationException($"Writer {writer}'s append {i} reported {result.FirstPosition}..{result.LastPosition} (duplicate: {result.WasDuplicate}) for {events.Length} events.");
                }

                foreach (var e in events)
                {
                    committed.Enqueue(e.Id);
                }

                Interlocked.Increment(ref appends);
            }
        })));
        return (appends, conflicts);
    }
}
