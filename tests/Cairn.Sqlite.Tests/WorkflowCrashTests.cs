using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Sqlite.CrashChild;
using Cairn.Workflows;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Durable workflows under SIGKILL, with a real child process hosting the checkout (reserve stock, charge the payment,
/// arrange shipping, undone in reverse on a failure) and its three services on one SQLite file. Before each child run
/// the test starts a wave of checkouts; the child reports what the file held when it started, every history it
/// committed, and every service handler started and committed; the test kills it at a point chosen from those lines,
/// and after the last run, which goes on until every checkout has finished, reads the file: every instance finished as
/// its case says, with a well-formed history, and every effect happened exactly once, under the idempotency key of the
/// step or compensation that caused it, though commands were handled more than once. The kill points come from a
/// seed that is printed; set CAIRN_CRASH_SEED to replay one.
/// </summary>
public sealed class WorkflowCrashTests(ITestOutputHelper output) : IDisposable
{
    private const string Reserve = "reserve-stock";
    private const string Charge = "charge-payment";
    private const string Ship = "arrange-shipping";

    /// <summary>Only a guard against a hung child: nothing waits for it to pass.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);

    /// <summary>The step each kind of effect belongs to, and whether it is that step's compensation.</summary>
    private static readonly Dictionary<string, (string Step, bool Compensation)> EffectSteps = new(StringComparer.Ordinal)
    {
        ["reserve"] = (Reserve, false),
        ["charge"] = (Charge, false),
        ["ship"] = (Ship, false),
        ["release"] = (Reserve, true),
        ["refund"] = (Charge, true),
        ["cancel-shipment"] = (Ship, true),
    };

    /// <summary>The kind of effect of each command type.</summary>
    private static readonly Dictionary<string, string> CommandKinds = new(StringComparer.Ordinal)
    {
        ["inventory.reserve-stock"] = "reserve",
        ["inventory.release-stock"] = "release",
        ["payments.charge"] = "charge",
        ["payments.refund"] = "refund",
        ["shipping.arrange"] = "ship",
        ["shipping.cancel"] = "cancel-shipment",
    };

    private static readonly string[] Completed =
        ["started", $"step {Reserve}", $"done {Reserve}", $"step {Charge}", $"done {Charge}", $"step {Ship}", $"done {Ship}", "completed"];

    /// <summary>What each case ends as: its status, its history (attempts and ignored messages folded away) and its effects.</summary>
    private static readonly Dictionary<CheckoutCase, (WorkflowStatus Status, string[] Script, string[] Effects)> Outcomes = new()
    {
        [CheckoutCase.Ok] = (WorkflowStatus.Completed, Completed, ["reserve", "charge", "ship"]),
        [CheckoutCase.Late] = (WorkflowStatus.Completed, Completed, ["reserve", "charge", "ship"]),
        [CheckoutCase.Declined] = (WorkflowStatus.Failed,
            ["started", $"step {Reserve}", $"done {Reserve}", $"step {Charge}", $"failed {Charge}", $"compensate {Reserve}", $"undo {Reserve}", $"undone {Reserve}", "failed"],
            ["reserve", "release"]),
        [CheckoutCase.Never] = (WorkflowStatus.Failed,
            ["started", $"step {Reserve}", $"done {Reserve}", $"step {Charge}", $"done {Charge}", $"step {Ship}", $"failed {Ship}", $"compensate {Ship},{Charge},{Reserve}",
                $"undo {Ship}", $"undone {Ship}", $"undo {Charge}", $"undone {Charge}", $"undo {Reserve}", $"undone {Reserve}", "failed"],
            ["reserve", "charge", "ship", "cancel-shipment", "refund", "release"]),
        [CheckoutCase.NoStock] = (WorkflowStatus.Failed, ["started", $"step {Reserve}", $"failed {Reserve}", "compensate ", "failed"], []),
    };

    /// <summary>How long the last run may take to finish every checkout: only a guard against one that never does.</summary>
    private static readonly TimeSpan LastRunGuard = TimeSpan.FromSeconds(45);

    private readonly TempDatabase _database = new();
    private readonly Dictionary<string, CheckoutCase> _orders = new(StringComparer.Ordinal);
    private string _context = "";

    public void Dispose() => _database.Dispose();

    [Fact]
    public async Task checkouts_killed_mid_step_at_random_points_resume_and_each_effect_happens_once_per_idempotency_key()
    {
        var seed = Seed();
        var random = new Random(seed);
        CheckoutCase[] cases = [.. Repeat(CheckoutCase.Ok, 5), .. Repeat(CheckoutCase.Late, 4), .. Repeat(CheckoutCase.Declined, 4), .. Repeat(CheckoutCase.Never, 4), .. Repeat(CheckoutCase.NoStock, 3)];
        random.Shuffle(cases);
        int[] waves = [8, 4, 4, 4];

        // Each round kills at another sort of point: inside a service's handler before its commit; just after a
        // service committed an effect, its reply not yet taken; just after a step's command went out; after any commit.
        (string Name, Func<WorkflowReport, bool> Is, int Max)[] points =
        [
            ("in a handler", r => r is EffectReport { What: "invoked" }, 12),
            ("after an effect", r => r is EffectReport { What: "effect" }, 10),
            ("after a step started", r => r is HistoryReport h && h.Types.Contains("step-started"), 12),
            ("after a commit", r => r is HistoryReport, 30),
        ];
        random.Shuffle(points);

        var runs = new List<ChildRun>();
        var started = 0;
        for (var round = 0; round < waves.Length; round++)
        {
            _context = $"seed {seed}, round {round}";
            await StartAsync(cases.Skip(started).Take(waves[round]).Select((c, i) => (started + i, c)));
            started += waves[round];
            var (name, isPoint, max) = points[round];
            var target = random.Next(1, max + 1);
            var seen = 0;
            var run = await RunChildAsync(runs, (run, report) => report is not null && isPoint(report) && ++seen >= target && run.Unfinished > 0);
            output.WriteLine($"{_context}: killed {(run.KilledAtPoint ? $"{name} (#{target})" : "with every checkout finished")}; {run}");
        }

        _context = $"seed {seed}, last run";
        var last = await RunChildAsync(runs, killNow: null);
        output.WriteLine($"{_context}: {last}");
        _context = $"seed {seed}";
        await VerifyAsync(runs);
        Assert.True(runs.SkipLast(1).Count(r => r.KilledAtPoint) >= 2, $"{_context}: fewer than two kills landed at their points: {string.Join("; ", runs)}");
    }

    [Fact]
    public async Task checkouts_killed_mid_compensation_resume_and_undo_each_step_once()
    {
        var seed = Seed();
        var random = new Random(seed);
        CheckoutCase[] cases = [.. Repeat(CheckoutCase.Declined, 6), .. Repeat(CheckoutCase.Never, 6)];
        random.Shuffle(cases);
        const int Wave = 3;

        // Each round kills at another point of a compensation: as it begins; inside the inventory's handler of the
        // release; just after the release was done but before it is confirmed; as its timer fired.
        (string Name, Func<WorkflowReport, bool> Is, int Max)[] points =
        [
            ("as a compensation began", r => r is HistoryReport h && h.Types.Contains("compensation-began"), 3),
            ("in the handler of a release", r => r is EffectReport { What: "invoked", Effect.Kind: "release" }, 2),
            ("after a release, before its confirmation", r => r is EffectReport { What: "effect", Effect.Kind: "release" }, 2),
            ("as a compensation timed out", r => r is HistoryReport h && h.Types.Contains("compensation-timed-out"), 2),
        ];
        random.Shuffle(points);

        var runs = new List<ChildRun>();
        for (var round = 0; round < points.Length; round++)
        {
            _context = $"seed {seed}, round {round}";
            await StartAsync(cases.Skip(round * Wave).Take(Wave).Select((c, i) => ((round * Wave) + i, c)));
            var (name, isPoint, max) = points[round];
            var target = random.Next(1, max + 1);
            var seen = 0;
            var run = await RunChildAsync(runs, (run, report) => report is not null && isPoint(report) && ++seen >= target && run.Compensating > 0);
            Assert.True(run.KilledAtPoint, $"{_context}: the child was not killed {name}: every checkout finished first; {run}");
            output.WriteLine($"{_context}: killed {name} (#{target}) with {run.Compensating} checkouts compensating; {run}");
        }

        _context = $"seed {seed}, last run";
        var last = await RunChildAsync(runs, killNow: null);
        output.WriteLine($"{_context}: {last}");

        // The kills left compensations half done in the file, and a later run found them so. A kill lands a moment after
        // the point is reported, in which a compensation can still finish, so not every run needs to find one.
        var foundMidway = Enumerable.Range(1, runs.Count - 1).Count(r => runs[r].AtStart.Values.Any(s => s == WorkflowStatus.Compensating));
        output.WriteLine($"seed {seed}: {foundMidway} of {runs.Count - 1} restarts found a checkout mid-compensation");
        Assert.True(foundMidway > 0, $"seed {seed}: no restart found a checkout compensating, though each run before it was killed mid-compensation");

        _context = $"seed {seed}";
        await VerifyAsync(runs);
    }

    /// <summary>
    /// The case an order ended in. A late shipment completes when a retry's reply arrives before the last attempt
    /// times out; but time runs on while the child is dead, and a restarted child first fires the timers that fell due
    /// meanwhile, so kills can use up every attempt before the reply is taken: then it ends as one never shipped.
    /// </summary>
    private static CheckoutCase Ended(CheckoutCase @case, WorkflowStatus? status) =>
        @case == CheckoutCase.Late && status == WorkflowStatus.Failed ? CheckoutCase.Never : @case;

    private static int Seed()
    {
        var configured = Environment.GetEnvironmentVariable("CAIRN_CRASH_SEED");
        return string.IsNullOrEmpty(configured) ? Random.Shared.Next() : int.Parse(configured, CultureInfo.InvariantCulture);
    }

    private static IEnumerable<CheckoutCase> Repeat(CheckoutCase @case, int count) => Enumerable.Repeat(@case, count);

    /// <summary>Cairn on the file with the checkout, as the child has it but without its services; nothing is started.</summary>
    private static ServiceProvider OpenCheckout(SqliteEventStore store)
    {
        var services = new ServiceCollection();
        CrashProtocol.AddCheckout(services, store, new SqliteMessageBroker(store));
        return services.BuildServiceProvider();
    }

    private SqliteEventStore OpenStore() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    /// <summary>Starts checkouts through the client, between two child runs: each start commits with its first command.</summary>
    private async Task StartAsync(IEnumerable<(int Index, CheckoutCase Case)> orders)
    {
        await using var store = OpenStore();
        await using var provider = OpenCheckout(store);
        var broker = provider.GetRequiredService<IMessageBroker>();
        foreach (var queue in CrashProtocol.Queues())
        {
            await broker.DeclareQueueAsync(queue, CancellationToken.None);
        }

        var client = provider.GetRequiredService<WorkflowClient>();
        foreach (var (index, @case) in orders)
        {
            var order = CrashProtocol.Order(index, @case);
            _orders.Add(order.OrderId, @case);
            await client.StartAsync(CrashProtocol.Checkout, order.OrderId, order);
        }
    }

    /// <summary>
    /// Runs the child until <paramref name="killNow"/> says so (called with null for the ready line), or, when it is
    /// null or never says so, until every checkout has finished and every effect its case expects is committed. Checks
    /// that what the child found at its start holds everything the runs before it saw committed.
    /// </summary>
    private async Task<ChildRun> RunChildAsync(List<ChildRun> runs, Func<ChildRun, WorkflowReport?, bool>? killNow)
    {
        var run = new ChildRun(runs.Count, _orders);
        var clock = Stopwatch.StartNew();
        var (lines, beforeKill) = await CrashChildProcess.RunUntilKilledAsync(_database.Path, CrashProtocol.WorkflowMode, nameof(SqliteDurability.Full), runs.Count, line =>
        {
            var report = CrashProtocol.ParseWorkflowLine(line);
            if (line == CrashProtocol.Ready)
            {
                run.Ready = true;
            }
            else if (report is null)
            {
                return false;
            }
            else
            {
                run.Add(report);
            }

            if (run.Ready && killNow is not null && killNow(run, report))
            {
                run.KilledAtPoint = true;
                return true;
            }

            return (run.Ready && run.IsDone) || clock.Elapsed > LastRunGuard;
        }, Guard, _context);
        Check(run.KilledAtPoint || run.IsDone, $"the checkouts did not all finish within {LastRunGuard}: {string.Join(", ", run.Status.Where(s => s.Value is not (WorkflowStatus.Completed or WorkflowStatus.Failed)).Select(s => $"{s.Key} {s.Value}"))}; {run}");

        // What the child printed between the kill and its death happened too.
        foreach (var report in lines.Skip(beforeKill).Select(CrashProtocol.ParseWorkflowLine).OfType<WorkflowReport>())
        {
            run.Add(report);
        }

        if (runs.Count > 0)
        {
            var previous = runs[^1];
            foreach (var (order, version) in previous.Versions)
            {
                Assert.True(run.AtStartVersions.TryGetValue(order, out var found) && found >= version, $"{_context}: the previous run saw {order}'s history committed up to version {version}, but the file holds it up to {(run.AtStartVersions.TryGetValue(order, out var v) ? v : -1)}");
            }

            var lost = previous.Done.Where(e => !run.Had.Contains(e)).ToList();
            Assert.True(lost.Count == 0, $"{_context}: effects the previous run saw committed are not in the file: {string.Join(", ", lost)}");
        }

        Assert.True(_orders.Keys.All(run.AtStart.ContainsKey), $"{_context}: the child found {run.AtStart.Count} of the {_orders.Count} checkouts started");
        runs.Add(run);
        return run;
    }

    /// <summary>
    /// Reads the file after the last run: every instance finished as its case says, with a well-formed history; every
    /// effect its case expects happened exactly once, under the key of its step or compensation, caused by a command
    /// the history sent, and no other effect happened; commands handled more than once did their effect once; no
    /// message was dead-lettered, and no command still queued would do a second effect.
    /// </summary>
    private async Task VerifyAsync(IReadOnlyList<ChildRun> runs)
    {
        CheckIntegrity();
        await using var store = OpenStore();
        await using var provider = OpenCheckout(store);
        var client = provider.GetRequiredService<WorkflowClient>();

        var effects = new Dictionary<(string Kind, string Order), List<(Effect Effect, MessageId Message, RecordedEvent Event)>>();
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForCategory(CrashProtocol.EffectCategory), long.MaxValue, CancellationToken.None))
        {
            var (effect, message) = CrashProtocol.ReadEffectEvent(e.Data);
            if (!effects.TryGetValue((effect.Kind, effect.Order), out var found))
            {
                effects[(effect.Kind, effect.Order)] = found = [];
            }

            found.Add((effect, message, e));
        }

        var invocations = runs.SelectMany(r => r.Invoked).GroupBy(i => i).ToDictionary(g => g.Key, g => g.Count());
        var (ignored, retried, deduped) = (0, 0, 0);
        var ended = new Dictionary<string, CheckoutCase>(StringComparer.Ordinal);
        foreach (var (order, started) in _orders)
        {
            var instance = await client.GetAsync(CrashProtocol.Checkout, order);
            var history = await client.GetHistoryAsync(CrashProtocol.Checkout, order);
            var @case = ended[order] = Ended(started, instance?.Status);
            var (status, script, expectedEffects) = Outcomes[@case];
            Check(instance is not null && instance.Status == status, $"{order} ended {instance?.Status.ToString() ?? "nowhere"}, not {status} ({instance?.Reason}):\n{Timeline(history)}");
            var (steps, attempts, ignoredHere) = Fold(order, history);
            ignored += ignoredHere;
            Check(steps.SequenceEqual(script), $"{order}'s history is\n  {string.Join(" | ", steps)}\nnot\n  {string.Join(" | ", script)}:\n{Timeline(history)}");

            // Retries: shipping is tried every time when it never answers, at least twice when it answers late; a
            // release is confirmed only when asked again.
            Check(@case != CheckoutCase.Never || attempts[Ship] == CrashProtocol.ShippingAttempts, $"{order} tried shipping {attempts.GetValueOrDefault(Ship)} times");
            Check(@case != CheckoutCase.Late || attempts[Ship] >= 2, $"{order} arranged its shipping late at attempt {attempts.GetValueOrDefault(Ship)}");
            Check(@case is not (CheckoutCase.Declined or CheckoutCase.Never) || attempts["compensate " + Reserve] >= 2, $"{order} released its stock at attempt {attempts.GetValueOrDefault("compensate " + Reserve)}");

            foreach (var kind in EffectSteps.Keys)
            {
                var found = effects.GetValueOrDefault((kind, order)) ?? [];
                if (!expectedEffects.Contains(kind))
                {
                    Check(found.Count == 0, $"{order} ({@case}) has {found.Count} {kind} effects, and should have none");
                    continue;
                }

                Check(found.Count == 1, $"{order}'s {kind} happened {found.Count} times: {string.Join(", ", found.Select(f => $"key {f.Effect.Key} by {f.Message} at {f.Event.Position}"))}");
                var (effect, message, recorded) = found[0];
                var (key, messages) = Sent(order, kind, history);
                Check(effect.Key == key, $"{order}'s {kind} was done under the key {effect.Key}, not {key}, which its history gives");
                Check(messages.Contains(message.ToString()) && recorded.CausationId == message.ToString(), $"{order}'s {kind} was caused by {message} ({recorded.CausationId}), which its history did not send: {string.Join(", ", messages)}");

                var handled = invocations.GetValueOrDefault(effect);
                Check(handled >= 1, $"{order}'s {kind} was done, but no handler of it was seen");
                if (handled > 1)
                {
                    deduped++;
                }

                retried += messages.Count > 1 ? 1 : 0;
            }
        }

        var strays = effects.Keys.Where(k => !_orders.ContainsKey(k.Order)).ToList();
        Check(strays.Count == 0, $"effects of orders never started: {string.Join(", ", strays)}");

        // Shipping answered a late order only when asked again with the same key, and the inventory confirmed every
        // release the same way: those commands were handled at least twice, and did their effect once.
        foreach (var (order, @case) in ended)
        {
            foreach (var kind in @case switch { CheckoutCase.Late => ["ship"], CheckoutCase.Never => ["ship", "release"], CheckoutCase.Declined => ["release"], _ => Array.Empty<string>() })
            {
                var effect = effects[(kind, order)][0].Effect;
                Check(invocations.GetValueOrDefault(effect) >= 2, $"{order}'s {kind} under {effect.Key} was handled {invocations.GetValueOrDefault(effect)} times, though its first handling did not answer");
            }
        }

        var leftovers = await CheckQueuesAsync(provider.GetRequiredService<IMessageBroker>(), ended, effects.ToDictionary(e => e.Key, e => e.Value[0].Effect.Key));
        var late = _orders.Where(o => o.Value == CheckoutCase.Late).ToList();
        output.WriteLine($"{_context}: {_orders.Count} checkouts ({string.Join(", ", _orders.Values.GroupBy(c => c).Select(g => $"{g.Count()} {g.Key}"))}) finished as expected over {runs.Count} runs"
            + (late.Count == 0 ? "; " : $" ({late.Count(o => ended[o.Key] == CheckoutCase.Late)} late shipments completed, {late.Count(o => ended[o.Key] != CheckoutCase.Late)} ran out of attempts across the kills); ")
            + $"{effects.Count} effects, each once, from {invocations.Values.Sum()} handler invocations ({deduped} keys handled more than once, {retried} effects of steps or compensations tried more than once, {runs.Sum(r => r.Dedups)} handlings reported deduplicated); "
            + $"{ignored} replies and timers ignored in the histories; {leftovers} commands still queued, each for an effect already done");
    }

    /// <summary>A history as lines of time, version, event and cause, for a failure's message.</summary>
    private static string Timeline(IReadOnlyList<WorkflowHistoryEntry> history) =>
        string.Join('\n', history.Select(e => FormattableString.Invariant($"  {e.Time:HH:mm:ss.fff} {e.Version,3} {e.Event} (caused by {e.CausationId ?? "the client"})")));

    /// <summary>
    /// Folds a history into its steps (first attempts and outcomes, attempts and ignored messages folded away),
    /// checking that attempts follow one another after a timeout and that nothing but ignored messages follows the end.
    /// </summary>
    private (List<string> Steps, Dictionary<string, int> Attempts, int Ignored) Fold(string order, IReadOnlyList<WorkflowHistoryEntry> history)
    {
        var steps = new List<string>();
        var attempts = new Dictionary<string, int>(StringComparer.Ordinal);
        var (ignored, ended) = (0, false);
        WorkflowEvent? previous = null;
        for (var i = 0; i < history.Count; i++)
        {
            var entry = history[i];
            Check(entry.Version == i, $"{order}'s history has version {entry.Version} at index {i}");
            if (entry.Event is ReplyIgnored or TimerIgnored)
            {
                ignored++;
                continue;
            }

            Check(!ended, $"{order}'s history goes on after its end: {entry.Type} at version {entry.Version}");
            switch (entry.Event)
            {
                case WorkflowStarted:
                    steps.Add("started");
                    break;
                case StepStarted s:
                    Check(s.Attempt == 1 ? !attempts.ContainsKey(s.Step) : previous is StepTimedOut t && t.Step == s.Step && t.Attempt == s.Attempt - 1, $"{order}'s step {s.Step} started attempt {s.Attempt} after {previous}");
                    attempts[s.Step] = s.Attempt;
                    if (s.Attempt == 1)
                    {
                        steps.Add("step " + s.Step);
                    }

                    break;
                case StepTimedOut s:
                    Check(attempts.GetValueOrDefault(s.Step) == s.Attempt, $"{order}'s step {s.Step} timed out attempt {s.Attempt} while at attempt {attempts.GetValueOrDefault(s.Step)}");
                    break;
                case StepCompleted s:
                    steps.Add("done " + s.Step);
                    break;
                case StepFailed s:
                    steps.Add("failed " + s.Step);
                    break;
                case CompensationBegan s:
                    steps.Add("compensate " + string.Join(',', s.Steps));
                    break;
                case CompensationStarted s:
                    var key = "compensate " + s.Step;
                    Check(s.Attempt == 1 ? !attempts.ContainsKey(key) : previous is CompensationTimedOut c && c.Step == s.Step && c.Attempt == s.Attempt - 1, $"{order}'s compensation of {s.Step} started attempt {s.Attempt} after {previous}");
                    attempts[key] = s.Attempt;
                    if (s.Attempt == 1)
                    {
                        steps.Add("undo " + s.Step);
                    }

                    break;
                case CompensationTimedOut s:
                    Check(attempts.GetValueOrDefault("compensate " + s.Step) == s.Attempt, $"{order}'s compensation of {s.Step} timed out attempt {s.Attempt} while at another");
                    break;
                case CompensationCompleted s:
                    steps.Add("undone " + s.Step);
                    break;
                case WorkflowCompleted:
                    steps.Add("completed");
                    ended = true;
                    break;
                case WorkflowFailed:
                    steps.Add("failed");
                    ended = true;
                    break;
                default:
                    steps.Add(entry.Type);
                    break;
            }

            previous = entry.Event;
        }

        return (steps, attempts, ignored);
    }

    /// <summary>
    /// The idempotency key a history gives the commands of a kind of effect (a step's: its stream, its run (the start's
    /// time), the step and the version of its first attempt; a compensation's: its stream, its run and the step), and
    /// the ids of the commands it sent.
    /// </summary>
    private static (string Key, List<string> Messages) Sent(string order, string kind, IReadOnlyList<WorkflowHistoryEntry> history)
    {
        var started = (WorkflowStarted)history[0].Event;
        var run = (started.StartedAt ?? history[0].Time).UtcDateTime.ToString("yyyyMMdd'T'HHmmssfffffff'Z'", System.Globalization.CultureInfo.InvariantCulture);
        var stream = $"wf:{CrashProtocol.Checkout}-{order}/{run}";
        var (step, compensation) = EffectSteps[kind];
        if (compensation)
        {
            return ($"{stream}/compensate/{step}", [.. history.Select(e => e.Event).OfType<CompensationStarted>().Where(s => s.Step == step).Select(s => s.MessageId)]);
        }

        var starts = history.Where(e => e.Event is StepStarted s && s.Step == step).ToList();
        var visit = starts.FirstOrDefault()?.Version ?? -1;
        return ($"{stream}/{step}/{visit}", [.. starts.Select(e => ((StepStarted)e.Event).MessageId).OfType<string>()]);
    }

    /// <summary>
    /// No queue dead-lettered anything; every command still in a service's queue carries the key of the effect its
    /// order already has of its kind (so it would be deduplicated), or is of a kind its order never does. Returns how
    /// many commands were left.
    /// </summary>
    private async Task<int> CheckQueuesAsync(IMessageBroker broker, Dictionary<string, CheckoutCase> ended, Dictionary<(string Kind, string Order), string> done)
    {
        foreach (var queue in CrashProtocol.Queues())
        {
            var stats = await broker.GetStatsAsync(queue.Name, CancellationToken.None);
            Check(stats.DeadLettered == 0, $"the queue {queue.Name} dead-lettered messages: {stats}");
        }

        var left = 0;
        foreach (var queue in CrashProtocol.ServiceQueues)
        {
            while (await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 100, Lease = TimeSpan.FromMinutes(10) }, CancellationToken.None) is { Count: > 0 } deliveries)
            {
                foreach (var message in deliveries.Select(d => d.Message))
                {
                    left++;
                    var kind = CommandKinds[message.Type];
                    var order = message.CorrelationId ?? "";
                    var key = message.IdempotencyKey();
                    if (done.TryGetValue((kind, order), out var doneKey))
                    {
                        Check(key == doneKey, $"the command {message.Id} ({message.Type}) still in {queue} would do {order}'s {kind} again, under the key {key}; it was done under {doneKey}");
                    }
                    else
                    {
                        Check(ended.TryGetValue(order, out var @case) && !Outcomes[@case].Effects.Contains(kind), $"the command {message.Id} ({message.Type}) for {order} is still in {queue}, and its effect never happened");
                    }
                }
            }
        }

        return left;
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

    private void Check([DoesNotReturnIf(false)] bool condition, string message)
    {
        if (!condition)
        {
            throw new XunitException($"{_context}: {message}");
        }
    }

    /// <summary>What one child run reported: what the file held at its start, what it committed, what its services were handed.</summary>
    private sealed class ChildRun(int number, IReadOnlyDictionary<string, CheckoutCase> orders)
    {
        private int _commits;

        public bool Ready { get; set; }

        public bool KilledAtPoint { get; set; }

        /// <summary>The instances in the file at the start, and their status.</summary>
        public Dictionary<string, WorkflowStatus> AtStart { get; } = new(StringComparer.Ordinal);

        /// <summary>The instances' versions at the start.</summary>
        public Dictionary<string, long> AtStartVersions { get; } = new(StringComparer.Ordinal);

        /// <summary>The instances' status as the run's commits left it.</summary>
        public Dictionary<string, WorkflowStatus> Status { get; } = new(StringComparer.Ordinal);

        /// <summary>The last version of each instance's history the run saw committed (or found at its start).</summary>
        public Dictionary<string, long> Versions { get; } = new(StringComparer.Ordinal);

        /// <summary>The effects in the file at the start.</summary>
        public HashSet<Effect> Had { get; } = [];

        /// <summary>The effects in the file at the start, and those the run committed.</summary>
        public HashSet<Effect> Done { get; } = [];

        /// <summary>Every handler started on a command with an effect.</summary>
        public List<Effect> Invoked { get; } = [];

        public int Dedups { get; private set; }

        public int Unfinished => Status.Values.Count(s => s is WorkflowStatus.Running or WorkflowStatus.Compensating or WorkflowStatus.Suspended);

        public int Compensating => Status.Values.Count(s => s == WorkflowStatus.Compensating);

        /// <summary>Every checkout finished, and every effect its case expects committed.</summary>
        public bool IsDone =>
            orders.Keys.All(o => Status.TryGetValue(o, out var s) && s is WorkflowStatus.Completed or WorkflowStatus.Failed or WorkflowStatus.Cancelled)
            && orders.All(o => Outcomes[Ended(o.Value, Status[o.Key])].Effects.All(kind => Done.Any(e => e.Kind == kind && e.Order == o.Key)));

        public void Add(WorkflowReport report)
        {
            switch (report)
            {
                case InstanceReport i:
                    AtStart[i.Order] = Status[i.Order] = i.Status;
                    AtStartVersions[i.Order] = Versions[i.Order] = i.Version;
                    break;
                case HistoryReport h:
                    _commits++;
                    Versions[h.Order] = Math.Max(Versions.GetValueOrDefault(h.Order, -1), h.LastVersion);
                    foreach (var type in h.Types)
                    {
                        if (StatusAfter(type) is { } status)
                        {
                            Status[h.Order] = status;
                        }
                    }

                    break;
                case EffectReport { What: "had" } e:
                    Had.Add(e.Effect);
                    Done.Add(e.Effect);
                    break;
                case EffectReport { What: "effect" } e:
                    Done.Add(e.Effect);
                    break;
                case EffectReport { What: "dedup" }:
                    Dedups++;
                    break;
                case EffectReport { What: "invoked" } e:
                    Invoked.Add(e.Effect);
                    break;
            }
        }

        public override string ToString() =>
            $"run {number} found {AtStart.Count(s => s.Value is WorkflowStatus.Running)} checkouts running, {AtStart.Count(s => s.Value is WorkflowStatus.Compensating)} compensating, {AtStart.Count(s => s.Value is WorkflowStatus.Completed or WorkflowStatus.Failed)} finished and {Had.Count} effects; "
            + $"it committed {_commits} histories and {Done.Count - Had.Count} effects, its services were handed {Invoked.Count} commands; at its end {Unfinished} checkouts were unfinished";

        /// <summary>The status an event of this type leaves an instance in; null when it changes nothing.</summary>
        private static WorkflowStatus? StatusAfter(string type) => type switch
        {
            "completed" => WorkflowStatus.Completed,
            "failed" => WorkflowStatus.Failed,
            "cancelled" => WorkflowStatus.Cancelled,
            "suspended" => WorkflowStatus.Suspended,
            "reply-ignored" or "timer-ignored" or "cancel-requested" => null,
            _ when type.StartsWith("compensation-", StringComparison.Ordinal) => WorkflowStatus.Compensating,
            _ => WorkflowStatus.Running,
        };
    }
}
