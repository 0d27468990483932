using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Sqlite.CrashChild;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Messaging under SIGKILL, with a real child process: a consumer killed while it holds leases, and a sender killed
/// while its transactions commit. The child reports on stdout what the broker acknowledged; the test kills it at a
/// moment chosen from those lines, reopens the file and checks that nothing acknowledged is lost and nothing is half
/// there. The kill moments come from a seed that is printed; set CAIRN_CRASH_SEED to replay one.
/// </summary>
public sealed class MessagingCrashTests(ITestOutputHelper output) : IDisposable
{
    private const int WorkMessages = 200;
    private const int SlowEvery = 20;
    private const int ConsumerRuns = 2;
    private const int SendCycles = 8;
    private const string DrainLabel = "parent";

    /// <summary>Short, so the messages a killed consumer held come back within the test.</summary>
    private static readonly TimeSpan WorkLease = TimeSpan.FromSeconds(2);

    /// <summary>Only a guard against a hung child or consumer: nothing waits for it to pass.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);

    private readonly TempDatabase _database = new();
    private string _context = "";

    public void Dispose() => _database.Dispose();

    [Fact]
    public async Task a_process_killed_with_messages_leased_loses_none_and_with_the_inbox_handles_none_twice()
    {
        var seed = Seed();
        var random = new Random(seed);
        _context = $"seed {seed}";

        // One message in twenty hangs in a child's handler, so each kill finds leases held by handlers in flight. The
        // child has more workers than there are slow messages, or hung handlers could hold them all and stall the run.
        Assert.True(CrashProtocol.ConsumerOptions().Concurrency > WorkMessages / SlowEvery, "the child's workers could all hang on slow messages");
        var slowOffset = random.Next(SlowEvery);
        var work = Enumerable.Range(0, WorkMessages).Select(i => CrashProtocol.Work(i, i % SlowEvery == slowOffset)).ToList();
        await using (var store = OpenStore())
        {
            var broker = new SqliteMessageBroker(store);
            await broker.DeclareQueueAsync(new QueueDefinition(CrashProtocol.WorkQueue) { Lease = WorkLease, MaxReceiveCount = 100 }, CancellationToken.None);
            await broker.SendBatchAsync(CrashProtocol.WorkQueue, work);
        }

        var runs = new List<ConsumerRun>();
        for (var run = 1; run <= ConsumerRuns; run++)
        {
            _context = $"seed {seed}, consumer run {run}";

            // Kill after a share of the messages is handled, with a slow handler holding its lease, and a few lines
            // later still, so the kill lands among the fast handlers' commits too. A child runs on for a moment after the
            // test decides to kill it and may handle every fast message: the next child then meets only slow ones, which
            // hang and print nothing more, so its target is what can still be handled (less what the last child may
            // have committed unreported, at most a handler per worker) and it is killed on its first slow start.
            var target = random.Next(WorkMessages / 5, WorkMessages / 3);
            var linger = random.Next(0, 6);
            var fastLeft = WorkMessages - (WorkMessages / SlowEvery) - runs.Sum(r => r.Handled.Count) - CrashProtocol.ConsumerOptions().Concurrency;
            if (target > fastLeft)
            {
                (target, linger) = (Math.Max(0, fastLeft), 0);
            }

            var (handled, slowStarted) = (0, 0);
            var lines = await RunUntilKilledAsync(CrashProtocol.ConsumeMode, run, line =>
            {
                if (CrashProtocol.ParseSettled(line) is { Settlement: Settlement.Handled })
                {
                    handled++;
                }
                else if (CrashProtocol.ParseStarted(line) is { Slow: true })
                {
                    slowStarted++;
                }

                return handled >= target && slowStarted > 0 && linger-- <= 0;
            });
            runs.Add(ConsumerRun.FromLines(CrashProtocol.ChildLabel(run), lines));
        }

        _context = $"seed {seed}, drain";
        await using (var store = OpenStore())
        {
            CheckIntegrity();
            runs.Add(await DrainAsync(store));
            _context = $"seed {seed}";
            await VerifyConsumedAsync(store, work, runs);
        }
    }

    [Fact]
    public async Task a_process_killed_mid_commit_of_a_send_batch_leaves_all_or_none_of_the_batch()
    {
        var seed = Seed();
        var random = new Random(seed);
        await using (var store = OpenStore())
        {
            await new SqliteMessageBroker(store).DeclareQueueAsync(CrashProtocol.SentQueue, CancellationToken.None);
        }

        var reported = new Dictionary<Guid, SentBatch>();
        var verified = new HashSet<Guid>();
        var (keptWhole, lostWhole) = (0, 0);
        for (var cycle = 0; cycle < SendCycles; cycle++)
        {
            _context = $"seed {seed}, send cycle {cycle}";

            // Mostly after some acknowledged batches, while the other senders' commits are in flight; now and then at
            // once, as the first batches are handed to the broker.
            var target = random.Next(5) == 0 ? random.Next(0, 2) : random.Next(2, 40);
            var sent = 0;
            var lines = await RunUntilKilledAsync(CrashProtocol.SendMode, random.Next(), line =>
                target == 0 ? CrashProtocol.ParseSending(line) is not null : CrashProtocol.ParseSent(line) is not null && ++sent >= target);
            var acknowledged = lines.Select(CrashProtocol.ParseSent).OfType<SentBatch>().ToList();
            foreach (var batch in acknowledged)
            {
                reported.Add(batch.Batch, batch);
            }

            var found = await VerifySentAsync(reported, verified);
            var inFlight = lines.Select(CrashProtocol.ParseSending).OfType<Guid>().Where(b => !reported.ContainsKey(b)).ToList();
            var kept = inFlight.Count(found.Contains);
            keptWhole += kept;
            lostWhole += inFlight.Count - kept;
            output.WriteLine($"{_context}: killed after {sent} acknowledged batches ({acknowledged.Count} in all); {inFlight.Count} batches unacknowledged, {kept} of them committed whole, the rest absent; {found.Count} batches new in the log and the queue");
        }

        output.WriteLine($"batches in flight at a kill: {keptWhole} committed whole, {lostWhole} absent whole");
    }

    private static int Seed()
    {
        var configured = Environment.GetEnvironmentVariable("CAIRN_CRASH_SEED");
        return string.IsNullOrEmpty(configured) ? Random.Shared.Next() : int.Parse(configured, CultureInfo.InvariantCulture);
    }

    private SqliteEventStore OpenStore() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    /// <summary>
    /// Consumes what the children left, in this process, with the same consumer name (so the same inbox) and the same
    /// effect, but no slow handlers. The messages the last child held come back when their leases run out; the drain
    /// is over when every message the queue held at reopening has been settled once.
    /// </summary>
    private async Task<ConsumerRun> DrainAsync(SqliteEventStore store)
    {
        var sqlite = new SqliteMessageBroker(store);
        var before = await sqlite.GetStatsAsync(CrashProtocol.WorkQueue, CancellationToken.None);
        Assert.True(before.DeadLettered == 0 && before.Parked == 0, $"{_context}: after the kills the queue holds {before}");
        var left = before.Visible + before.Leased + before.Delayed;
        var drain = new ConsumerRun(DrainLabel);
        var settledCount = 0L;
        var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var broker = new ReportingBroker(sqlite, (id, settlement) =>
        {
            drain.Settle(id, settlement);
            if (Interlocked.Increment(ref settledCount) >= left)
            {
                drained.TrySetResult();
            }
        });
        var consumer = new QueueConsumer(broker, CrashProtocol.ConsumerOptions(), (context, _) =>
        {
            drain.Start(new StartedMessage(context.Message.Id, context.Delivery.ReceiveCount, context.Delivery.PreviousLeaseExpired, Slow: false));
            CrashProtocol.RecordEffect(context, DrainLabel);
            return ValueTask.CompletedTask;
        });
        await using (consumer)
        {
            await consumer.StartAsync(CancellationToken.None);
            if (left == 0)
            {
                drained.TrySetResult();
            }

            try
            {
                await drained.Task.WaitAsync(Guard);
            }
            catch (TimeoutException)
            {
                Fail($"the drain settled {Interlocked.Read(ref settledCount)} of the {left} messages left ({before}) within {Guard}; the queue now holds {await sqlite.GetStatsAsync(CrashProtocol.WorkQueue, CancellationToken.None)}, the consumer {consumer.Status}");
            }

            await consumer.StopAsync(CancellationToken.None);
            Assert.True(consumer.Status.Duplicates == 0, $"{_context}: the drain met {consumer.Status.Duplicates} messages its inbox already held, though their acknowledgement commits with the inbox record");
        }

        output.WriteLine($"{_context}: {left} messages left at reopening ({before.Leased} still leased, {before.Visible} visible); the drain handled {drain.Handled.Count}, {drain.Starts.Count(s => s.PreviousLeaseExpired)} of them delivered after a lease ran out");
        return drain;
    }

    /// <summary>
    /// Every message has exactly one effect, by the process that reported it handled if one did, and is in the inbox;
    /// the queue is empty; every message a killed child held was delivered again only after its lease ran out.
    /// </summary>
    private async Task VerifyConsumedAsync(SqliteEventStore store, IReadOnlyList<OutgoingMessage> work, IReadOnlyList<ConsumerRun> runs)
    {
        var broker = new SqliteMessageBroker(store);
        var stats = await broker.GetStatsAsync(CrashProtocol.WorkQueue, CancellationToken.None);
        Assert.True(stats == new QueueStats { Queue = CrashProtocol.WorkQueue }, $"{_context}: after the drain the queue holds {stats}");

        // One effect per message, in the stream named after it, caused by it.
        var effects = new Dictionary<MessageId, List<(string By, RecordedEvent Event)>>();
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, CancellationToken.None))
        {
            Assert.Equal(CrashProtocol.HandledType, e.Type);
            var (message, by) = CrashProtocol.ReadEffect(e.Data);
            if (!effects.TryGetValue(message, out var found))
            {
                effects[message] = found = [];
            }

            found.Add((by, e));
        }

        var ids = work.Select(m => m.Id).ToHashSet();
        foreach (var id in ids)
        {
            if (!effects.TryGetValue(id, out var found))
            {
                Fail($"message {id} was lost: it left no effect, and the queue is empty");
            }

            if (found.Count != 1)
            {
                Fail($"message {id} was handled {found.Count} times, by {string.Join(", ", found.Select(f => $"{f.By} at {f.Event.Position}"))}");
            }

            var (by, effect) = found[0];
            if (effect.Stream != CrashProtocol.HandledStream(id) || effect.CausationId != id.ToString())
            {
                Fail($"the effect of message {id} is in {effect.Stream} caused by {effect.CausationId}");
            }

            Assert.True(await broker.WasProcessedAsync(CrashProtocol.ConsumerName, id, CancellationToken.None), $"{_context}: message {id} is not in the inbox");
        }

        Assert.True(effects.Keys.All(ids.Contains), $"{_context}: effects of messages never sent: {string.Join(", ", effects.Keys.Where(id => !ids.Contains(id)))}");

        for (var r = 0; r < runs.Count; r++)
        {
            var run = runs[r];
            var odd = run.Settled.Where(s => s.Settlement != Settlement.Handled).ToList();
            Assert.True(odd.Count == 0, $"{_context}: {run.Label} settled messages other than by handling them: {string.Join(", ", odd)}");

            // What a process reported handled was committed by it and by nobody else.
            foreach (var id in run.Handled)
            {
                Assert.True(effects[id][0].By == run.Label, $"{_context}: {run.Label} reported message {id} handled, but its effect is by {effects[id][0].By}");
            }

            if (r == runs.Count - 1)
            {
                break;
            }

            // What a killed child had started and not reported handled was either committed unreported at the kill, or
            // still leased then: its next delivery must come after the lease ran out, one receive later.
            var handled = run.Handled;
            var held = run.Starts.Select(s => s.Id).Distinct().Where(id => !handled.Contains(id)).ToList();
            var slowHeld = held.Count(id => run.Starts.Any(s => s.Id == id && s.Slow));
            Assert.True(slowHeld > 0, $"{_context}: {run.Label} was killed with no slow handler in flight");
            var (unreported, redelivered) = (0, 0);
            foreach (var id in held)
            {
                if (effects[id][0].By == run.Label)
                {
                    unreported++;
                    continue;
                }

                var lastHere = run.Starts.Last(s => s.Id == id);
                var next = runs.Skip(r + 1).SelectMany(later => later.Starts).FirstOrDefault(s => s.Id == id);
                if (next is null || !next.PreviousLeaseExpired || next.ReceiveCount <= lastHere.ReceiveCount)
                {
                    Fail($"message {id}, in flight in {run.Label} at the kill (receive {lastHere.ReceiveCount}), was next delivered as {next?.ToString() ?? "never"}, not after its lease ran out");
                }

                redelivered++;
            }

            output.WriteLine($"{_context}: {run.Label} started {run.Starts.Count} handlers and reported {run.Handled.Count} handled; at the kill {held.Count} were in flight ({slowHeld} slow): {unreported} had committed unreported, {redelivered} were delivered again after their leases ran out");
        }
    }

    /// <summary>
    /// Reopens the file after a sender's kill. Each batch in the log is either new and then all its messages are in the
    /// queue, or was seen by an earlier cycle and then none are; the queue holds nothing else; every batch the child
    /// saw acknowledged is in the log where the broker said. The new messages are then acknowledged, so the next cycle
    /// starts from an empty queue.
    /// </summary>
    private async Task<HashSet<Guid>> VerifySentAsync(Dictionary<Guid, SentBatch> reported, HashSet<Guid> verified)
    {
        await using var store = OpenStore();
        CheckIntegrity();
        var logged = new Dictionary<Guid, RecordedEvent>();
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.All, long.MaxValue, CancellationToken.None))
        {
            Assert.Equal(CrashProtocol.BatchType, e.Type);
            var (batch, _, size) = CrashProtocol.ReadPayload(e.Data.Span);
            if (!logged.TryAdd(batch, e) || size != CrashProtocol.SendBatchSize)
            {
                Fail($"batch {batch:N} has a second event, or one of {size} messages, at {e.Position}");
            }
        }

        var fresh = logged.Keys.Where(b => !verified.Contains(b)).ToHashSet();
        var broker = new SqliteMessageBroker(store);
        var stats = await broker.GetStatsAsync(CrashProtocol.SentQueue, CancellationToken.None);
        var due = new QueueStats { Queue = CrashProtocol.SentQueue, Visible = (long)fresh.Count * CrashProtocol.SendBatchSize, OldestAge = stats.OldestAge };
        Assert.True(stats == due, $"{_context}: {fresh.Count} new batches in the log, each of {CrashProtocol.SendBatchSize} messages, but the queue holds {stats}");

        var queued = new Dictionary<Guid, HashSet<int>>();
        var leases = new List<LeaseToken>();
        while (await broker.ReceiveAsync(CrashProtocol.SentQueue, new ReceiveOptions { MaxMessages = 1000, Lease = TimeSpan.FromMinutes(10) }, CancellationToken.None) is { Count: > 0 } deliveries)
        {
            foreach (var delivery in deliveries)
            {
                var message = delivery.Message;
                var (batch, index, size) = CrashProtocol.ReadPayload(message.Data.Span);
                if (message.Type != CrashProtocol.SentType || size != CrashProtocol.SendBatchSize || message.Id != CrashProtocol.EventId(batch, index))
                {
                    Fail($"message {message.Id} ({message.Type}) is not stored as sent: batch {batch:N}, index {index} of {size}");
                }

                if (!queued.TryGetValue(batch, out var indexes))
                {
                    queued[batch] = indexes = [];
                }

                if (!indexes.Add(index))
                {
                    Fail($"message {index} of batch {batch:N} is in the queue twice");
                }

                leases.Add(delivery.Lease);
            }
        }

        foreach (var (batch, indexes) in queued)
        {
            if (!fresh.Contains(batch))
            {
                Fail($"batch {batch:N} has {indexes.Count} messages in the queue but {(logged.ContainsKey(batch) ? "was already delivered whole in an earlier cycle" : "no event in the log")}");
            }

            if (indexes.Count != CrashProtocol.SendBatchSize)
            {
                Fail($"batch {batch:N} is half there: {indexes.Count} of its {CrashProtocol.SendBatchSize} messages are in the queue");
            }
        }

        var missing = fresh.Where(b => !queued.ContainsKey(b)).ToList();
        Assert.True(missing.Count == 0, $"{_context}: batches in the log with none of their messages in the queue: {string.Join(", ", missing.Select(b => b.ToString("N")))}");

        foreach (var batch in reported.Values)
        {
            if (!logged.TryGetValue(batch.Batch, out var e))
            {
                Fail($"the acknowledged batch {batch.Batch:N}, its event at {batch.Stream}@{batch.Version}, is lost");
            }

            if (e.Stream.Value != batch.Stream || e.Version != batch.Version || e.Position.Value != batch.Position || batch.Messages != CrashProtocol.SendBatchSize)
            {
                Fail($"the acknowledged batch {batch.Batch:N} was said to put {batch.Messages} messages and its event at {batch.Stream}@{batch.Version} (position {batch.Position}), but the event is at {e.Stream}@{e.Version} (position {e.Position})");
            }
        }

        await broker.AcknowledgeAsync(leases, CancellationToken.None);
        var after = await broker.GetStatsAsync(CrashProtocol.SentQueue, CancellationToken.None);
        Assert.True(after == new QueueStats { Queue = CrashProtocol.SentQueue }, $"{_context}: after acknowledging every message the queue holds {after}");
        verified.UnionWith(fresh);
        return fresh;
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

    private async Task<List<string>> RunUntilKilledAsync(string mode, int childSeed, Func<string, bool> killNow) =>
        (await CrashChildProcess.RunUntilKilledAsync(_database.Path, mode, nameof(SqliteDurability.Full), childSeed, killNow, Guard, _context)).Lines;

    [DoesNotReturn]
    private void Fail(string message) => throw new XunitException($"{_context}: {message}");

    /// <summary>What one consuming process did: the handlers it started, in order, and the settlements it saw committed.</summary>
    private sealed class ConsumerRun(string label)
    {
        private readonly Lock _gate = new();
        private readonly List<StartedMessage> _starts = [];
        private readonly List<SettledMessage> _settled = [];

        /// <summary>The author its effects record.</summary>
        public string Label { get; } = label;

        public IReadOnlyList<StartedMessage> Starts
        {
            get
            {
                lock (_gate)
                {
                    return [.. _starts];
                }
            }
        }

        public IReadOnlyList<SettledMessage> Settled
        {
            get
            {
                lock (_gate)
                {
                    return [.. _settled];
                }
            }
        }

        public HashSet<MessageId> Handled => [.. Settled.Where(s => s.Settlement == Settlement.Handled).Select(s => s.Id)];

        public static ConsumerRun FromLines(string label, IEnumerable<string> lines)
        {
            var run = new ConsumerRun(label);
            foreach (var line in lines)
            {
                if (CrashProtocol.ParseStarted(line) is { } started)
                {
                    run.Start(started);
                }
                else if (CrashProtocol.ParseSettled(line) is { } settled)
                {
                    run.Settle(settled.Id, settled.Settlement);
                }
            }

            return run;
        }

        public void Start(StartedMessage started)
        {
            lock (_gate)
            {
                _starts.Add(started);
            }
        }

        public void Settle(MessageId id, Settlement settlement)
        {
            lock (_gate)
            {
                _settled.Add(new SettledMessage(id, settlement));
            }
        }
    }
}
