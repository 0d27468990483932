using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Cairn.RabbitMQ;

/// <summary>Registers the RabbitMQ transport.</summary>
public static class CairnRabbitMqExtensions
{
    /// <summary>
    /// Carries the queues over RabbitMQ, with the backend (configured beside it) as outbox, inbox and the home of topics
    /// and queue settings: <c>services.AddCairn(o => o.UseSqlite("Data Source=cairn.db").UseRabbitMq("amqp://localhost/"))</c>.
    /// Adds the outbox relay, which runs while the host runs; the connection to RabbitMQ closes when the host stops.
    /// </summary>
    public static CairnOptions UseRabbitMq(this CairnOptions options, string uri, Func<RabbitMqOptions, RabbitMqOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!Uri.TryCreate(uri, UriKind.Absolute, out var parsed))
        {
            throw new Messaging.InvalidMessageException($"RabbitMqOptions.Uri is '{uri}'; it must be an absolute amqp:// or amqps:// address.");
        }

        var rabbit = new RabbitMqOptions { Uri = parsed };
        rabbit = configure?.Invoke(rabbit) ?? rabbit;
        rabbit.Validate();
        RabbitMqMessageBroker? broker = null;
        var gate = new object();
        RabbitMqMessageBroker Wrap(IServiceProvider services, Messaging.IMessageBroker backend)
        {
            lock (gate)
            {
                return broker ??= new RabbitMqMessageBroker(backend, rabbit, services.GetService<ILogger<RabbitMqMessageBroker>>(), services.GetService<TimeProvider>());
            }
        }

        return options.UseTransport(
            "rabbitmq",
            Wrap,
            services =>
            {
                // Resolving the broker builds the wrapper around the backend's broker.
                services.GetRequiredService<Messaging.IMessageBroker>();
                return new RabbitMqOutboxRelay(broker!, ownsBroker: true);
            },
            rabbit.Settings);
    }
}
