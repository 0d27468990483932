using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;

namespace Cairn.RabbitMQ.Tests;

/// <summary>A SQLite backend in a temporary file, wrapped by the RabbitMQ transport, with its relay running.</summary>
internal sealed class TransportUnderTest : IAsyncDisposable
{
    private readonly string _directory;

    private TransportUnderTest(string directory, SqliteEventStore store, RabbitMqMessageBroker broker, RabbitMqOutboxRelay relay)
    {
        _directory = directory;
        Store = store;
        Broker = broker;
        Relay = relay;
    }

    public SqliteEventStore Store { get; }

    public RabbitMqMessageBroker Broker { get; }

    public RabbitMqOutboxRelay Relay { get; }

    /// <summary>Starts it; <paramref name="backend"/>, when given, wraps the SQLite backend the transport sees.</summary>
    public static async Task<TransportUnderTest> StartAsync(string? uri = null, Func<RabbitMqOptions, RabbitMqOptions>? configure = null, EventStoreOptions? storeOptions = null, Func<IMessageBroker, IMessageBroker>? backend = null)
    {
        var address = new Uri(uri ?? RabbitMqServer.Uri); // before anything is created: without a broker, nothing to clean up
        var directory = Path.Combine(Path.GetTempPath(), "cairn-rabbitmq-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        var store = new SqliteEventStore(new SqliteEventStoreOptions { ConnectionString = $"Data Source={Path.Combine(directory, "cairn.db")}" }, storeOptions ?? new EventStoreOptions { Source = "urn:test" });
        var options = new RabbitMqOptions { Uri = address, RelayPollWait = TimeSpan.FromMilliseconds(200), MaxReconnectDelay = TimeSpan.FromSeconds(1) };
        IMessageBroker sqlite = new SqliteMessageBroker(store);
        var broker = new RabbitMqMessageBroker(backend?.Invoke(sqlite) ?? sqlite, configure?.Invoke(options) ?? options, timeProvider: storeOptions?.TimeProvider);
        var relay = new RabbitMqOutboxRelay(broker);
        await relay.StartAsync(default);
        return new TransportUnderTest(directory, store, broker, relay);
    }

    /// <summary>
    /// Waits until the relay has moved every message sent to <paramref name="queue"/> out of the outbox and the queue
    /// counts <paramref name="visible"/>. The outbox keeps a message until RabbitMQ confirms it, so a count read in
    /// between holds it twice (the statistics are not exact): a count alone may match before the relay is done.
    /// </summary>
    public Task RelayedAsync(QueueName queue, long visible) => Wait.UntilAsync(
        async () =>
        {
            var outbox = await Broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), default);
            return outbox.Visible + outbox.Leased + outbox.Delayed == 0 && (await Broker.GetStatsAsync(queue, default)).Visible == visible;
        },
        $"{visible} message(s) of '{queue}' relayed to RabbitMQ");

    public async ValueTask DisposeAsync()
    {
        await Relay.StopAsync(default);
        await Broker.DisposeAsync();
        Store.Dispose();
        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
