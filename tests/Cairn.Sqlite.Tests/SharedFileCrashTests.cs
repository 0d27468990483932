using System.Diagnostics;
using System.Text;
using Cairn.EventStore;
using Cairn.Sqlite.CrashChild;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// A second process on the file while a crash child writes to it, and a kill of that child under it: the second
/// process opens within its busy timeout, appends beside the child, and everything either acknowledged survives.
/// </summary>
public sealed class SharedFileCrashTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    [Theory]
    [InlineData("mixed")]
    [InlineData("huge")]
    public async Task a_second_process_opens_and_appends_while_the_child_writes_and_keeps_all_it_was_acknowledged_after_the_child_is_killed(string mode)
    {
        var errors = new StringBuilder();
        var acked = new Dictionary<Guid, AckedBatch>();
        var lines = new List<string>();
        var ours = new List<(Guid Batch, AppendResult Result)>();
        using (var child = CrashChildProcess.Start(_database.Path, mode, "Full", 7, errors))
        {
            try
            {
                // Wait for the child to be appending.
                var acks = 0;
                while (acks < 30)
                {
                    var line = await CrashChildProcess.ReadLineAsync(child, Guard, mode, lines, errors) ?? throw new XunitException($"child ended: {errors}");
                    lines.Add(line);
                    if (CrashProtocol.ParseAck(line) is not null)
                    {
                        acks++;
                    }
                }

                // Keep draining the child's output while the second "process" works.
                var drain = Task.Run(async () =>
                {
                    while (await child.StandardOutput.ReadLineAsync() is { } line)
                    {
                        lock (lines)
                        {
                            lines.Add(line);
                        }
                    }
                });

                var opening = Stopwatch.StartNew();
                await using (var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString, BusyTimeout = TimeSpan.FromSeconds(10) }))
                {
                    output.WriteLine($"opened beside the child in {opening.ElapsedMilliseconds} ms");
                    for (var i = 0; i < 20; i++)
                    {
                        var batch = Guid.NewGuid();
                        var result = await store.AppendToStreamAsync(new StreamName("pool-1"), ExpectedVersion.Any, [CrashProtocol.Event(batch, 0, 1, 10)]);
                        ours.Add((batch, result));
                    }

                    child.Kill(entireProcessTree: true);
                    await child.WaitForExitAsync();
                    Assert.True(child.ExitCode == CrashChildProcess.SigKillExitCode, $"the child ended with {child.ExitCode}: {errors}");

                    // The store still open in this process goes on after the child died mid-write.
                    for (var i = 0; i < 20; i++)
                    {
                        var batch = Guid.NewGuid();
                        var result = await store.AppendToStreamAsync(new StreamName("pool-2"), ExpectedVersion.Any, [CrashProtocol.Event(batch, 0, 1, 10)]);
                        ours.Add((batch, result));
                    }
                }

                await drain.WaitAsync(Guard);
            }
            finally
            {
                if (!child.HasExited)
                {
                    child.Kill(entireProcessTree: true);
                    child.WaitForExit();
                }
            }
        }

        foreach (var line in lines)
        {
            if (CrashProtocol.ParseAck(line) is { } ack)
            {
                acked[ack.Batch] = ack;
            }
        }

        SqliteConnection.ClearAllPools();
        await using var reopened = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        var found = new Dictionary<Guid, List<(long Position, string Stream, long Version)>>();
        long position = 0;
        await foreach (var e in reopened.ReadAllAsync(GlobalPosition.Start, EventFilter.AllWithSystemEvents, long.MaxValue, CancellationToken.None))
        {
            Assert.True(e.Position.Value == ++position, $"$all jumps from {position - 1} to {e.Position.Value}");
            var (batch, _, _) = CrashProtocol.ReadPayload(e.Data.Span);
            if (!found.TryGetValue(batch, out var events))
            {
                found[batch] = events = [];
            }

            events.Add((e.Position.Value, e.Stream.Value, e.Version));
        }

        foreach (var (batch, result) in ours)
        {
            Assert.True(found.TryGetValue(batch, out var events) && events[0].Position == result.FirstPosition.Value, $"this process's acknowledged append {batch:N} at {result.FirstPosition} is lost or moved");
        }

        foreach (var ack in acked.Values)
        {
            Assert.True(found.TryGetValue(ack.Batch, out var events) && events.Count == ack.Size && events[0].Position == ack.FirstPosition, $"the child's acknowledged append {ack.Batch:N} ({ack.Size} at {ack.FirstPosition}) is lost or moved");
        }

        foreach (var (batch, events) in found)
        {
            var size = acked.TryGetValue(batch, out var a) ? a.Size : -1;
            Assert.True(size < 0 || events.Count == size, $"append {batch:N} is half there");
        }

        output.WriteLine($"{acked.Count} child appends, {ours.Count} of ours, head {position}");
    }
}
