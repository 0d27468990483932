using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Conformance.Upcasting;

/// <summary>
/// Logs written by old versions of the code, read through today's: the stored events keep their old shapes byte for
/// byte; what reads them (a fold over a stream, a reader of <c>$all</c>, a message handler) only ever sees the current
/// classes.
/// </summary>
public abstract class OldLogTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private async Task<StoreUnderTest> StoreWithFixtureAsync()
    {
        var sut = await CreateAsync();
        foreach (var (stream, e) in CustomerLog.Fixture())
        {
            await sut.Store.AppendToStreamAsync(stream, ExpectedVersion.Any, [e]);
        }

        return sut;
    }

    [Fact]
    public async Task each_stream_of_an_old_log_folds_through_the_current_classes()
    {
        await using var sut = await StoreWithFixtureAsync();
        var store = sut.Store;
        var serializer = CustomerLog.Serializer();

        async Task<CustomerState> StateOf(string stream) =>
            CustomerLog.Fold(await EventStoreExtensions.ReadStreamAsync(store, stream).Select(serializer.Deserialize).ToListAsync());

        Assert.Equal(new CustomerState("Grace Hopper", new Money(20m, "EUR")), await StateOf("customer-1"));
        Assert.Equal(new CustomerState("Alan Turing", new Money(1m, "EUR")), await StateOf("customer-2"));
        Assert.Equal(new CustomerState("Ada Lovelace", new Money(5m, "GBP")), await StateOf("customer-3"));
    }

    [Fact]
    public async Task the_stored_events_keep_their_old_shape_and_dataschema()
    {
        await using var sut = await StoreWithFixtureAsync();

        var all = await EventStoreExtensions.ReadAllAsync(sut.Store, GlobalPosition.Start).ToListAsync();

        Assert.Equal(CustomerLog.Fixture().Select(f => f.Event.DataSchema), all.Select(e => e.DataSchema));
        Assert.Equal(CustomerLog.Fixture().Select(f => f.Event.Data.ToArray()), all.Select(e => e.Data.ToArray()));
        Assert.All(all.Select(CustomerLog.Serializer().Deserialize), e => Assert.True(e is CustomerRegistered or CustomerCredited));
    }

    [Fact]
    public async Task a_message_sent_by_an_old_version_is_upcast_for_its_handler()
    {
        await using var sut = await CreateAsync();
        var queue = new QueueName("customers-in");
        await sut.Broker.DeclareQueueAsync(new QueueDefinition(queue), default);
        var (_, old) = CustomerLog.Fixture()[0];
        await sut.Broker.SendAsync(queue, new OutgoingMessage(old.Type, old.Data) { DataSchema = old.DataSchema });

        var delivery = Assert.Single(await sut.Broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = 1 }, default));

        Assert.Null(delivery.Message.DataSchema);
        Assert.Equal(new CustomerRegistered("Grace", "Hopper", new Money(12.5m, "EUR")), CustomerLog.Serializer().Deserialize<CustomerRegistered>(delivery.Message));
    }
}
