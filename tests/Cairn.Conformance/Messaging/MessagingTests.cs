using System.Text;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Conformance.Messaging;

/// <summary>The base of the messaging conformance classes: a fresh store and broker per test, on a clock tests move.</summary>
public abstract class MessagingTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    /// <summary>The clock of the store made by <see cref="CreateBrokerAsync"/>.</summary>
    protected ManualTimeProvider Clock { get; } = new();

    /// <summary>A fresh store on <see cref="Clock"/>, with its broker.</summary>
    protected async Task<(StoreUnderTest Sut, IMessageBroker Broker)> CreateBrokerAsync(params QueueDefinition[] queues)
    {
        var sut = await CreateAsync(new EventStoreOptions { TimeProvider = Clock, Source = "urn:test" });
        foreach (var queue in queues)
        {
            await sut.Broker.DeclareQueueAsync(queue, default);
        }

        return (sut, sut.Broker);
    }

    /// <summary>A JSON message carrying a number.</summary>
    protected static OutgoingMessage Numbered(int n, string type = "test.message") => new(type, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    /// <summary>The number a message made by <see cref="Numbered"/> carries.</summary>
    protected static int NumberOf(Message message)
    {
        using var doc = JsonDocument.Parse(message.Data);
        return doc.RootElement.GetProperty("n").GetInt32();
    }

    /// <summary>Receives without waiting.</summary>
    protected static Task<IReadOnlyList<Delivery>> ReceiveNowAsync(IMessageBroker broker, QueueName queue, int max = 10, TimeSpan? lease = null) =>
        broker.ReceiveAsync(queue, new ReceiveOptions { MaxMessages = max, Lease = lease }, default);

    /// <summary>Receives and acknowledges everything visible, returning the numbers in the order received.</summary>
    protected static async Task<List<int>> DrainAsync(IMessageBroker broker, QueueName queue)
    {
        var numbers = new List<int>();
        while (true)
        {
            var batch = await ReceiveNowAsync(broker, queue, 100);
            if (batch.Count == 0)
            {
                return numbers;
            }

            numbers.AddRange(batch.Select(d => NumberOf(d.Message)));
            await broker.AcknowledgeAsync([.. batch.Select(d => d.Lease)], default);
        }
    }
}
