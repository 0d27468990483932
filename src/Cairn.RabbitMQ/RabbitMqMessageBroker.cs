using System.Collections.Concurrent;
using System.Text;
using Cairn.Envelopes;
using Cairn.Messaging;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Cairn.RabbitMQ;

/// <summary>
/// A broker whose queues are RabbitMQ quorum queues, wrapped around a backend's own broker so that one backend
/// transaction still holds everything a commit writes. A commit's appends, inbox record and checkpoints go to the
/// backend as before; its sends and publishes go into the backend's outbox (a backend queue per RabbitMQ queue, named
/// <c>rabbitmq.out:&lt;queue&gt;</c>) in the same backend transaction, and its acknowledgements of RabbitMQ deliveries
/// are sent once that transaction has committed. The <see cref="RabbitMqOutboxRelay"/> publishes what the outbox
/// holds, with publisher confirms, and settles each outbox message only after RabbitMQ confirmed it.
/// Topics and subscriptions stay in the backend: a publish is filtered there, at commit, into the outbox of each
/// subscribed queue whose rule it passes. FIFO queues stay in the backend too, since a quorum queue has no message
/// groups: every operation on one, and on its leases and dead letters, is the backend's own.
/// </summary>
public sealed partial class RabbitMqMessageBroker : IMessageBroker, IAsyncDisposable
{
    /// <summary>The prefix of the backend queues that hold what waits to be published to RabbitMQ.</summary>
    public const string OutboxPrefix = "rabbitmq.out:";

    /// <summary>The suffix of a queue's dead-letter queue in RabbitMQ.</summary>
    public const string DeadLetterSuffix = ".dlq";

    private readonly IMessageBroker _backend;
    private readonly RabbitMqConnection _connection;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<QueueName, QueueDefinition> _queues = new();

    /// <summary>
    /// When each of <see cref="_queues"/> was read or declared here (<see cref="TimeProvider"/> timestamps): settings
    /// other than <see cref="QueueDefinition.Fifo"/> may be changed by a declaration in another process, so a receive or
    /// a settlement reads them again once they are <see cref="QueueSettingsMaxAge"/> old.
    /// </summary>
    private readonly ConcurrentDictionary<QueueName, long> _queuesReadAt = new();

    /// <summary>How old a queue's settings may be before they are read from the backend again.</summary>
    private static readonly TimeSpan QueueSettingsMaxAge = TimeSpan.FromSeconds(5);
    private readonly CancellationTokenSource _disposing = new();

    /// <summary>Wraps <paramref name="backend"/>, whose database keeps the outbox, the inbox, topics and queue settings.</summary>
    public RabbitMqMessageBroker(IMessageBroker backend, RabbitMqOptions options, ILogger<RabbitMqMessageBroker>? logger = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _backend = backend;
        _time = timeProvider ?? TimeProvider.System;
        _connection = new RabbitMqConnection(options);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _sweeper = SweepLeasesAsync(_disposing.Token);
    }

    /// <summary>The backend's broker, which holds the outbox.</summary>
    public IMessageBroker Backend => _backend;

    /// <summary>The settings.</summary>
    public RabbitMqOptions Options => _connection.Options;

    internal RabbitMqConnection Connection => _connection;

    internal ILogger Logger => _logger;

    /// <summary>Raised when this process declares a queue, so the relay starts on its outbox at once.</summary>
    internal event Action<QueueName>? QueueDeclared;

    /// <summary>Raised after a commit put messages into the outbox of these queues.</summary>
    internal event Action<IReadOnlyCollection<QueueName>>? OutboxWritten;

    /// <summary>The backend queue that holds what waits to be published to <paramref name="queue"/>.</summary>
    public static QueueName OutboxOf(QueueName queue) => new(OutboxPrefix + queue.Value);

    /// <summary>The RabbitMQ queue an outbox queue feeds, or null when <paramref name="backendQueue"/> is not an outbox.</summary>
    public static QueueName? QueueOfOutbox(QueueName backendQueue) =>
        backendQueue.Value.StartsWith(OutboxPrefix, StringComparison.Ordinal) ? new QueueName(backendQueue.Value[OutboxPrefix.Length..]) : (QueueName?)null;

    /// <summary>The name of a queue in RabbitMQ: <see cref="RabbitMqOptions.QueuePrefix"/> and the queue's name.</summary>
    public string AmqpName(QueueName queue) => Options.QueuePrefix + queue.Value;

    /// <summary>The clock of the broker's times (enqueued, received, dead-lettered), which the relay shares.</summary>
    internal TimeProvider Time => _time;

    /// <summary>The name of a queue's dead-letter queue in RabbitMQ.</summary>
    public string DeadLettersIn(QueueName queue) => AmqpName(queue) + DeadLetterSuffix;

    internal static Dictionary<string, object?> QuorumArguments() => new(StringComparer.Ordinal) { ["x-queue-type"] = "quorum" };

    /// <inheritdoc />
    public async Task DeclareQueueAsync(QueueDefinition queue, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(queue);
        queue.Validate();
        if (queue.Name.Value.Length + OutboxPrefix.Length > MessagingNames.MaxLength)
        {
            throw new InvalidMessagingNameException("queue", queue.Name.Value, $"over RabbitMQ a queue name is at most {MessagingNames.MaxLength - OutboxPrefix.Length} characters, since its outbox is named '{OutboxPrefix}<queue>'");
        }

        if (queue.Name.Value.StartsWith(OutboxPrefix, StringComparison.Ordinal))
        {
            throw new InvalidMessagingNameException("queue", queue.Name.Value, $"names starting with '{OutboxPrefix}' are the RabbitMQ outbox's own");
        }

        // A queue's companions in RabbitMQ are named after it: 'x.dlq' would be x's dead letters, 'x.wait.1300' one of
        // its delay queues, each read and written as both.
        if (queue.Name.Value.EndsWith(DeadLetterSuffix, StringComparison.Ordinal) || queue.Name.Value.Contains(".wait.", StringComparison.Ordinal))
        {
            throw new InvalidMessagingNameException("queue", queue.Name.Value, $"over RabbitMQ, names ending in '{DeadLetterSuffix}' or holding '.wait.' are those of another queue's dead letters and delay queues");
        }

        // RabbitMQ takes names of at most 255 bytes of UTF-8, and a delay queue's adds '.wait.' and up to 10 digits.
        if (Encoding.UTF8.GetByteCount(DelayQueueName(queue.Name, uint.MaxValue)) > 255)
        {
            throw new InvalidMessagingNameException("queue", queue.Name.Value, $"over RabbitMQ, the prefix '{Options.QueuePrefix}', the name and '.wait.<ms>' must fit 255 bytes of UTF-8");
        }

        // RabbitMQ keeps names starting with 'amq.' for itself and refuses to declare one (ACCESS_REFUSED).
        if (!queue.Fifo && AmqpName(queue.Name).StartsWith("amq.", StringComparison.Ordinal))
        {
            throw new InvalidMessagingNameException("queue", queue.Name.Value, "over RabbitMQ, names starting with 'amq.' are RabbitMQ's own");
        }

        if (!queue.Fifo && queue.MaxMessageSize > Options.MaxMessageSize)
        {
            throw new InvalidMessageException($"Queue '{queue.Name}': MaxMessageSize is {queue.MaxMessageSize}, larger than RabbitMQ takes (RabbitMqOptions.MaxMessageSize, {Options.MaxMessageSize}); RabbitMQ would close the publishing channel on such a message.");
        }

        // A queue is FIFO or not for good, whichever side keeps it. This check names the conflict early, and catches
        // standard queues declared before they were marked (below); the backend's own refusal to flip a queue's kind
        // settles two declares of one name that race, each having passed this check before the other wrote.
        if (await _backend.GetQueueAsync(queue.Fifo ? OutboxOf(queue.Name) : queue.Name, cancellationToken).ConfigureAwait(false) is { } other && other.Fifo != queue.Fifo)
        {
            throw new QueueDefinitionConflictException(queue.Name, $"it exists as a {(other.Fifo ? "FIFO" : "standard")} queue, and that cannot change");
        }

        if (queue.Fifo)
        {
            // A quorum queue has no message groups: a FIFO queue stays in the backend, where a commit writes it directly.
            await _backend.DeclareQueueAsync(queue, cancellationToken).ConfigureAwait(false);
            _queues[queue.Name] = queue;
            _queuesReadAt[queue.Name] = _time.GetTimestamp();
            return;
        }

        // In RabbitMQ first: a declaration it refuses (a classic queue of that name, say) writes nothing in the backend,
        // where the queue would otherwise exist for Cairn and take sends that could never be published.
        try
        {
            await EnsureDeclaredAsync(queue.Name, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == 406)
        {
            _connection.Forget(AmqpName(queue.Name));
            throw new QueueDefinitionConflictException(queue.Name, $"RabbitMQ refused to declare it as a quorum queue ({ex.ShutdownReason.ReplyText}); another application's queue of that name is in the way");
        }

        // The mark: the queue's own name in the backend, as a standard queue that holds nothing. A FIFO queue of that
        // name is that same entry, so the backend refuses whichever of the two comes second.
        await _backend.DeclareQueueAsync(new QueueDefinition(queue.Name), cancellationToken).ConfigureAwait(false);
        await _backend.DeclareQueueAsync(queue with { Name = OutboxOf(queue.Name) }, cancellationToken).ConfigureAwait(false);
        _queues[queue.Name] = queue;
        _queuesReadAt[queue.Name] = _time.GetTimestamp();
        QueueDeclared?.Invoke(queue.Name);
    }

    /// <summary>
    /// True for a FIFO queue, which the backend keeps; looked up in the backend when this process has not met the queue
    /// (a lease of another instance, or one kept across a restart). <see cref="QueueNotFoundException"/> for a queue that
    /// does not exist (or no queue at all: a default lease token), as the backend refuses it, rather than a lease lost.
    /// </summary>
    private async ValueTask<bool> IsKeptAsync(QueueName queue, CancellationToken cancellationToken) =>
        _queues.TryGetValue(queue, out var definition)
            ? definition.Fifo
            : ((await GetQueueAsync(queue, cancellationToken).ConfigureAwait(false)) ?? throw new QueueNotFoundException(queue)).Fifo;

    /// <summary>Declares the queue and its dead-letter queue in RabbitMQ (once per process).</summary>
    internal async Task EnsureDeclaredAsync(QueueName queue, CancellationToken cancellationToken)
    {
        await _connection.DeclareAsync(AmqpName(queue), QuorumArguments(), cancellationToken).ConfigureAwait(false);
        await _connection.DeclareAsync(DeadLettersIn(queue), QuorumArguments(), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<QueueDefinition?> GetQueueAsync(QueueName queue, CancellationToken cancellationToken)
    {
        if (queue.Value is null || queue.Value.Length + OutboxPrefix.Length > MessagingNames.MaxLength)
        {
            return null;
        }

        var stored = await _backend.GetQueueAsync(OutboxOf(queue), cancellationToken).ConfigureAwait(false)
            ?? (await _backend.GetQueueAsync(queue, cancellationToken).ConfigureAwait(false) is { Fifo: true } kept ? kept : null);
        if (stored is null)
        {
            return null;
        }

        var definition = stored with { Name = queue };
        _queues[queue] = definition;
        _queuesReadAt[queue] = _time.GetTimestamp();
        return definition;
    }

    /// <summary>
    /// The queue's settings, from this process's cache while it is fresh, else from the backend (the cached ones when the
    /// backend cannot be read); <see cref="QueueNotFoundException"/> when it was never declared.
    /// </summary>
    internal async Task<QueueDefinition> RequireQueueAsync(QueueName queue, CancellationToken cancellationToken)
    {
        if (!_queues.TryGetValue(queue, out var known))
        {
            return await GetQueueAsync(queue, cancellationToken).ConfigureAwait(false) ?? throw new QueueNotFoundException(queue);
        }

        if (_queuesReadAt.TryGetValue(queue, out var readAt) && _time.GetElapsedTime(readAt) < QueueSettingsMaxAge)
        {
            return known;
        }

        try
        {
            return await GetQueueAsync(queue, cancellationToken).ConfigureAwait(false) ?? throw new QueueNotFoundException(queue);
        }
        catch (Exception ex) when (ex is not QueueNotFoundException && !cancellationToken.IsCancellationRequested)
        {
            // The settings read a moment ago serve until the backend answers again.
            _queuesReadAt[queue] = _time.GetTimestamp();
            _logger.LogDebug(ex, "Queue {Queue}'s settings could not be read again; those read before serve meanwhile.", queue);
            return known;
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<QueueDefinition>> ListQueuesAsync(CancellationToken cancellationToken)
    {
        var all = await _backend.ListQueuesAsync(cancellationToken).ConfigureAwait(false);
        return [.. all.Where(q => QueueOfOutbox(q.Name) is not null || q.Fifo).Select(q => QueueOfOutbox(q.Name) is { } queue ? q with { Name = queue } : q)];
    }

    /// <inheritdoc />
    public Task DeclareTopicAsync(TopicName topic, CancellationToken cancellationToken) => _backend.DeclareTopicAsync(topic, cancellationToken);

    /// <inheritdoc />
    public async Task SubscribeAsync(TopicSubscription subscription, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        await _backend.ListSubscriptionsAsync(subscription.Topic, cancellationToken).ConfigureAwait(false); // an unknown topic is named first
        var queue = await RequireQueueAsync(subscription.Queue, cancellationToken).ConfigureAwait(false);
        await _backend.SubscribeAsync(queue.Fifo ? subscription : new TopicSubscription(subscription.Topic, subscription.Name, OutboxOf(subscription.Queue), subscription.Rule), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public Task<bool> UnsubscribeAsync(TopicName topic, string subscription, CancellationToken cancellationToken) => _backend.UnsubscribeAsync(topic, subscription, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<TopicSubscription>> ListSubscriptionsAsync(TopicName topic, CancellationToken cancellationToken)
    {
        var subscriptions = await _backend.ListSubscriptionsAsync(topic, cancellationToken).ConfigureAwait(false);
        return [.. subscriptions.Select(s => QueueOfOutbox(s.Queue) is { } queue ? new TopicSubscription(s.Topic, s.Name, queue, s.Rule) : s)];
    }

    /// <summary>
    /// What a queue holds: <see cref="QueueStats.Visible"/> counts the messages ready in RabbitMQ, those taken ahead by
    /// this process's reader but not yet received, and those in the outbox due now; <see cref="QueueStats.Delayed"/> the
    /// outbox's delayed ones; <see cref="QueueStats.Leased"/> this process's leases; <see cref="QueueStats.DeadLettered"/>
    /// the dead-letter queue's messages. Deliveries another process holds are counted by none. A FIFO queue's are the
    /// backend's own, exact.
    /// </summary>
    public async Task<QueueStats> GetStatsAsync(QueueName queue, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        if ((await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false)).Fifo)
        {
            return await _backend.GetStatsAsync(queue, cancellationToken).ConfigureAwait(false);
        }

        var outbox = await _backend.GetStatsAsync(OutboxOf(queue), cancellationToken).ConfigureAwait(false);
        var (ready, deadLettered) = await CountInRabbitMqAsync(
            queue,
            async channel =>
            {
                var main = await channel.QueueDeclarePassiveAsync(AmqpName(queue), cancellationToken).ConfigureAwait(false);
                var dlq = await channel.QueueDeclarePassiveAsync(DeadLettersIn(queue), cancellationToken).ConfigureAwait(false);
                return ((long)main.MessageCount, (long)dlq.MessageCount);
            },
            cancellationToken).ConfigureAwait(false);
        var leased = _leases.Values.Count(l => l.Delivery.Queue == queue) + HeldDeadLettersOf(queue);
        var buffered = _readers.TryGetValue(queue, out var reader) ? reader.Buffered : 0;
        return new QueueStats
        {
            Queue = queue,
            Visible = ready + buffered + outbox.Visible + outbox.Leased,
            Leased = leased,
            Delayed = outbox.Delayed,
            DeadLettered = deadLettered,
            Exact = false,
        };
    }

    /// <summary>How many messages of a queue are on their way to this process's reader: in the outbox and due, or ready in RabbitMQ.</summary>
    internal async Task<long> InTransitAsync(QueueName queue, CancellationToken cancellationToken)
    {
        if ((await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false)).Fifo)
        {
            return 0;
        }

        var outbox = await _backend.GetStatsAsync(OutboxOf(queue), cancellationToken).ConfigureAwait(false);
        var ready = await CountInRabbitMqAsync(queue, async channel => (await channel.QueueDeclarePassiveAsync(AmqpName(queue), cancellationToken).ConfigureAwait(false)).MessageCount, cancellationToken).ConfigureAwait(false);
        return outbox.Visible + outbox.Leased + ready;
    }

    /// <summary>Reads a queue's counts with passive declarations, declaring it again if it was deleted behind Cairn's back.</summary>
    private Task<T> CountInRabbitMqAsync<T>(QueueName queue, Func<IChannel, Task<T>> count, CancellationToken cancellationToken) =>
        WhileDeclaredAsync(queue, () => _connection.WithChannelAsync(count, cancellationToken), cancellationToken);

    /// <summary>
    /// Runs <paramref name="work"/> on a queue and its dead-letter queue, declared once per process. One deleted behind
    /// Cairn's back since (an operator clearing its dead letters) fails the work with NOT_FOUND: both are then declared
    /// again, as on their next use, and the work runs once more.
    /// </summary>
    private async Task<T> WhileDeclaredAsync<T>(QueueName queue, Func<Task<T>> work, CancellationToken cancellationToken)
    {
        await EnsureDeclaredAsync(queue, cancellationToken).ConfigureAwait(false);
        try
        {
            return await work().ConfigureAwait(false);
        }
        catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == 404)
        {
            _connection.Forget(AmqpName(queue));
            _connection.Forget(DeadLettersIn(queue));
            await EnsureDeclaredAsync(queue, cancellationToken).ConfigureAwait(false);
            return await work().ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public Task<int> PruneInboxAsync(string consumer, DateTimeOffset before, CancellationToken cancellationToken) => _backend.PruneInboxAsync(consumer, before, cancellationToken);

    /// <inheritdoc />
    public Task<bool> WasProcessedAsync(string consumer, MessageId messageId, CancellationToken cancellationToken) => _backend.WasProcessedAsync(consumer, messageId, cancellationToken);

    /// <summary>Stops the readers and closes the connection; the backend's broker is its owner's to dispose.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposing.IsCancellationRequested)
        {
            return;
        }

        await _disposing.CancelAsync().ConfigureAwait(false);
        try
        {
            await _sweeper.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        // A reader being started now is finished first and disposed with the others; a receive after this sees the
        // broker disposing and starts none.
        await _readerGate.WaitAsync().ConfigureAwait(false);
        try
        {
            foreach (var reader in _readers.Values.Concat(_retiredReaders.Keys))
            {
                await reader.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _readerGate.Release();
        }

        await _connection.DisposeAsync().ConfigureAwait(false);

        // After the connection: a publish of the held dead letters that waits for a blocked connection ends with it.
        await _deadLetteringRun.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _disposing.Dispose();
    }
}
