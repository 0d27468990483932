using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Schema version 4 indexes correlation ids, and version 6 indexes them by key: a file written by version 3, or by
/// version 4 or 5, is migrated when opened.
/// </summary>
public sealed class CorrelationTraceMigrationTests : IDisposable
{
    private static readonly QueueName Payments = "payments";
    private static readonly QueueName Ledger = "ledger";
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private SqliteEventStore Open() => new(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

    private static EventData Event(string type) => new(type, "{}"u8.ToArray());

    private static OutgoingMessage Message(string type) => new(type, "{}"u8.ToArray());

    /// <summary>Turns the file back into what Cairn's schema version 3 wrote: no correlation table, columns or indexes.</summary>
    private void DowngradeToVersion3()
    {
        _database.Execute("""
            DROP INDEX cairn_inbox_by_correlation;
            DROP INDEX cairn_inbox_roots;
            DROP INDEX cairn_messages_by_correlation;
            DROP TABLE cairn_event_flows;
            DROP TABLE cairn_correlations;
            ALTER TABLE cairn_inbox DROP COLUMN queue;
            ALTER TABLE cairn_inbox DROP COLUMN message_type;
            ALTER TABLE cairn_inbox DROP COLUMN correlation_id;
            ALTER TABLE cairn_inbox DROP COLUMN causation;
            ALTER TABLE cairn_messages DROP COLUMN correlation;
            UPDATE cairn_schema SET version = 3;
            """);
    }

    /// <summary>
    /// Turns the file back into what Cairn's schema versions 4 and 5 wrote: the flows and the inbox indexed by the
    /// correlation's text, and no table of keys.
    /// </summary>
    private void DowngradeToVersion5()
    {
        _database.Execute("""
            DROP INDEX cairn_inbox_roots;
            CREATE TABLE cairn_event_correlations (
                correlation TEXT NOT NULL,
                position    INTEGER NOT NULL,
                PRIMARY KEY (correlation, position)) WITHOUT ROWID;
            INSERT INTO cairn_event_correlations SELECT c.value, f.position FROM cairn_event_flows f JOIN cairn_correlations c ON c.id = f.correlation_id;
            ALTER TABLE cairn_inbox ADD COLUMN correlation TEXT;
            UPDATE cairn_inbox SET correlation = (SELECT c.value FROM cairn_correlations c WHERE c.id = cairn_inbox.correlation_id);
            DROP INDEX cairn_inbox_by_correlation;
            ALTER TABLE cairn_inbox DROP COLUMN correlation_id;
            CREATE INDEX cairn_inbox_by_correlation ON cairn_inbox (correlation, processed_ticks) WHERE correlation IS NOT NULL;
            DROP TABLE cairn_event_flows;
            DROP TABLE cairn_correlations;
            UPDATE cairn_schema SET version = 5;
            """);
    }

    [Fact]
    public async Task a_version_5_file_is_migrated_to_correlation_keys_and_traces_read_the_same()
    {
        // Two flows with random correlation ids, each with events in runs and handled messages, interleaved.
        string[] flows = [Guid.NewGuid().ToString("N"), Guid.NewGuid().ToString("N")];
        CorrelationTrace[] before;
        using (var store = Open())
        {
            var broker = new SqliteMessageBroker(store);
            await broker.DeclareQueueAsync(new QueueDefinition(Payments), default);
            for (var round = 0; round < 3; round++)
            {
                foreach (var flow in flows)
                {
                    using (MessageContext.Begin(flow))
                    {
                        await broker.CommitAsync(
                            new MessageTransaction()
                                .Append(new AppendRequest(new StreamName($"order-{flow}"), ExpectedVersion.Any, [Event("order.changed"), Event("order.noted")]))
                                .Send(Payments, Message("payment.charge")),
                            default);
                    }

                    var delivery = Assert.Single(await broker.ReceiveAsync(Payments, new ReceiveOptions(), default));
                    using (MessageContext.Begin(flow, delivery.Message.Id.ToString()))
                    {
                        await broker.CommitAsync(
                            new MessageTransaction()
                                .Append(new AppendRequest(new StreamName($"payment-{flow}"), ExpectedVersion.Any, [Event("payment.taken")]))
                                .Acknowledge(delivery.Lease)
                                .MarkProcessed("payments", delivery),
                            default);
                    }
                }
            }

            before = await Task.WhenAll(flows.Select(f => new CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync(f, default)));
        }

        DowngradeToVersion5();
        Assert.Equal(6L, _database.Query("SELECT count(*) FROM cairn_inbox WHERE correlation IS NOT NULL", r => r.GetInt64(0)).Single());

        using (var store = Open())
        {
            Assert.Equal([(long)SqliteSchema.Version], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
            Assert.Empty(_database.Query("SELECT name FROM sqlite_master WHERE name = 'cairn_event_correlations'", r => r.GetString(0)));

            // Keys in the order the correlations were first seen, each flow's records under its own.
            Assert.Equal(flows, _database.Query("SELECT value FROM cairn_correlations ORDER BY id", r => r.GetString(0)));
            Assert.Equal([3L, 3L], _database.Query("SELECT count(*) FROM cairn_inbox GROUP BY correlation_id ORDER BY correlation_id", r => r.GetInt64(0)));
            for (var i = 0; i < flows.Length; i++)
            {
                var after = await new CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync(flows[i], default);
                Assert.Equal(9 + 3, after.Timeline.Count);
                Assert.Equal(
                    before[i].Timeline.Select(e => (e.Kind, e.Type, e.Id, e.Time)),
                    after.Timeline.Select(e => (e.Kind, e.Type, e.Id, e.Time)));
            }

            // What the migrated file records from now on is traced under the same key.
            using (MessageContext.Begin(flows[0]))
            {
                await store.AppendToStreamAsync(new StreamName($"order-{flows[0]}"), ExpectedVersion.Any, [Event("order.closed")]);
            }

            var closed = await new CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync(flows[0], default);
            Assert.Equal("order.closed", closed.Timeline[^1].Type);
            Assert.Equal(2L, _database.Query("SELECT count(*) FROM cairn_correlations", r => r.GetInt64(0)).Single());
        }
    }

    [Fact]
    public async Task a_version_3_file_is_migrated_and_its_old_events_and_queued_messages_are_found_by_correlation()
    {
        string flow;
        MessageId charge, ledgerEntry;
        using (var store = Open())
        {
            var broker = new SqliteMessageBroker(store);
            await broker.DeclareQueueAsync(new QueueDefinition(Payments), default);
            await broker.DeclareQueueAsync(new QueueDefinition(Ledger), default);

            // The flow starts with an event of its own: its correlation id is its id.
            var placed = Event("order.placed");
            await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, [placed]);
            flow = placed.Id.ToString();
            var chargeMessage = Message("payment.charge");
            var ledgerMessage = Message("ledger.entry");
            (charge, ledgerEntry) = (chargeMessage.Id, ledgerMessage.Id);
            using (MessageContext.Begin(flow, flow))
            {
                await broker.CommitAsync(
                    new MessageTransaction()
                        .Append(new AppendRequest(new StreamName("payment-1"), ExpectedVersion.NoStream, [Event("payment.requested")]))
                        .Send(Payments, chargeMessage)
                        .Send(Ledger, ledgerMessage),
                    default);
            }

            // The charge is handled (its inbox record, in version 3, keeps only its id); the ledger entry dead-lettered.
            var delivery = Assert.Single(await broker.ReceiveAsync(Payments, new ReceiveOptions(), default));
            using (MessageContext.Begin(flow, charge.ToString()))
            {
                await broker.CommitAsync(
                    new MessageTransaction()
                        .Append(new AppendRequest(new StreamName("payment-1"), ExpectedVersion.Exactly(0), [Event("payment.taken")]))
                        .Acknowledge(delivery.Lease)
                        .MarkProcessed("payments", delivery),
                    default);
            }

            var entry = Assert.Single(await broker.ReceiveAsync(Ledger, new ReceiveOptions(), default));
            await broker.DeadLetterAsync(entry.Lease, "the ledger is closed", null, default);

            // Unrelated traffic stays out of the trace.
            using (MessageContext.Begin("another-flow"))
            {
                await store.AppendToStreamAsync(new StreamName("order-2"), ExpectedVersion.NoStream, [Event("order.placed")]);
            }
        }

        DowngradeToVersion3();

        using (var store = Open())
        {
            Assert.Equal([(long)SqliteSchema.Version], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
            // One row per run of consecutive events of one flow: payment.requested and payment.taken, then another-flow.
            Assert.Equal([2L, 4L], _database.Query("SELECT position FROM cairn_event_flows ORDER BY position", r => r.GetInt64(0)));
            Assert.Equal(
                ["cairn_inbox_by_correlation", "cairn_messages_by_correlation"],
                _database.Query("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%by_correlation' ORDER BY name", r => r.GetString(0)));

            var trace = await new CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync(flow, default);

            Assert.Equal(
                [
                    (TraceEntryKind.EventAppended, "order.placed"),
                    (TraceEntryKind.EventAppended, "payment.requested"),
                    (TraceEntryKind.EventAppended, "payment.taken"),
                    (TraceEntryKind.MessageDeadLettered, "ledger.entry"),
                ],
                trace.Timeline.Select(e => (e.Kind, e.Type)));
            Assert.Equal(flow, trace.Roots[0].Id);
            Assert.Equal(["payment.requested", "ledger.entry"], trace.Roots[0].Children.Select(c => c.Type));

            // The handling of the charge was recorded before inbox records kept what they handled: its effect shows,
            // under a root that names the missing cause.
            var orphan = Assert.Single(trace.Roots, r => r.CauseMissing);
            Assert.Equal(("payment.taken", charge.ToString()), (orphan.Type, orphan.CausationId));
            Assert.Equal("the ledger is closed", trace.Find(ledgerEntry.ToString())!.Entries.Single().DeadLetterReason);

            // What the migrated file records from now on is traced whole.
            var broker = new SqliteMessageBroker(store);
            await broker.RedriveAsync(Ledger, new RedriveRequest(), default);
            var redriven = Assert.Single(await broker.ReceiveAsync(Ledger, new ReceiveOptions(), default));
            await broker.CommitAsync(new MessageTransaction().Acknowledge(redriven.Lease).MarkProcessed("ledger", redriven), default);
            var after = await new CorrelationTracer(new SqliteCorrelationTraceReader(store)).TraceAsync(flow, default);
            Assert.Equal(TraceEntryKind.MessageHandled, after.Find(ledgerEntry.ToString())!.Entries.Single().Kind);
        }
    }

    [Fact]
    public void a_fresh_file_and_a_reopened_one_are_at_the_current_version_with_nothing_to_migrate()
    {
        using (Open())
        {
        }

        using (Open())
        {
        }

        Assert.Equal([(long)SqliteSchema.Version], _database.Query("SELECT version FROM cairn_schema", r => r.GetInt64(0)));
        Assert.Equal(
            ["causation", "consumer", "correlation_id", "message_id", "message_type", "processed_ticks", "queue"],
            _database.Query("SELECT name FROM pragma_table_info('cairn_inbox') ORDER BY name", r => r.GetString(0)));
    }
}
