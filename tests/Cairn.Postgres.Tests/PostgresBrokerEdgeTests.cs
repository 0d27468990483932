using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The PostgreSQL broker at its edges: a purge racing a redrive, a FIFO batch to many groups, an acknowledgement naming
/// a lease twice, deduplication ids outliving short-lived processes.
/// </summary>
public sealed class PostgresBrokerEdgeTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly List<IAsyncDisposable> _opened = [];
    private readonly ManualTimeProvider _clock = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _opened.Count - 1; i >= 0; i--)
        {
            await _opened[i].DisposeAsync();
        }

        // Right after a FIFO batch failed for want of lock-table space, dropping the schema once failed the same way
        // ("out of shared memory"), in another session: try again for a moment.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await PostgresServer.DropSchemaAsync(_schema);
                return;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.OutOfMemory && attempt < 20)
            {
                await Task.Delay(250);
            }
        }
    }

    /// <summary>A store with a pool and writer of its own, and its broker: one process's view of the schema.</summary>
    private PostgresMessageBroker OpenProcess(string? applicationName = null)
    {
        var connectionString = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { ApplicationName = applicationName }.ConnectionString;
        var store = new PostgresEventStore(
            new PostgresEventStoreOptions { ConnectionString = connectionString, Schema = _schema, ExternalCommitPollInterval = TimeSpan.FromMilliseconds(200) },
            new EventStoreOptions { TimeProvider = _clock, Source = "urn:test" });
        var broker = new PostgresMessageBroker(store);
        _opened.Add(store);
        _opened.Add(broker);
        return broker;
    }

    private static OutgoingMessage Numbered(int n) => new("test.numbered", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    /// <summary>
    /// A default lease token (no queue) given to a settlement call is refused with a messaging error
    /// (<see cref="QueueNotFoundException"/>), as on SQLite and in memory, where a null name looked up in the cache of
    /// queues threw ArgumentNullException, and an acknowledgement InvalidMessagingNameException; a redrive to a default
    /// target is refused as a missing name.
    /// </summary>
    [Fact]
    public async Task a_lease_token_without_a_queue_is_refused_with_a_messaging_error_by_the_settlement_calls()
    {
        var broker = OpenProcess();
        await broker.DeclareQueueAsync(new QueueDefinition("work"), default);

        var acknowledge = await Record.ExceptionAsync(() => broker.AcknowledgeAsync([default(LeaseToken)], default));
        var release = await Record.ExceptionAsync(() => broker.ReleaseAsync(default, TimeSpan.Zero, null, default));
        var extend = await Record.ExceptionAsync(() => broker.ExtendLeaseAsync(default, TimeSpan.FromSeconds(1), default));
        var giveBack = await Record.ExceptionAsync(() => broker.ReturnAsync(default, default));
        var deadLetter = await Record.ExceptionAsync(() => broker.DeadLetterAsync(default, "poison", null, default));
        var redrive = await Record.ExceptionAsync(() => broker.RedriveAsync("work", new RedriveRequest { Target = default(QueueName) }, default));

        Assert.All(
            new[] { ("acknowledge", acknowledge), ("release", release), ("extend", extend), ("return", giveBack), ("dead-letter", deadLetter) },
            c => Assert.True(c.Item2 is CairnException, $"{c.Item1}: {c.Item2?.GetType().FullName}: {c.Item2?.Message}"));

        // A redrive's default target names no queue: refused as a missing name on every backend (MessagingBadInputTests).
        Assert.Equal("queue", Assert.IsType<InvalidMessagingNameException>(redrive).Kind);
    }

    /// <summary>
    /// A transaction with several faults fails with the same one on every backend: a checkpoint's expected position is
    /// looked at right after the inbox, before the acknowledgements, appends and sends. Checked only last, a route whose
    /// checkpoint another process moved, and whose batch a queue refuses, got MessageTooLargeException rather than
    /// CheckpointConflictException: it counted a failure, logged an error and narrowed its batch, where it should just
    /// go on from the moved checkpoint.
    /// </summary>
    [Fact]
    public async Task a_moved_checkpoint_is_reported_before_the_other_faults_of_a_transaction_as_on_the_other_backends()
    {
        var checkpoints = new InMemoryCheckpointStore();
        var inMemory = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = _clock }), checkpoints);
        var postgres = OpenProcess();
        foreach (IMessageBroker broker in new IMessageBroker[] { inMemory, postgres })
        {
            await broker.DeclareQueueAsync(new QueueDefinition("small") { MaxMessageSize = 16 }, default);
            await broker.DeclareTopicAsync("out", default);
            await broker.SubscribeAsync(new TopicSubscription("out", "all", "small"), default);
        }

        // Another router moved the checkpoint to 5.
        await checkpoints.SetAsync("route:r", new GlobalPosition(5), default);
        await postgres.CommitAsync(new MessageTransaction().SetCheckpoint("route:r", new GlobalPosition(5)), default);

        var big = new OutgoingMessage("test.big", Encoding.UTF8.GetBytes("\"" + new string('x', 64) + "\""));
        MessageTransaction Batch() => new MessageTransaction().Publish("out", big).SetCheckpoint("route:r", new GlobalPosition(9), expected: GlobalPosition.Start);

        var reference = await Record.ExceptionAsync(() => inMemory.CommitAsync(Batch(), default));
        var actual = await Record.ExceptionAsync(() => postgres.CommitAsync(Batch(), default));

        Assert.IsType<CheckpointConflictException>(reference);
        Assert.True(actual is CheckpointConflictException, $"PostgreSQL: {actual?.GetType().Name}: {actual?.Message}");
    }

    /// <summary>
    /// A send right after the server ended the writer's session (within the second no idle check covers) went on the
    /// broken connection and failed with "terminating connection due to administrator command", an outcome its caller
    /// could not know, though nothing of it was sent and the server was up. (A consumer's commit failing so spends a
    /// receive, and on the last one dead-letters its message for nothing.) Broken before its commit, it runs again on
    /// a new connection.
    /// </summary>
    [Fact]
    public async Task a_send_right_after_the_server_ended_the_writer_session_runs_again_on_a_new_connection()
    {
        var application = "ended-" + _schema;
        var broker = OpenProcess(application);
        QueueName queue = "work";
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        await broker.SendAsync(queue, Numbered(1));
        Assert.True(await EventStoreEdgeTests.TerminateSessionsAsync(application) >= 1);

        await broker.SendAsync(queue, Numbered(2)).Bounded();

        Assert.Equal(2, (await broker.GetStatsAsync(queue, default)).Visible);
    }

    /// <summary>
    /// A message whose stored row cannot be read (a time out of range, as a bad restore or a hand edit leaves it) is
    /// dead-lettered by the receive that meets it, and listed under <c>cairn.unreadable</c> so it can be looked at and
    /// purged: the listing caught fewer faults than the receive, and that one dead letter failed every listing of the
    /// queue's dead letters, hiding them all.
    /// </summary>
    [Fact]
    public async Task a_message_dead_lettered_as_unreadable_is_listed_beside_the_other_dead_letters()
    {
        var broker = OpenProcess();
        QueueName queue = "work";
        await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var damaged = Numbered(1);
        await broker.SendAsync(queue, damaged);
        await broker.SendAsync(queue, Numbered(2));
        await PostgresServer.ExecuteAsync($"UPDATE \"{_schema}\".messages SET time_ticks = -1 WHERE id = '{damaged.Id.Value}'");

        var delivery = Assert.Single(await broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 10 }, default));
        await broker.DeadLetterAsync(delivery.Lease, "poison", null, default);

        var letters = await broker.ListDeadLettersAsync(queue, 0, 100, default);
        Assert.Equal(2, letters.Count);
        var unreadable = Assert.Single(letters, l => l.Message.Id == damaged.Id);
        Assert.Equal("cairn.unreadable", unreadable.Message.Type);
        Assert.Equal("cairn.unreadable", (await broker.GetDeadLetterAsync(queue, damaged.Id, default))?.Message.Type);
        Assert.Equal(1, await broker.PurgeDeadLettersAsync(queue, [damaged.Id], default));
    }

    /// <summary>How many statements on this test's schema wait for a lock (other tests' run beside them).</summary>
    private async Task<long> LockWaitersAsync()
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var select = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, $1) > 0", connection);
        select.Parameters.AddWithValue(_schema);
        return (long)(await select.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// PurgeDeadLettersAsync with chosen ids deletes <c>WHERE seq IN (SELECT min(seq) … state >= 2 …)</c>: under READ
    /// COMMITTED, a row that a concurrent redrive changed back to a live message is re-checked only against
    /// <c>seq IN (…)</c>, whose subquery still answers from the purge's old snapshot, so the live message is deleted.
    /// </summary>
    [Fact]
    public async Task purging_chosen_dead_letters_never_deletes_one_a_concurrent_redrive_put_back_in_its_queue()
    {
        var operatorA = OpenProcess();
        var operatorB = OpenProcess();
        QueueName queue = "work";
        await operatorA.DeclareQueueAsync(new QueueDefinition(queue), default);
        var message = Numbered(1);
        await operatorA.SendAsync(queue, message);
        var delivery = Assert.Single(await operatorA.ReceiveAsync(queue, new ReceiveOptions(), default));
        await operatorA.DeadLetterAsync(delivery.Lease, "poison", null, default);

        // The window is the redrive's transaction between locking the dead letter and committing (longer while a
        // synchronous standby confirms it, or inside a group commit). A plain connection holding the row's lock for a
        // moment makes that window deterministic: the redrive, then the purge, queue up behind it, in that order.
        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await using var hold = await holder.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand($"SELECT seq FROM \"{_schema}\".messages WHERE seq = $1 FOR UPDATE", holder, hold))
        {
            lockRow.Parameters.AddWithValue(delivery.Lease.Sequence);
            await lockRow.ExecuteScalarAsync();
        }

        // Operator A redrives every dead letter back to its queue; operator B purges the one it chose.
        var redrive = operatorA.RedriveAsync(queue, new RedriveRequest(), default);
        await Wait.UntilAsync(async () => await LockWaitersAsync() >= 1, "the redrive waits for the row");
        var purge = operatorB.PurgeDeadLettersAsync(queue, [message.Id], default);
        await Wait.UntilAsync(async () => await LockWaitersAsync() >= 2, "the purge waits for the row");
        await hold.CommitAsync();

        // The redrive goes first: the message is live again, no longer a dead letter.
        Assert.Equal(1, await redrive.Bounded());
        var purged = await purge.Bounded();

        // A purge deletes dead letters only: the message back in its queue must stay there and be delivered.
        var stats = await operatorA.GetStatsAsync(queue, default);
        Assert.True(
            purged == 0 && stats.Visible == 1,
            $"The purge reported {purged} purged and the queue now holds {stats.Visible} visible and {stats.DeadLettered} dead-lettered messages: "
            + "the message the redrive had put back (and reported as redriven) was deleted as if it were still a dead letter.");
    }

    /// <summary>
    /// Every send to a FIFO queue takes one transaction-scoped advisory lock per (queue, group) it sends to. Advisory locks
    /// live in PostgreSQL's shared lock table (max_locks_per_transaction × (max_connections + max_prepared_transactions)
    /// slots for the whole server: 6,400 with the defaults, 25,600 on the test server), so a batch to many groups fails
    /// with "out of shared memory" — a batch the SQLite backend takes — and while it fills the table, other sessions'
    /// locks fail too.
    /// </summary>
    [Fact]
    public async Task a_fifo_batch_to_many_groups_is_sent_in_one_commit_as_on_every_backend()
    {
        var broker = OpenProcess();
        QueueName queue = "orders";
        await broker.DeclareQueueAsync(new QueueDefinition(queue) { Fifo = true }, default);

        // One message per order, each order its own group: an import, a replay with stream keys, a route catching up.
        var batch = Enumerable.Range(0, 60_000).Select(i => Numbered(i) with { GroupKey = $"order-{i}" }).ToList();
        var failure = await Record.ExceptionAsync(() => broker.SendBatchAsync(queue, batch));

        Assert.True(failure is null, $"The batch was refused: {failure?.GetType().Name}: {failure?.Message}");
        Assert.Equal(batch.Count, (await broker.GetStatsAsync(queue, default)).Visible);
    }

    /// <summary>
    /// AcknowledgeAsync deletes with one statement joined to the leases, so a lease named twice deletes its message once
    /// and passes; the in-memory backend (and SQLite, one lease at a time) refuses the batch with LeaseLostException,
    /// as if the first settlement had already deleted it, and writes nothing.
    /// </summary>
    [Fact]
    public async Task an_acknowledgement_batch_naming_one_lease_twice_is_refused_as_on_the_other_backends()
    {
        var inMemory = new InMemoryMessageBroker(new InMemoryEventStore(new EventStoreOptions { TimeProvider = _clock }), new InMemoryCheckpointStore());
        var postgres = OpenProcess();
        foreach (var broker in new IMessageBroker[] { inMemory, postgres })
        {
            await broker.DeclareQueueAsync(new QueueDefinition("work"), default);
            await broker.SendAsync("work", Numbered(1));
        }

        var reference = Assert.Single(await inMemory.ReceiveAsync("work", new ReceiveOptions(), default));
        await Assert.ThrowsAsync<LeaseLostException>(() => inMemory.AcknowledgeAsync([reference.Lease, reference.Lease], default));

        var delivery = Assert.Single(await postgres.ReceiveAsync("work", new ReceiveOptions(), default));
        await Assert.ThrowsAsync<LeaseLostException>(() => postgres.AcknowledgeAsync([delivery.Lease, delivery.Lease], default));
    }

    /// <summary>
    /// Expired deduplication ids are deleted only by every 1,024th deduplicated send of one broker (a counter in memory,
    /// from 0 at each start): a process that makes fewer such sends between restarts never deletes any, and the table
    /// grows without bound, though postgres.md says "expired deduplication ids are deleted as sends go by".
    /// </summary>
    [Fact]
    public async Task expired_deduplication_ids_are_deleted_as_sends_go_by_whatever_the_lifetime_of_the_processes()
    {
        QueueName queue = "work";
        for (var process = 0; process < 3; process++)
        {
            // A process that runs a while, sends 1,000 deduplicated messages, and is restarted (a deploy, a scale-in).
            var store = new PostgresEventStore(
                new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema },
                new EventStoreOptions { TimeProvider = _clock, Source = "urn:test" });
            await using (store)
            await using (var broker = new PostgresMessageBroker(store))
            {
                await broker.DeclareQueueAsync(new QueueDefinition(queue) { DeduplicationWindow = TimeSpan.FromSeconds(1) }, default);
                await broker.SendBatchAsync(queue, Enumerable.Range(0, 1000).Select(i => Numbered(i) with { DeduplicationId = $"p{process}-{i}" }));
            }

            _clock.Advance(TimeSpan.FromMinutes(1));
        }

        // The ids of the first two processes had expired long before the third sent its 1,000.
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand($"SELECT count(*) FROM \"{_schema}\".deduplication WHERE deduplication_id NOT LIKE 'p2-%'", connection);
        var left = (long)(await count.ExecuteScalarAsync())!;
        Assert.True(left == 0, $"{left} deduplication ids whose window ended before the last 1,000 sends are still stored; they are never deleted.");
    }
}
