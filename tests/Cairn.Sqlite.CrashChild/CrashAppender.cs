using Cairn.EventStore;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// Appends from <see cref="Writers"/> concurrent tasks, each an endless loop of randomly chosen appends: one event,
/// a batch of up to 20, a batch at an exact expected version of the writer's own stream, an atomic append to several
/// streams, one that also creates a new stream, and (in huge mode, on one of the writers) <see cref="CrashProtocol.HugeBatchSize"/>
/// events at once. Each acknowledged append is printed, after the store acknowledged it and not before.
/// </summary>
internal sealed class CrashAppender(SqliteEventStore store, TextWriter output, int seed)
{
    private const int Writers = 8;
    private const int PoolStreams = 16;

    private readonly Lock _gate = new();

    /// <summary>Prints one complete line; AutoFlush pushes it to the pipe before the next append is acknowledged.</summary>
    public void Say(string line)
    {
        lock (_gate)
        {
            output.WriteLine(line);
        }
    }

    public Task RunAsync(bool huge) =>
        Task.WhenAll(Enumerable.Range(0, Writers).Select(writer => Task.Run(() => huge && writer == 0 ? HugeLoopAsync(writer) : MixedLoopAsync(writer))));

    private async Task MixedLoopAsync(int writer)
    {
        var random = new Random((seed * 397) + writer);
        var own = new StreamName($"own-{Guid.NewGuid():N}");
        long? ownLast = null;
        while (true)
        {
            var roll = random.Next(100);
            var (kind, parts) = roll switch
            {
                < 30 => ("single", new[] { Part(Pool(random), ExpectedVersion.Any, 1) }),
                < 55 => ("batch", [Part(Pool(random), ExpectedVersion.Any, random.Next(2, 21))]),
                < 70 => ("own", [Part(own, ownLast is { } last ? ExpectedVersion.Exactly(last) : ExpectedVersion.NoStream, random.Next(1, 21))]),
                < 90 => ("multi", Enumerable.Range(0, PoolStreams).OrderBy(_ => random.Next()).Take(random.Next(2, 5))
                    .Select(p => Part($"pool-{p}", ExpectedVersion.Any, random.Next(1, 6))).ToArray()),
                _ => ("fresh", [Part($"fresh-{Guid.NewGuid():N}", ExpectedVersion.NoStream, random.Next(1, 6)), Part(Pool(random), ExpectedVersion.Any, random.Next(1, 6))]),
            };

            var result = await AppendAsync(kind, parts, padding: random.Next(0, 200));
            if (kind == "own")
            {
                ownLast = result.Streams[0].LastVersion;
            }
        }
    }

    private async Task HugeLoopAsync(int writer)
    {
        var random = new Random((seed * 397) + writer);
        while (true)
        {
            // One stream, or split across a shared stream and a new one: either way one atomic append.
            var half = CrashProtocol.HugeBatchSize / 2;
            var parts = random.Next(2) == 0
                ? new[] { Part($"huge-{Guid.NewGuid():N}", ExpectedVersion.NoStream, CrashProtocol.HugeBatchSize) }
                : [Part(Pool(random), ExpectedVersion.Any, half), Part($"huge-{Guid.NewGuid():N}", ExpectedVersion.NoStream, CrashProtocol.HugeBatchSize - half)];

            // Large enough payloads that the transaction outgrows SQLite's page cache and spills into the WAL before
            // it commits, so a kill can leave uncommitted frames behind for recovery to discard.
            await AppendAsync("huge", parts, padding: 250, announce: true);
        }
    }

    private async Task<AppendResult> AppendAsync(string kind, (StreamName Stream, ExpectedVersion Expected, int Count)[] parts, int padding, bool announce = false)
    {
        var batch = Guid.NewGuid();
        var size = parts.Sum(p => p.Count);
        var index = 0;
        var streams = new List<StreamAppend>(parts.Length);
        foreach (var (stream, expected, count) in parts)
        {
            var events = new EventData[count];
            for (var i = 0; i < count; i++)
            {
                events[i] = CrashProtocol.Event(batch, index++, size, padding);
            }

            streams.Add(new StreamAppend(stream, expected, events));
        }

        var append = store.AppendToStreamsAsync(streams, CancellationToken.None);
        if (announce)
        {
            // A heartbeat while the append is in flight, so the test can pick a kill moment inside it by counting lines.
            Say(CrashProtocol.Pending(batch, size));
            while (!append.IsCompleted)
            {
                await Task.WhenAny(append, Task.Delay(1));
                Say(CrashProtocol.Waiting(batch));
            }
        }

        var result = await append;
        Say(CrashProtocol.Ack(batch, kind, size, result));
        return result;
    }

    private static (StreamName, ExpectedVersion, int) Part(StreamName stream, ExpectedVersion expected, int count) => (stream, expected, count);

    private static StreamName Pool(Random random) => $"pool-{random.Next(PoolStreams)}";
}
