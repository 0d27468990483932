using System.Collections.Concurrent;
using System.Net.Security;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Cairn.RabbitMQ;

/// <summary>
/// A process's two connections to RabbitMQ, each opened on first use: one for consuming (the queues' readers and their
/// acknowledgements, declarations, statistics) and one for publishing (the relay, releases, returns, dead letters and
/// redrives). RabbitMQ blocks a connection that publishes while one of its memory or disk alarms is raised; were the
/// readers on it, their acknowledgements would stop too, and the queues that could bring the alarm down would not
/// drain. Once open, RabbitMQ.Client's automatic recovery reconnects each (with its channels and consumers) after a
/// connection loss or a broker restart; a first connection that fails is tried again by the next caller. It holds the
/// publishing channel, with publisher confirms tracked by the client, and knows which queues it has declared.
/// </summary>
internal sealed class RabbitMqConnection(RabbitMqOptions options) : IAsyncDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly SemaphoreSlim _publisherGate = new(1, 1);

    /// <summary>The queues this process has declared.</summary>
    private readonly ConcurrentDictionary<string, bool> _declared = new(StringComparer.Ordinal);
    private IConnection? _consuming;
    private IConnection? _publishing;
    private IChannel? _publisher;
    private string? _blocked;
    private bool _disposed;
    private long _consumingLosses;
    private ShutdownEventArgs? _consumingLoss;

    public RabbitMqOptions Options { get; } = options;

    /// <summary>
    /// Why RabbitMQ has blocked the publishing connection (such as <c>low on memory</c>), while it has; null otherwise.
    /// Publishes wait meanwhile; the consuming connection goes on.
    /// </summary>
    public string? PublishingBlocked => Volatile.Read(ref _blocked);

    /// <summary>
    /// How many times the consuming connection has shut down. Every queue reader's generation moves on with it (see
    /// <see cref="QueueReader.Generation"/>), at the first of the shutdown's handlers: RabbitMQ.Client runs the handlers
    /// registered on a connection in turn, and this one is registered as the connection opens, ahead of every channel's.
    /// </summary>
    public long ConsumingLosses => Interlocked.Read(ref _consumingLosses);

    /// <summary>
    /// Whether a channel's shutdown is the consuming connection's latest (RabbitMQ.Client hands a connection's reason to
    /// each of its channels); a channel RabbitMQ closed on its own has a reason of its own.
    /// </summary>
    public bool IsConsumingLoss(ShutdownEventArgs reason) => ReferenceEquals(reason, Volatile.Read(ref _consumingLoss));

    /// <summary>Whether the consuming connection is open now (not never opened, nor down and recovering).</summary>
    public bool ConsumingIsOpen => _consuming is { IsOpen: true };

    /// <summary>The publishing connection if it was opened (nothing published yet otherwise).</summary>
    public IConnection? OpenedPublishing => _publishing;

    /// <summary>The consuming connection: the queues' readers, declarations and statistics.</summary>
    public Task<IConnection> GetAsync(CancellationToken cancellationToken) =>
        _consuming is { } open ? Task.FromResult(open) : OpenAsync(publishing: false, cancellationToken);

    /// <summary>The publishing connection: every publish, and what acknowledges a message only once it is published elsewhere.</summary>
    public Task<IConnection> GetPublishingAsync(CancellationToken cancellationToken) =>
        _publishing is { } open ? Task.FromResult(open) : OpenAsync(publishing: true, cancellationToken);

    private async Task<IConnection> OpenAsync(bool publishing, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if ((publishing ? _publishing : _consuming) is { } open)
            {
                return open;
            }

            var (factory, sharedServerName) = CreateFactory(publishing);
            var connection = Options.ClusterNodes.Count == 0
                ? await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false)
                : await factory.CreateConnectionAsync(new NodesBesidePartner(Endpoints(factory, sharedServerName), () => publishing ? _consuming : _publishing), factory.ClientProvidedName, cancellationToken).ConfigureAwait(false);
            if (publishing)
            {
                connection.ConnectionBlockedAsync += (_, e) =>
                {
                    Volatile.Write(ref _blocked, string.IsNullOrEmpty(e.Reason) ? "blocked" : e.Reason);
                    return Task.CompletedTask;
                };
                connection.ConnectionUnblockedAsync += (_, _) =>
                {
                    Volatile.Write(ref _blocked, null);
                    return Task.CompletedTask;
                };

                // A lost connection's block goes with it; the recovered one is told again, as it publishes, if the alarm
                // is still raised (cleared here, not on recovery, which may come after the new block).
                connection.ConnectionShutdownAsync += (_, _) =>
                {
                    Volatile.Write(ref _blocked, null);
                    return Task.CompletedTask;
                };
                _publishing = connection;
            }
            else
            {
                connection.ConnectionShutdownAsync += (_, e) =>
                {
                    Volatile.Write(ref _consumingLoss, e);
                    Interlocked.Increment(ref _consumingLosses);
                    return Task.CompletedTask;
                };
                _consuming = connection;
            }

            return connection;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The factory of one of the connections, from the options, then <see cref="RabbitMqOptions.ConfigureConnectionFactory"/>;
    /// and the server name the application gave every node, if it changed the address's (null otherwise).
    /// </summary>
    internal (ConnectionFactory Factory, string? SharedServerName) CreateFactory(bool publishing)
    {
        var factory = new ConnectionFactory
        {
            Uri = Options.Uri,
            ClientProvidedName = Options.ClientName,
            AutomaticRecoveryEnabled = true,
            TopologyRecoveryEnabled = true,
            NetworkRecoveryInterval = Options.ReconnectDelay,
            RequestedHeartbeat = TimeSpan.FromSeconds(10),
        };

        // RabbitMQ.Client accepts a certificate for another name over amqps; Cairn checks the name unless the
        // application's callback accepts the mismatch again.
        factory.Ssl.AcceptablePolicyErrors = SslPolicyErrors.None;
        var addressServerName = factory.Ssl.ServerName;
        Options.ConfigureConnectionFactory?.Invoke(factory);

        // What the consumers and the relay rely on: a lost connection comes back with its channels and consumers.
        factory.AutomaticRecoveryEnabled = true;
        factory.TopologyRecoveryEnabled = true;
        if (publishing)
        {
            // Told apart in RabbitMQ's tools.
            factory.ClientProvidedName = (factory.ClientProvidedName ?? Options.ClientName) + " (publishing)";
        }

        var serverName = factory.Ssl.ServerName;
        return (factory, string.IsNullOrEmpty(serverName) || serverName == addressServerName ? null : serverName);
    }

    /// <summary>
    /// Every node of <see cref="RabbitMqOptions.Nodes"/>, each with the factory's TLS settings (those the address gave it
    /// and <see cref="RabbitMqOptions.ConfigureConnectionFactory"/> set: the same leniency, certificates and callbacks),
    /// for RabbitMQ.Client to try on the first connection and on each recovery. Each node's certificate is checked
    /// against the node's own name, or against <paramref name="sharedServerName"/> when the application gave one (a
    /// certificate the whole cluster shares).
    /// </summary>
    internal List<AmqpTcpEndpoint> Endpoints(ConnectionFactory factory, string? sharedServerName)
    {
        var tls = factory.Ssl;
        return [.. Options.Nodes().Select(n => new AmqpTcpEndpoint(n.Host, n.Port, new SslOption(sharedServerName ?? n.Host, tls.CertPath, tls.Enabled)
        {
            AcceptablePolicyErrors = tls.AcceptablePolicyErrors,
            CertPassphrase = tls.CertPassphrase,
            Certs = tls.Certs,
            CertificateSelectionCallback = tls.CertificateSelectionCallback,
            CertificateValidationCallback = tls.CertificateValidationCallback,
            CheckCertificateRevocation = tls.CheckCertificateRevocation,
            ClientCertificateContext = tls.ClientCertificateContext,
            Version = tls.Version,
        }))];
    }

    /// <summary>
    /// The nodes in random order for each attempt, except that the node the process's other connection is on goes first:
    /// the two connections stay on one node while they can, on the first connection and on each recovery.
    /// </summary>
    internal sealed class NodesBesidePartner(IReadOnlyList<AmqpTcpEndpoint> nodes, Func<IConnection?> partner) : IEndpointResolver
    {
        public IEnumerable<AmqpTcpEndpoint> All()
        {
            var order = nodes.OrderBy(_ => Random.Shared.Next()).ToList();
            if (partner() is { IsOpen: true } other)
            {
                var at = order.FindIndex(n => n.Port == other.Endpoint.Port && string.Equals(n.HostName, other.Endpoint.HostName, StringComparison.OrdinalIgnoreCase));
                if (at > 0)
                {
                    var node = order[at];
                    order.RemoveAt(at);
                    order.Insert(0, node);
                }
            }

            return order;
        }
    }

    /// <summary>The channel every publish goes through: each publish completes when RabbitMQ confirms it, and fails when RabbitMQ refuses or returns it.</summary>
    public async Task<IChannel> PublisherAsync(CancellationToken cancellationToken)
    {
        if (_publisher is { IsClosed: false } open)
        {
            return open;
        }

        var connection = await GetPublishingAsync(cancellationToken).ConfigureAwait(false);

        // A gate of its own: opening a channel on a blocked connection waits, and the consuming side must not.
        await _publisherGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_publisher is { IsClosed: false } again)
            {
                return again;
            }

            if (_publisher is not null)
            {
                var closed = _publisher;
                _publisher = null;
                await closed.DisposeAsync().ConfigureAwait(false);
            }

            var channel = await connection.CreateChannelAsync(
                new CreateChannelOptions(
                    publisherConfirmationsEnabled: true,
                    publisherConfirmationTrackingEnabled: true,
                    outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(Options.MaxOutstandingConfirms, Options.ConfirmThrottlingPercentage)),
                cancellationToken).ConfigureAwait(false);
            if (Volatile.Read(ref _disposed))
            {
                await channel.DisposeAsync().ConfigureAwait(false);
                throw new ObjectDisposedException(nameof(RabbitMqConnection));
            }

            _publisher = channel;
            return channel;
        }
        finally
        {
            _publisherGate.Release();
        }
    }

    /// <summary>
    /// Runs an operation on a channel of its own, closed afterwards: a refused declaration closes only that channel.
    /// With <paramref name="confirms"/> the operation publishes, so its channel is on the publishing connection.
    /// </summary>
    public async Task<T> WithChannelAsync<T>(Func<IChannel, Task<T>> operation, CancellationToken cancellationToken, bool confirms = false)
    {
        var connection = await (confirms ? GetPublishingAsync(cancellationToken) : GetAsync(cancellationToken)).ConfigureAwait(false);
        var channel = await connection.CreateChannelAsync(
            confirms ? new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true) : null,
            cancellationToken).ConfigureAwait(false);
        await using (channel.ConfigureAwait(false))
        {
            try
            {
                return await operation(channel).ConfigureAwait(false);
            }
            finally
            {
                if (channel.IsOpen)
                {
                    await channel.CloseAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>Declares a durable queue once per process (declaring it again with the same arguments is harmless).</summary>
    public async Task DeclareAsync(string queue, IDictionary<string, object?> arguments, CancellationToken cancellationToken)
    {
        if (_declared.ContainsKey(queue))
        {
            return;
        }

        await WithChannelAsync(
            async channel =>
            {
                await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken).ConfigureAwait(false);
        _declared[queue] = true;
    }

    /// <summary>Forgets that a queue was declared, so the next use declares it again (after it was found missing).</summary>
    public void Forget(string queue) => _declared.TryRemove(queue, out _);

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _disposed = true;

            // The consuming connection first: it never waits for a resource alarm, and each is closed whatever the other does.
            try
            {
                if (_consuming is not null)
                {
                    await _consuming.DisposeAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                await DisposePublishingAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Aborts the publishing connection while RabbitMQ blocks it, so that publishes awaiting their confirm fail instead
    /// of waiting out the alarm (a stopping relay would wait with them); the next publish opens a new connection. The
    /// aborted connection and its channel are disposed in the background: disposing them waits for the alarm too.
    /// </summary>
    public Task AbortBlockedPublishingAsync() => AbortPublishingAsync(onlyWhileBlocked: true);

    /// <summary>
    /// Aborts the publishing connection whatever holds its confirms back (a quorum queue without its majority takes
    /// publishes and never confirms them): every publish awaiting its confirm fails, and the next publish opens a new
    /// connection. As <see cref="AbortBlockedPublishingAsync"/>, which does it only while RabbitMQ blocks publishing.
    /// </summary>
    public async Task AbortPublishingAsync(bool onlyWhileBlocked = false)
    {
        IChannel? publisher;
        IConnection? publishing;
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed || _publishing is null || (onlyWhileBlocked && PublishingBlocked is null))
            {
                return;
            }

            // Before the publisher's gate: a channel being opened on the blocked connection holds it until the
            // connection ends.
            await _publishing.AbortAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            await _publisherGate.WaitAsync().ConfigureAwait(false);
            (publisher, publishing) = (_publisher, _publishing);
            (_publisher, _publishing) = (null, null);
            Volatile.Write(ref _blocked, null);
            _publisherGate.Release();
        }
        finally
        {
            _gate.Release();
        }

        _ = Task.Run(async () =>
        {
            try
            {
                if (publisher is not null)
                {
                    await publisher.DisposeAsync().ConfigureAwait(false);
                }

                await publishing.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // An aborted connection: nothing more to close.
            }
        });
    }

    private async Task DisposePublishingAsync()
    {
        // A blocked connection is not read by RabbitMQ, so a polite close, of a channel or of the connection, would wait
        // out its time-out: abort it first.
        if (_publishing is not null && PublishingBlocked is not null)
        {
            await _publishing.AbortAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }

        try
        {
            if (_publisher is not null)
            {
                await _publisher.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            if (_publishing is not null)
            {
                await _publishing.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
