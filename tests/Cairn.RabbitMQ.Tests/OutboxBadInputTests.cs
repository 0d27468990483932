using System.Text;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests;

/// <summary>Bad input to a commit over RabbitMQ, refused before any connection is needed.</summary>
public sealed class OutboxBadInputTests
{
    // A send to default(QueueName) is malformed input on every backend, not a queue that is missing.
    [Fact]
    public async Task a_send_naming_no_queue_is_refused_as_invalid_input_over_rabbitmq_as_on_every_backend()
    {
        var backend = new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore());
        await using var broker = new RabbitMQ.RabbitMqMessageBroker(backend, new RabbitMQ.RabbitMqOptions { Uri = new Uri("amqp://unused:1/") });
        var message = new OutgoingMessage("test.message", Encoding.UTF8.GetBytes("{\"n\":1}"));

        var onBackend = await Record.ExceptionAsync(() => backend.CommitAsync(new MessageTransaction().Send(default, message), default));
        var overRabbitMq = await Record.ExceptionAsync(() => broker.CommitAsync(new MessageTransaction().Send(default, message), default));

        Assert.IsType<InvalidMessageException>(onBackend);
        Assert.IsType<InvalidMessageException>(overRabbitMq);
    }
}
