using System.Text;
using Cairn.Conformance.Support;
using Cairn.Domain;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Schemas;

namespace Cairn.Conformance;

/// <summary>
/// Bad input is refused the same way on every backend: the same typed error, through the returned task rather than
/// thrown by the call (so a caller who starts several calls and awaits them later, or with <c>Task.WhenAll</c>, sees
/// the same thing everywhere), and with nothing written.
/// </summary>
public abstract class BadInputParityTests<TFixture>(TFixture fixture, Func<IEventStore, ISnapshotStore> snapshotStore, Func<IEventStore, ISchemaStore> schemaStore) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Work = "work";

    /// <summary>What a refusal case is given: a store with a queue holding one leased delivery, and a cancelled token.</summary>
    private sealed record Context(StoreUnderTest Sut, Delivery Delivery, CancellationToken Cancelled, ISnapshotStore Snapshots, ISchemaStore Schemas)
    {
        public IEventStore Store => Sut.Store;

        public IMessageBroker Broker => Sut.Broker;
    }

    private static StoredSnapshot Snapshot(string kind) =>
        new("order-1", kind, 0, 0, new GlobalPosition(1), 1, "{}"u8.ToArray());

    // Cases are named rather than passed as delegates, so that test names stay readable.
    private static readonly Dictionary<string, (Type Expected, Func<Context, Task> Start)> RefusalCases = new()
    {
        ["append-invalid-event-type"] = (typeof(InvalidEventException), c => c.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1) with { Type = "" }])),
        ["append-reserved-stream"] = (typeof(InvalidStreamNameException), c => c.Store.AppendToStreamAsync("$x-1", ExpectedVersion.Any, [TestEvents.Numbered(1)])),
        ["append-no-events"] = (typeof(ArgumentException), c => c.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [])),
        ["append-cancelled"] = (typeof(OperationCanceledException), c => c.Store.AppendToStreamAsync("order-1", ExpectedVersion.Any, [TestEvents.Numbered(1)], c.Cancelled)),
        ["delete-wrong-expected-version"] = (typeof(WrongExpectedVersionException), c => c.Store.DeleteStreamAsync("order-1", ExpectedVersion.Exactly(99), default)),
        ["delete-reserved-stream"] = (typeof(InvalidStreamNameException), c => c.Store.DeleteStreamAsync("$x-1", ExpectedVersion.Any, default)),
        ["tombstone-missing-stream-name"] = (typeof(InvalidStreamNameException), c => c.Store.TombstoneStreamAsync(default, ExpectedVersion.Any, default)),
        ["metadata-of-a-tombstoned-stream"] = (typeof(StreamDeletedException), c => c.Store.SetStreamMetadataAsync("tomb-1", new StreamMetadata(), default)),
        ["stream-info-missing-stream-name"] = (typeof(InvalidStreamNameException), c => c.Store.GetStreamInfoAsync(default, default).AsTask()),
        ["stream-info-cancelled"] = (typeof(OperationCanceledException), c => c.Store.GetStreamInfoAsync("order-1", c.Cancelled).AsTask()),
        ["head-cancelled"] = (typeof(OperationCanceledException), c => c.Store.GetHeadPositionAsync(c.Cancelled).AsTask()),
        ["checkpoint-get-invalid-key"] = (typeof(ArgumentException), c => c.Sut.Checkpoints.GetAsync("", default).AsTask()),
        ["checkpoint-set-invalid-key"] = (typeof(ArgumentException), c => c.Sut.Checkpoints.SetAsync("", GlobalPosition.Start, default).AsTask()),
        ["snapshot-load-invalid-kind"] = (typeof(InvalidSnapshotKindException), c => c.Snapshots.LoadAsync("order-1", "", default).AsTask()),
        ["snapshot-save-invalid-kind"] = (typeof(InvalidSnapshotKindException), c => c.Snapshots.SaveAsync(Snapshot(""), default).AsTask()),
        ["snapshot-delete-cancelled"] = (typeof(OperationCanceledException), c => c.Snapshots.DeleteAsync("order-1", "kind", c.Cancelled).AsTask()),
        ["schema-versions-invalid-type"] = (typeof(ArgumentException), c => c.Schemas.GetVersionsAsync("", default)),
        ["schema-types-cancelled"] = (typeof(OperationCanceledException), c => c.Schemas.GetEventTypesAsync(c.Cancelled)),
        ["queue-stats-missing-queue-name"] = (typeof(InvalidMessagingNameException), c => c.Broker.GetStatsAsync(default, default)),
        ["queue-stats-cancelled"] = (typeof(OperationCanceledException), c => c.Broker.GetStatsAsync(Work, c.Cancelled)),
        ["inbox-invalid-consumer"] = (typeof(InvalidMessagingNameException), c => c.Broker.WasProcessedAsync("", MessageId.New(), default)),
        ["dead-letter-listing-limit-0"] = (typeof(InvalidMessageException), c => c.Broker.ListDeadLettersAsync(Work, 0, 0, default)),
        ["dead-letter-of-an-unknown-queue"] = (typeof(QueueNotFoundException), c => c.Broker.GetDeadLetterAsync("nope", MessageId.New(), default)),
        ["subscriptions-of-an-unknown-topic"] = (typeof(TopicNotFoundException), c => c.Broker.ListSubscriptionsAsync("nope", default)),
        ["declare-queue-cancelled"] = (typeof(OperationCanceledException), c => c.Broker.DeclareQueueAsync(new QueueDefinition("other"), c.Cancelled)),
        ["acknowledge-cancelled"] = (typeof(OperationCanceledException), c => c.Broker.AcknowledgeAsync([c.Delivery.Lease], c.Cancelled)),
        ["release-cancelled"] = (typeof(OperationCanceledException), c => c.Broker.ReleaseAsync(c.Delivery.Lease, TimeSpan.Zero, null, c.Cancelled)),
        ["extend-lease-cancelled"] = (typeof(OperationCanceledException), c => c.Broker.ExtendLeaseAsync(c.Delivery.Lease, TimeSpan.FromMinutes(1), c.Cancelled)),
        ["purge-dead-letters-cancelled"] = (typeof(OperationCanceledException), c => c.Broker.PurgeDeadLettersAsync(Work, null, c.Cancelled)),
    };

    public static TheoryData<string> Refusals => new(RefusalCases.Keys);

    // The conformance suite already asserts that a conflicting append comes through its task
    // (QueryEdgeTests.A_refused_append_is_reported_through_its_task_not_thrown_by_the_call); this holds every refusal to
    // the same rule. Assert.ThrowsAsync(() => call()) cannot tell the two apart, so the call is made first, here.
    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task a_refusal_is_reported_through_the_returned_task_not_thrown_by_the_call(string @case)
    {
        var (expected, start) = RefusalCases[@case];
        var clock = new ManualTimeProvider();
        await using var sut = await CreateAsync(new EventStoreOptions { TimeProvider = clock, Source = "urn:test" });
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        await sut.Store.AppendToStreamAsync("tomb-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);
        await sut.Store.TombstoneStreamAsync("tomb-1", ExpectedVersion.Any, default);
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(Work), default);
        await sut.Broker.SendAsync(Work, new OutgoingMessage("test.message", Encoding.UTF8.GetBytes("{\"n\":1}")));
        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(Work, new ReceiveOptions { MaxMessages = 1 }, default));
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var context = new Context(sut, delivery, cancelled.Token, snapshotStore(sut.Store), schemaStore(sut.Store));

        await ThroughTask.RefusedAsync(() => start(context), expected);
    }

    [Fact]
    public async Task a_checkpoint_set_with_a_cancelled_token_is_refused_and_nothing_is_stored()
    {
        await using var sut = await CreateAsync();
        await sut.Checkpoints.SetAsync("projector", new GlobalPosition(3), default);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await sut.Checkpoints.SetAsync("projector", new GlobalPosition(5), cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await sut.Checkpoints.SetAsync("fresh", new GlobalPosition(5), cancelled.Token));

        Assert.Equal(new GlobalPosition(3), await sut.Checkpoints.GetAsync("projector", default));
        Assert.Null(await sut.Checkpoints.GetAsync("fresh", default));
    }

    [Fact]
    public async Task a_checkpoint_read_with_a_cancelled_token_is_refused()
    {
        await using var sut = await CreateAsync();
        await sut.Checkpoints.SetAsync("projector", new GlobalPosition(3), default);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await sut.Checkpoints.GetAsync("projector", cancelled.Token));
    }

    // A direction that is neither was read forwards (or, in memory, backwards) without a word.
    [Fact]
    public async Task a_stream_read_in_no_direction_is_refused()
    {
        await using var sut = await CreateAsync();
        await sut.Store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(0)]);

        var refused = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await sut.Store.ReadStreamAsync("order-1", (ReadDirection)99, null, 10, default).ToListAsync());
        Assert.Equal("direction", refused.ParamName);
    }

    // Every other broker call that names a queue (stats, receive, dead letters, redrive, purge) refuses a missing name
    // on every backend, as GetStreamInfoAsync does a missing stream name; looking one up should not answer "no such queue".
    [Fact]
    public async Task a_queue_looked_up_by_a_missing_name_is_refused_as_by_every_other_call_naming_a_queue()
    {
        await using var sut = await CreateAsync();
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => sut.Broker.GetStatsAsync(default, default));
        await Assert.ThrowsAsync<InvalidMessagingNameException>(() => sut.Broker.GetQueueAsync(default, default));
    }
}
