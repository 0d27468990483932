using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The transport over TLS, against a broker of the test's own that requires a client certificate: the application's
/// trust and certificate reach the connection through <see cref="RabbitMqOptions.ConfigureConnectionFactory"/>, on every
/// cluster node.
/// </summary>
public sealed partial class HostingTests
{
    private async Task<(TestCertificates Certificates, OwnRabbitMq Broker)> StartTlsBrokerAsync()
    {
        var certificates = new TestCertificates("cairn test authority");
        var files = Directory.CreateDirectory(Path.Combine(_directory, "tls")).FullName;
        certificates.WriteServerFiles(files);
        return (certificates, await OwnRabbitMq.StartAsync(files));
    }

    [Fact]
    public async Task over_tls_with_the_applications_trust_and_client_certificate_every_message_is_delivered_through_any_cluster_node()
    {
        var (certificates, rabbit) = await StartTlsBrokerAsync();
        using var _ = certificates;
        await using var __ = rabbit;
        using var client = certificates.Client("shop");
        var tls = new Uri(rabbit.TlsUri!);
        var checks = 0;
        var trusted = certificates.TrustedByThisAuthority();
        var queue = new QueueName(RabbitMqServer.NewName("tls"));

        // The address names the node as localhost, the cluster list as 127.0.0.1: the certificate names both.
        using var host = Host(tls.ToString(), queue, "tls", rabbit: r => r with
        {
            ClusterNodes = [$"127.0.0.1:{tls.Port}"],
            ConfigureConnectionFactory = f =>
            {
                f.Ssl.CertificateValidationCallback = (sender, certificate, chain, errors) =>
                {
                    Interlocked.Increment(ref checks);
                    return trusted(sender, certificate, chain, errors);
                };
                f.Ssl.Certs = new X509CertificateCollection { client };
                f.ClientProvidedName = "tls-test";
            },
        });
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        await broker.SendBatchAsync(queue, Enumerable.Range(0, 10).Select(Numbered));
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("tls")!.Status.Handled == 10, "every message sent over TLS was handled");

        var transport = (RabbitMqMessageBroker)((Diagnostics.InstrumentedMessageBroker)broker).Inner;
        var connection = await transport.Connection.GetAsync(default);
        Assert.True(connection.Endpoint.Ssl.Enabled);
        Assert.Equal(tls.Port, connection.Endpoint.Port);
        Assert.Equal("tls-test", connection.ClientProvidedName);
        Assert.True(Volatile.Read(ref checks) >= 1, "the application's check of the server's certificate ran");
        var effects = await EffectsAsync(host);
        Assert.Equal(10, effects.Count);
        Assert.All(effects.Values, count => Assert.Equal(1, count));
        await host.StopAsync();
    }

    [Fact]
    public async Task over_tls_a_server_certificate_not_trusted_or_a_client_certificate_missing_or_foreign_fails_the_connection()
    {
        var (certificates, rabbit) = await StartTlsBrokerAsync();
        using var _ = certificates;
        await using var __ = rabbit;
        using var other = new TestCertificates("another authority");
        using var client = certificates.Client("shop");
        using var foreign = other.Client("intruder");

        async Task<Exception?> DeclareAsync(Action<ConnectionFactory>? configure)
        {
            var backend = new Messaging.InMemory.InMemoryMessageBroker(new EventStore.InMemory.InMemoryEventStore(new EventStoreOptions()), new Subscriptions.InMemoryCheckpointStore());
            await using var transport = new RabbitMqMessageBroker(backend, new RabbitMqOptions { Uri = new Uri(rabbit.TlsUri!), ConfigureConnectionFactory = configure });
            return await Record.ExceptionAsync(() => transport.DeclareQueueAsync(new QueueDefinition(new QueueName(RabbitMqServer.NewName("tls"))), default));
        }

        // The machine does not trust the test's authority, and no check was given.
        var untrusted = await DeclareAsync(f => f.Ssl.Certs = new X509CertificateCollection { client });
        Assert.IsType<BrokerUnreachableException>(untrusted);
        Assert.Contains(Chain(untrusted), e => e is AuthenticationException);

        // The server is trusted, but refuses a client with no certificate, or with one another authority signed: it
        // ends the handshake, which the client sees as the connection reset.
        var missing = await DeclareAsync(f => f.Ssl.CertificateValidationCallback = certificates.TrustedByThisAuthority());
        Assert.IsType<BrokerUnreachableException>(missing);
        Assert.Contains(Chain(missing), e => e is IOException);
        var wrong = await DeclareAsync(f =>
        {
            f.Ssl.CertificateValidationCallback = certificates.TrustedByThisAuthority();
            f.Ssl.Certs = new X509CertificateCollection { foreign };
        });
        Assert.IsType<BrokerUnreachableException>(wrong);
        Assert.Contains(Chain(wrong), e => e is IOException);

        // A check that trusts the authority still refuses a certificate for another name.
        var misnamed = await DeclareAsync(f =>
        {
            f.Ssl.CertificateValidationCallback = certificates.TrustedByThisAuthority();
            f.Ssl.Certs = new X509CertificateCollection { client };
            f.Ssl.ServerName = "queue.example";
        });
        Assert.IsType<BrokerUnreachableException>(misnamed);
        Assert.Contains(Chain(misnamed), e => e is AuthenticationException);

        // What all of them lacked: with it, the same declaration succeeds.
        Assert.Null(await DeclareAsync(f =>
        {
            f.Ssl.CertificateValidationCallback = certificates.TrustedByThisAuthority();
            f.Ssl.Certs = new X509CertificateCollection { client };
        }));
    }

    private static IEnumerable<Exception> Chain(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            yield return e;
        }
    }
}
