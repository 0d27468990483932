using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Serialization;
using Cairn.Sqlite.CrashChild;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Projections under SIGKILL, with a real child process that appends to carts from several tasks while a projection of
/// them runs: async in small batches, inline in the transaction of each append, or async while it rebuilds into a
/// shadow. The child reports every projection batch it hands to the store and every batch committed; the test kills it
/// at a moment chosen from those lines, reopens the file and checks that the read model is exactly the log folded up to
/// the position stored with it, then runs it on to the head (and through the rebuild the kill interrupted) and checks
/// that it equals a rebuild from scratch, with every handled event applied once. The kill moments come from a seed that
/// is printed; set CAIRN_CRASH_SEED to replay one.
/// </summary>
public sealed class ProjectionCrashTests(ITestOutputHelper output) : IDisposable
{
    private const int AsyncCycles = 4;
    private const int InlineCycles = 3;
    private const int RebuildCycles = 2;
    private const int Backlog = 2000;

    /// <summary>Only a guard against a hung child or runner: nothing waits for it to pass.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    /// <summary>The event types the cart projection handles; <c>cart.viewed</c> only moves its position.</summary>
    private static readonly HashSet<string> HandledTypes = ["cart.item-added", "cart.item-removed", "cart.checked-out"];

    private readonly TempDatabase _database = new();
    private readonly EventSerializer _serializer = CrashProtocol.CartSerializer();
    private string _context = "";

    public void Dispose() => _database.Dispose();

    [Fact]
    public async Task an_async_projection_killed_mid_batch_resumes_to_a_read_model_equal_to_a_rebuild_from_scratch()
    {
        var seed = Seed();
        var random = new Random(seed);
        for (var cycle = 0; cycle < AsyncCycles; cycle++)
        {
            _context = $"seed {seed}, async cycle {cycle}";

            // After some committed batches (now and then none), at the next batch handed to the store: the kill lands
            // while the writer has it, or just after its commit.
            var target = random.Next(5) == 0 ? 0 : random.Next(1, 40);
            var childSeed = random.Next();
            var committed = 0;
            var lines = await RunUntilKilledAsync(CrashProtocol.ProjectAsyncMode, Durability(random), childSeed, line =>
            {
                if (CrashProtocol.ParseProgress(line) is not { } progress)
                {
                    return false;
                }

                committed += progress.Committed ? 1 : 0;
                return !progress.Committed && committed >= target;
            });

            // The runner hands its batches over one at a time: every batch but the last was committed, and the last is
            // in the file whole or not at all.
            var progress = lines.Select(CrashProtocol.ParseProgress).OfType<ProjectionProgress>().ToList();
            var last = progress.Last(p => !p.Committed);
            var found = await VerifyAsync(CrashProtocol.ProjectAsyncMode);
            var stored = found.StoredAtKill.Value;
            Assert.True(stored == last.From || stored == last.To, $"{_context}: the last batch handed over went from {last.From} to {last.To}, but the build was stored at {stored}");
            output.WriteLine($"{_context}: batches of {CrashProtocol.ChildBatchSize(childSeed)}, killed after {progress.Count(p => p.Committed)} reported commits with the batch {last.From}..{last.To} ({last.Events} events) in flight, which the file holds {(stored == last.To ? "whole" : "not at all")}; {found}");
        }
    }

    [Fact]
    public async Task an_inline_projection_killed_mid_append_equals_a_fold_from_scratch_after_restart()
    {
        var seed = Seed();
        var random = new Random(seed);
        for (var cycle = 0; cycle < InlineCycles; cycle++)
        {
            _context = $"seed {seed}, inline cycle {cycle}";
            if (cycle == 0)
            {
                // A history to catch up on, in the child's small batches, before appends apply the projection: the
                // first kill is aimed at that catch-up (the child may have gone on to go live by the time it lands).
                await AppendBacklogAsync(random);
                var target = random.Next(1, 8);
                var committed = 0;
                var lines = await RunUntilKilledAsync(CrashProtocol.ProjectInlineMode, Durability(random), random.Next(), line =>
                    CrashProtocol.ParseProgress(line) is { Committed: true } && ++committed >= target);
                var live = lines.Contains(CrashProtocol.Ready);
                var found = await VerifyAsync(CrashProtocol.ProjectInlineMode);
                Assert.True(!live || found.StoredAtKill == found.HeadAtKill, $"{_context}: the inline projection was live, yet its read model was stored at {found.StoredAtKill} with the log at {found.HeadAtKill}");
                output.WriteLine($"{_context}: killed {(live ? "after it went live" : "in the catch-up")}, after {lines.Count(l => CrashProtocol.ParseProgress(l) is { Committed: true })} committed batches; {found}");
            }
            else
            {
                // After some acknowledged appends (now and then none), while the other writers' appends, each applying
                // the projection in its own transaction, are in flight.
                var target = random.Next(5) == 0 ? 0 : random.Next(1, 120);
                var acks = 0;
                var lines = await RunUntilKilledAsync(CrashProtocol.ProjectInlineMode, Durability(random), random.Next(), line =>
                    target == 0 ? line == CrashProtocol.Ready : CrashProtocol.ParseAck(line) is not null && ++acks >= target);
                var found = await VerifyAsync(CrashProtocol.ProjectInlineMode);
                Assert.True(found.StoredAtKill == found.HeadAtKill, $"{_context}: the inline projection was live, yet its read model was stored at {found.StoredAtKill} with the log at {found.HeadAtKill}");
                output.WriteLine($"{_context}: killed after {lines.Count(l => CrashProtocol.ParseAck(l) is not null)} acknowledged appends; {found}");
            }
        }
    }

    [Fact]
    public async Task a_projection_killed_mid_rebuild_resumes_its_shadow_and_switches_to_a_read_model_equal_to_a_rebuild_from_scratch()
    {
        var seed = Seed();
        var random = new Random(seed);
        _context = $"seed {seed}, history";
        await AppendBacklogAsync(random);
        await VerifyAsync(CrashProtocol.ProjectRebuildMode);
        for (var cycle = 0; cycle < RebuildCycles; cycle++)
        {
            _context = $"seed {seed}, rebuild cycle {cycle}";

            // The serving build starts at the head, so the only batches from position 0 are the shadow's: kill after some
            // of them are committed, with the next in flight.
            var target = random.Next(1, 30);
            long? shadow = null;
            var committed = 0;
            var lines = await RunUntilKilledAsync(CrashProtocol.ProjectRebuildMode, Durability(random), random.Next(), line =>
            {
                if (CrashProtocol.ParseProgress(line) is not { } progress)
                {
                    return false;
                }

                shadow ??= progress.From == 0 ? progress.Build : null;
                committed += progress.Committed && progress.Build == shadow ? 1 : 0;
                return !progress.Committed && progress.Build == shadow && committed >= target;
            });

            var found = await VerifyAsync(CrashProtocol.ProjectRebuildMode);
            var shadowBatches = lines.Select(CrashProtocol.ParseProgress).Count(p => p is { Committed: true } && p.Build == shadow);
            output.WriteLine($"{_context}: killed after {shadowBatches} committed batches of the shadow; {found}");
        }
    }

    private static int Seed()
    {
        var configured = Environment.GetEnvironmentVariable("CAIRN_CRASH_SEED");
        return string.IsNullOrEmpty(configured) ? Random.Shared.Next() : int.Parse(configured, CultureInfo.InvariantCulture);
    }

    /// <summary>synchronous=NORMAL gives up only the last commits on power loss: a killed process loses nothing either.</summary>
    private static SqliteDurability Durability(Random random) => random.Next(4) == 0 ? SqliteDurability.Normal : SqliteDurability.Full;

    private SqliteEventStore OpenStore() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    private async Task AppendBacklogAsync(Random random)
    {
        await using var store = OpenStore();
        for (var appended = 0; appended < Backlog;)
        {
            var cart = $"cart-{random.Next(CrashProtocol.CartCount)}";
            var events = Enumerable.Range(0, random.Next(10, 30)).Select(_ => _serializer.ToEventData(CrashProtocol.RandomCartEvent(random, cart))).ToList();
            await store.AppendToStreamAsync(cart, ExpectedVersion.Any, events, CancellationToken.None);
            appended += events.Count;
        }
    }

    /// <summary>
    /// Reopens the file after a kill. The read model must be the log folded up to the position stored with it (what a
    /// batch writes and its position commit together); run on to the head in this process, it must equal a fold of the
    /// whole log from scratch, its tally must count every handled event of the log once, and no cart may have seen an
    /// event twice.
    /// </summary>
    private async Task<Verified> VerifyAsync(string mode)
    {
        await using var store = OpenStore();
        CheckIntegrity();
        var projections = new SqliteProjectionStore(store);
        var projection = CrashProtocol.Carts(mode, batchSize: 1000);
        var models = new ReadModels(projections, _serializer, [projection]);
        var head = await store.GetHeadPositionAsync(CancellationToken.None);
        var builds = await projections.OpenAsync(projection, CancellationToken.None);
        var rebuilding = mode == CrashProtocol.ProjectRebuildMode;
        Assert.True(builds.Shadow is null || rebuilding, $"{_context}: a shadow build {builds.Shadow} was left behind");
        var stored = builds.Serving.Position;
        Assert.True(stored <= head, $"{_context}: the read model is stored at {stored}, past the head {head}");
        var asOf = await store.BuildAsOfAsync(projection, _serializer, stored);
        await AssertSameAsync(asOf.ReadModels, models, projection.Name, $"at the kill, the read model stored at {stored} is not the log folded up to there");

        await using (var runner = new ProjectionRunner(projection, store, projections, _serializer))
        {
            await runner.StartAsync(CancellationToken.None);
            await runner.WaitForPositionAsync(head, Guard);
            if (builds.Shadow is not null)
            {
                // The shadow goes on from where the kill left it, beside the serving build, and takes its place.
                await Wait.UntilAsync(() => runner.Status.Rebuild is null, "the rebuild left by the kill switches");
                await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the switched projection is live");
            }

            if (projection.Lifecycle == ProjectionLifecycle.Inline)
            {
                // Live again, it takes appends in their own transactions.
                await Wait.UntilAsync(() => runner.Status.State == ProjectionState.Live, "the inline projection is live again");
                await store.AppendToStreamAsync("cart-0", ExpectedVersion.Any, [_serializer.ToEventData(new CartItemAdded("cart-0", "sku-after", 1, 1m))], CancellationToken.None);
            }
        }

        var scratch = await store.BuildLiveAsync(projection, _serializer);
        await AssertSameAsync(scratch.ReadModels, models, projection.Name, "run on to the head, the read model is not a rebuild from scratch");

        long handled = 0, events = 0;
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, CancellationToken.None))
        {
            events++;
            handled += HandledTypes.Contains(e.Type) ? 1 : 0;
        }

        var tally = await models.LoadAsync<CartTally>(CartProjection.TallyId) ?? new CartTally(CartProjection.TallyId, 0, 0, 0);
        Assert.True(tally.Events == handled && tally.Replays == 0, $"{_context}: the tally counts {tally.Events} events ({tally.Replays} applied again), but the log holds {handled} it handles");
        var carts = await models.Query<CartView>().Take(DocumentQuery<CartView>.MaxTake).ToListAsync();
        Assert.True(carts.All(c => c.Replays == 0), $"{_context}: carts saw events again: {string.Join(", ", carts.Where(c => c.Replays > 0))}");
        return new Verified(head, stored, builds.Shadow?.Position, events, handled, carts.Count);
    }

    /// <summary>Every cart and the tally, in both read models, must be the same.</summary>
    private async Task AssertSameAsync(ReadModels expected, ReadModels actual, string projection, string what)
    {
        var want = await expected.Query<CartView>(projection).Take(DocumentQuery<CartView>.MaxTake).ToListAsync();
        var got = await actual.Query<CartView>(projection).Take(DocumentQuery<CartView>.MaxTake).ToListAsync();
        var wantTally = await expected.LoadAsync<CartTally>(CartProjection.TallyId);
        var gotTally = await actual.LoadAsync<CartTally>(CartProjection.TallyId);
        if (want.SequenceEqual(got) && wantTally == gotTally)
        {
            return;
        }

        var differences = want.Select(c => c.Id).Union(got.Select(c => c.Id)).Order(StringComparer.Ordinal)
            .Select(id => (Want: want.FirstOrDefault(c => c.Id == id), Got: got.FirstOrDefault(c => c.Id == id)))
            .Where(d => d.Want != d.Got)
            .Select(d => $"\n  expected {d.Want?.ToString() ?? "none"}\n  found    {d.Got?.ToString() ?? "none"}");
        Fail($"{what}: tally expected {wantTally}, found {gotTally}{string.Concat(differences)}");
    }

    private void CheckIntegrity()
    {
        using var connection = new SqliteConnection(_database.ConnectionString + ";Pooling=False");
        connection.Open();
        using var check = connection.CreateCommand();
        check.CommandText = "PRAGMA integrity_check";
        var verdict = (string?)check.ExecuteScalar();
        Assert.True(verdict == "ok", $"{_context}: the integrity check says {verdict}");
    }

    private async Task<List<string>> RunUntilKilledAsync(string mode, SqliteDurability durability, int childSeed, Func<string, bool> killNow) =>
        (await CrashChildProcess.RunUntilKilledAsync(_database.Path, mode, durability.ToString(), childSeed, killNow, Guard, _context)).Lines;

    [DoesNotReturn]
    private void Fail(string message) => throw new XunitException($"{_context}: {message}");

    /// <summary>What a reopened file held.</summary>
    private sealed record Verified(GlobalPosition HeadAtKill, GlobalPosition StoredAtKill, GlobalPosition? ShadowAtKill, long Events, long Handled, int Carts)
    {
        public override string ToString() =>
            $"at the kill the log was at {HeadAtKill}, the read model at {StoredAtKill}{(ShadowAtKill is { } shadow ? $" and its shadow at {shadow}" : "")}; {Events} events in all, {Handled} handled, {Carts} carts";
    }
}
