using System.Diagnostics;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Serialization;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// Appends cart events from <see cref="Writers"/> concurrent tasks while a projection of them runs: async, in batches
/// of <see cref="CrashProtocol.ChildBatchSize"/> events (<see cref="CrashProtocol.ProjectAsyncMode"/>), inline, in the
/// transaction of each append (<see cref="CrashProtocol.ProjectInlineMode"/>), or async while it rebuilds into a
/// shadow (<see cref="CrashProtocol.ProjectRebuildMode"/>). It prints ready once the projection runs (an inline one:
/// once appends apply it; a rebuilt one: once the rebuild has started), then every projection batch when it is handed
/// to the store and again once committed, and every acknowledged append, after and not before.
/// </summary>
internal sealed class CrashProjector(SqliteEventStore store, TextWriter output, string mode, int seed)
{
    private const int Writers = 4;

    /// <summary>Only a guard against a projection that never goes live: nothing waits for it to pass.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    public async Task RunAsync()
    {
        var serializer = CrashProtocol.CartSerializer();
        var projection = CrashProtocol.Carts(mode, CrashProtocol.ChildBatchSize(seed));
        var projections = new ReportingProjectionStore(new SqliteProjectionStore(store), output.WriteLine);

        // Never stopped: it runs until the kill.
        var runner = new ProjectionRunner(projection, store, projections, serializer);
        await runner.StartAsync(CancellationToken.None);
        if (projection.Lifecycle == ProjectionLifecycle.Inline || mode == CrashProtocol.ProjectRebuildMode)
        {
            await LiveAsync(runner);
        }

        if (mode == CrashProtocol.ProjectRebuildMode)
        {
            // Into a shadow from position 0, beside the serving read model; the kill comes long before it is done.
            _ = runner.RebuildAsync();
        }

        output.WriteLine(CrashProtocol.Ready);
        await Task.WhenAll(Enumerable.Range(0, Writers).Select(writer => Task.Run(() => AppendLoopAsync(serializer, writer))));
    }

    /// <summary>Waits until the projection has caught up (an inline one: until appends apply it).</summary>
    private static async Task LiveAsync(ProjectionRunner runner)
    {
        var started = Stopwatch.GetTimestamp();
        while (runner.Status is { State: not ProjectionState.Live } status)
        {
            if (status.State == ProjectionState.Failed || Stopwatch.GetElapsedTime(started) > Guard)
            {
                throw new InvalidOperationException($"The projection did not go live: {status}");
            }

            await Task.Delay(1);
        }
    }

    /// <summary>Appends one to four events to one cart, or to two carts at once, again and again.</summary>
    private async Task AppendLoopAsync(EventSerializer serializer, int writer)
    {
        var random = new Random((seed * 397) + writer);
        while (true)
        {
            var first = random.Next(CrashProtocol.CartCount);
            var carts = random.Next(4) == 0 ? new[] { first, (first + 1 + random.Next(CrashProtocol.CartCount - 1)) % CrashProtocol.CartCount } : [first];
            var parts = carts.Select(cart =>
            {
                var name = $"cart-{cart}";
                return new StreamAppend(name, ExpectedVersion.Any, [.. Enumerable.Range(0, random.Next(1, 5)).Select(_ => serializer.ToEventData(CrashProtocol.RandomCartEvent(random, name)))]);
            }).ToList();
            var result = await store.AppendToStreamsAsync(parts, CancellationToken.None);
            output.WriteLine(CrashProtocol.Ack(Guid.NewGuid(), "carts", parts.Sum(p => p.Events.Count), result));
        }
    }
}
