using System.Text;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;

namespace Cairn.Sqlite.Tests;

/// <summary>
/// Inline projections and the message broker's transactions: the appends of a <see cref="MessageTransaction"/> apply
/// the inline projections in its commit, and one that throws fails the whole transaction, messages included.
/// </summary>
public sealed class ProjectionMessagingTests : IAsyncLifetime
{
    private static readonly QueueName Queue = new("projection-out");

    private readonly TempDatabase _database = new();
    private readonly SqliteEventStore _store;
    private readonly SqliteMessageBroker _broker;
    private readonly OrderSummaries _projection = new() { Lifecycle = ProjectionLifecycle.Inline, FailWhen = e => e.OrderId.StartsWith("bad", StringComparison.Ordinal) };
    private readonly ProjectionRunner _runner;
    private readonly ReadModels _models;

    public ProjectionMessagingTests()
    {
        _store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
        _broker = new SqliteMessageBroker(_store);
        var projections = new SqliteProjectionStore(_store);
        _runner = new ProjectionRunner(_projection, _store, projections, Orders.Serializer());
        _models = new ReadModels(projections, Orders.Serializer(), [_projection]);
    }

    public async Task InitializeAsync()
    {
        await _broker.DeclareQueueAsync(Queue, default);
        await _runner.StartAsync(default);
        await Wait.UntilAsync(() => _runner.Status.State == ProjectionState.Live, "the inline projection is live");
    }

    public async Task DisposeAsync()
    {
        await _runner.DisposeAsync();
        await _store.DisposeAsync();
        _database.Dispose();
    }

    [Fact]
    public async Task An_inline_projection_is_applied_to_the_appends_of_a_message_transaction_in_its_commit()
    {
        var result = await _broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(Orders.Stream("1"), ExpectedVersion.NoStream, [Orders.Placed("1", "c-1", 10m)]))
                .Append(new AppendRequest(
                    [
                        new StreamAppend(Orders.Stream("2"), ExpectedVersion.NoStream, [Orders.Placed("2", "c-2", 20m)]),
                        new StreamAppend(Orders.Stream("1"), ExpectedVersion.Exactly(0), [Orders.Line("1", 5m), Orders.Shipped("1")]),
                    ]))
                .Send(Queue, Message("placed")),
            default);
        Assert.Equal(1, result.MessagesEnqueued);

        // No wait: the commit that enqueued the message carried the read model's change.
        Assert.Equal(new OrderSummary("1", "c-1", 15m, "shipped", 1), await _models.LoadAsync<OrderSummary>("1"));
        Assert.Equal(new OrderSummary("2", "c-2", 20m, "placed", 0), await _models.LoadAsync<OrderSummary>("2"));
        Assert.Equal(result.Appends[^1].LastPosition, (await new SqliteProjectionStore(_store).OpenAsync(_projection, default)).Serving.Position);
    }

    [Fact]
    public async Task An_inline_projection_that_throws_fails_the_whole_message_transaction_and_nothing_is_written()
    {
        await _broker.CommitAsync(new MessageTransaction().Append(new AppendRequest(Orders.Stream("1"), ExpectedVersion.Any, [Orders.Placed("1", "c-1", 10m)])), default);
        var head = await _store.GetHeadPositionAsync(default);
        var before = await _broker.GetStatsAsync(Queue, default);

        var error = await Assert.ThrowsAsync<ProjectionEventException>(() => _broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(Orders.Stream("good"), ExpectedVersion.NoStream, [Orders.Placed("good", "c-1", 1m)]))
                .Send(Queue, Message("before the failing append"))
                .Append(new AppendRequest(Orders.Stream("bad"), ExpectedVersion.NoStream, [Orders.Placed("bad", "c-1", 1m)]))
                .Append(new AppendRequest(Orders.Stream("1"), ExpectedVersion.Any, [Orders.Line("1", 1m)]))
                .Send(Queue, Message("after the failing append")),
            default));
        Assert.Equal("order-summaries", error.Projection);
        Assert.Equal(Orders.Stream("bad"), error.Event.Stream);

        // Neither event nor message nor read model change of the transaction landed.
        Assert.Equal(head, await _store.GetHeadPositionAsync(default));
        Assert.Equal(before, await _broker.GetStatsAsync(Queue, default));
        Assert.False((await _store.GetStreamInfoAsync(Orders.Stream("good"), default)).Exists);
        Assert.Null(await _models.LoadAsync<OrderSummary>("good"));
        Assert.Equal(10m, (await _models.LoadAsync<OrderSummary>("1"))!.Total);
        Assert.Empty(await _broker.ReceiveAsync(Queue, new ReceiveOptions { MaxMessages = 10 }, default));

        // The broker, the store and the projection go on.
        var result = await _broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(Orders.Stream("good"), ExpectedVersion.NoStream, [Orders.Placed("good", "c-1", 1m)]))
                .Send(Queue, Message("again")),
            default);
        Assert.Equal(1, result.MessagesEnqueued);
        Assert.NotNull(await _models.LoadAsync<OrderSummary>("good"));
    }

    private static OutgoingMessage Message(string text) => new("projection.test", Encoding.UTF8.GetBytes($"{{\"text\":\"{text}\"}}"));
}
