using System.Diagnostics;
using System.Threading.Channels;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Messaging.Consumers;

/// <summary>What a consumer has done since it started.</summary>
public sealed record ConsumerStatus(
    string Name,
    QueueName Queue,
    bool Running,
    int InFlight,
    long Handled,
    long Retried,
    long DeadLettered,
    long Duplicates,
    long LeasesLost);

/// <summary>
/// Consumes a queue: a receiver long-polls for up to <see cref="ConsumerOptions.EffectivePrefetch"/> leased messages,
/// and <see cref="ConsumerOptions.Concurrency"/> workers handle them. A handled message's effects commit with its
/// acknowledgement and inbox record; a failure is retried at once, then given back with a growing, jittered delay,
/// and the broker dead-letters it at the queue's maximum; a non-retryable failure is dead-lettered at once. Stopping
/// lets in-flight handlers finish until the stop's token fires, and gives back every message not started. With
/// <see cref="ConsumerOptions.ExtendLeaseWhileHandling"/>, one timer per consumer extends the lease of each message
/// it holds, handled or waiting for a worker, when half its lease is left.
/// </summary>
public sealed class QueueConsumer : IAsyncDisposable
{
    private readonly IMessageBroker _broker;
    private readonly Func<MessageHandlerContext, CancellationToken, ValueTask> _handler;
    private readonly IServiceProvider? _services;
    private readonly EventSerializer? _serializer;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly FlowRecorder? _flows;
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _abort = new();
    private readonly Channel<Received> _buffer = Channel.CreateUnbounded<Received>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly SemaphoreSlim _slots;
    private readonly Random _random = new();
    private readonly Lock _randomLock = new();
    private readonly Lock _renewalsLock = new();
    private readonly HashSet<LeaseRenewal> _renewals = [];
    private TaskCompletionSource _renewalWake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private DateTimeOffset _renewalWakeAt = DateTimeOffset.MaxValue;
    private Task _running = Task.CompletedTask;
    private TimeSpan _lease;

    /// <summary>
    /// The queue's allowed receives: a release on the last of them dead-letters the message. Read at start, and again
    /// on a failure once the last read is <see cref="QueueSettingsMaxAge"/> old, so a queue declared again with another
    /// count is reported rightly (the broker applies the count it stores; this is what the consumer counts and logs).
    /// </summary>
    private int _maxReceiveCount = int.MaxValue;

    /// <summary>When <see cref="_maxReceiveCount"/> was read (<see cref="TimeProvider"/> timestamp).</summary>
    private long _queueReadAt;

    /// <summary>How old the queue's settings may be when a failure asks for them.</summary>
    private static readonly TimeSpan QueueSettingsMaxAge = TimeSpan.FromSeconds(5);
    private int _inFlight;
    private long _handled, _retried, _deadLettered, _duplicates, _leasesLost;
    private int _started;
    private int _disposed;

    /// <summary>Held while a start sets the work going and while a disposal claims the consumer: one sees the other.</summary>
    private readonly Lock _lifecycle = new();
    private DateTimeOffset _nextInboxPrune = DateTimeOffset.MinValue;

    /// <summary>How often a consumer forgets old inbox records.</summary>
    private static readonly TimeSpan InboxPruneInterval = TimeSpan.FromHours(1);

    /// <summary>How long a stop whose time is up waits for cancelled handlers to give their messages back.</summary>
    private static readonly TimeSpan AbortGrace = TimeSpan.FromSeconds(2);

    /// <summary>Creates a consumer; <see cref="StartAsync"/> starts it.</summary>
    public QueueConsumer(
        IMessageBroker broker,
        ConsumerOptions options,
        Func<MessageHandlerContext, CancellationToken, ValueTask> handler,
        IServiceProvider? services = null,
        EventSerializer? serializer = null,
        ILogger<QueueConsumer>? logger = null,
        TimeProvider? timeProvider = null,
        FlowRecorder? flows = null)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handler);
        options.Validate();
        _broker = broker;
        Options = options;
        _handler = handler;
        _services = services;
        _serializer = serializer;
        _logger = logger ?? NullLogger<QueueConsumer>.Instance;
        _time = timeProvider ?? TimeProvider.System;
        _flows = flows;
        _slots = new SemaphoreSlim(options.EffectivePrefetch, options.EffectivePrefetch);
    }

    /// <summary>The consumer's settings.</summary>
    public ConsumerOptions Options { get; }

    /// <summary>What the consumer has done so far.</summary>
    public ConsumerStatus Status => new(
        Options.Name,
        Options.Queue,
        // Not once a stop is asked for: a stop that gave up on a handler ignoring its cancellation leaves the work
        // unfinished, yet the consumer receives and handles nothing more.
        Volatile.Read(ref _started) == 1 && !_stopping.IsCancellationRequested && !_running.IsCompleted,
        Volatile.Read(ref _inFlight),
        Interlocked.Read(ref _handled),
        Interlocked.Read(ref _retried),
        Interlocked.Read(ref _deadLettered),
        Interlocked.Read(ref _duplicates),
        Interlocked.Read(ref _leasesLost));

    /// <summary>How many handlings' leases the renewal loop keeps alive (for tests).</summary>
    internal int LeasesRenewed
    {
        get
        {
            lock (_renewalsLock)
            {
                return _renewals.Count;
            }
        }
    }

    /// <summary>Checks the queue exists, then starts receiving and handling.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException($"The consumer '{Options.Name}' is already started.");
        }

        QueueDefinition queue;
        try
        {
            queue = await _broker.GetQueueAsync(Options.Queue, cancellationToken).ConfigureAwait(false)
                ?? throw new QueueNotFoundException(Options.Queue);

            // A message given back past the queue's retention expires unreceived: neither handled nor dead-lettered.
            var backoff = Options.Retry.BackoffBeforeLastReceive(queue.MaxReceiveCount);
            if (backoff >= queue.Retention)
            {
                throw new InvalidMessageException(string.Create(
                    System.Globalization.CultureInfo.InvariantCulture,
                    $"The consumer '{Options.Name}' gives a message that keeps failing back for {backoff} in all before its last allowed receive ({queue.MaxReceiveCount}; Retry.InitialDelay {Options.Retry.InitialDelay}, MaxDelay {Options.Retry.MaxDelay}, BackoffFactor {Options.Retry.BackoffFactor}), which reaches the retention of queue '{queue.Name}' ({queue.Retention}): the message would expire, neither handled nor dead-lettered. Shorten the retry delays, lower the queue's MaxReceiveCount or lengthen its retention."));
            }
        }
        catch
        {
            // Not started: a start refused for a queue not declared yet may be tried again once it is.
            Volatile.Write(ref _started, 0);
            throw;
        }

        _lease = Options.Lease ?? queue.Lease;
        _maxReceiveCount = queue.MaxReceiveCount;
        _queueReadAt = _time.GetTimestamp();

        // A disposal while the queue was read has stopped nothing yet, or is disposing what the work would use: the
        // start then fails, and nothing runs.
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            var workers = new Task[Options.Concurrency];
            for (var i = 0; i < workers.Length; i++)
            {
                workers[i] = BackgroundWork.Start(WorkAsync);
            }

            var receiver = BackgroundWork.Start(ReceiveAsync);
            var work = Task.WhenAll([receiver, .. workers]);
            _running = Options.ExtendLeaseWhileHandling ? RenewWhileWorkingAsync(work) : work;
        }

        _logger.LogInformation("Consumer {Consumer} started on queue {Queue} (concurrency {Concurrency}, prefetch {Prefetch}).", Options.Name, Options.Queue, Options.Concurrency, Options.EffectivePrefetch);
    }

    private void RecordDuration(double seconds, string outcome) =>
        CairnDiagnostics.HandlerDuration.Record(seconds, new("consumer", Options.Name), new("outcome", outcome));

    /// <summary>The queue's allowed receives, read again when the last read is too old; the last value read when it cannot be.</summary>
    private async ValueTask<int> MaxReceiveCountAsync()
    {
        var readAt = Interlocked.Read(ref _queueReadAt);
        if (_time.GetElapsedTime(readAt) < QueueSettingsMaxAge || Interlocked.CompareExchange(ref _queueReadAt, _time.GetTimestamp(), readAt) != readAt)
        {
            return Volatile.Read(ref _maxReceiveCount);
        }

        try
        {
            if (await _broker.GetQueueAsync(Options.Queue, CancellationToken.None).ConfigureAwait(false) is { } queue)
            {
                Volatile.Write(ref _maxReceiveCount, queue.MaxReceiveCount);
            }
        }
        catch (Exception ex)
        {
            _logger.LogDebug(ex, "Consumer {Consumer} could not read queue {Queue}'s settings again; it keeps those it read before.", Options.Name, Options.Queue);
        }

        return Volatile.Read(ref _maxReceiveCount);
    }

    /// <summary>
    /// Stops receiving and gives back at once every message received but not started. In-flight handlers finish, unless
    /// <paramref name="cancellationToken"/> fires first: then they are cancelled, their messages given back, and the stop
    /// returns without waiting for a handler that ignores its cancellation (its lease runs out instead).
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken) =>
        // Disposed: stopped already, and its token sources may be disposed too.
        Volatile.Read(ref _disposed) != 0 ? Task.CompletedTask : StopRunningAsync(cancellationToken);

    private async Task StopRunningAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await _running.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await _abort.CancelAsync().ConfigureAwait(false);
            try
            {
                // Cancelled handlers give their messages back; a moment is enough for those that listen.
                await _running.WaitAsync(AbortGrace, _time, CancellationToken.None).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                _logger.LogWarning("Consumer {Consumer} stopped with {InFlight} handlers still running; their messages are delivered again when their leases run out.", Options.Name, Volatile.Read(ref _inFlight));
                return;
            }
        }

        _logger.LogInformation("Consumer {Consumer} stopped after handling {Handled} messages.", Options.Name, Interlocked.Read(ref _handled));
    }

    /// <summary>Stops at once: in-flight handlers are cancelled and their messages given back.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_lifecycle)
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
        }

        using (var now = new CancellationTokenSource())
        {
            await now.CancelAsync().ConfigureAwait(false);
            await StopRunningAsync(now.Token).ConfigureAwait(false);
        }

        if (_running.IsCompleted)
        {
            _stopping.Dispose();
            _abort.Dispose();
            _slots.Dispose();
        }
    }

    private async Task ReceiveAsync()
    {
        var failures = 0;
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                await _slots.WaitAsync(_stopping.Token).ConfigureAwait(false);
                var taken = 1;
                while (taken < Options.EffectivePrefetch && _slots.Wait(0))
                {
                    taken++;
                }

                IReadOnlyList<Delivery> deliveries;
                try
                {
                    deliveries = await _broker.ReceiveAsync(Options.Queue, new ReceiveOptions { MaxMessages = taken, Lease = _lease, Wait = Options.PollWait }, _stopping.Token).ConfigureAwait(false);
                    failures = 0;
                }
                catch (Exception ex) when (!_stopping.IsCancellationRequested)
                {
                    // Also a cancellation this consumer did not ask for (a client's own time-out): tried again, as any fault.
                    _slots.Release(taken);
                    failures++;
                    _logger.LogError(ex, "Consumer {Consumer} could not receive from {Queue}; retrying.", Options.Name, Options.Queue);
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 50 * Math.Pow(2, Math.Min(failures, 10)))), _time, _stopping.Token).ConfigureAwait(false);
                    continue;
                }

                if (deliveries.Count < taken)
                {
                    _slots.Release(taken - deliveries.Count);
                }

                foreach (var delivery in deliveries)
                {
                    // Renewed from now, not from when a worker takes it: with slow handlers a delivery may wait in the
                    // buffer longer than its lease, and a lease run out there hands the message to another consumer.
                    _buffer.Writer.TryWrite(new Received(delivery, Options.ExtendLeaseWhileHandling ? TrackLease(delivery) : null));
                }

                // After the batch is with the workers: a slow prune holds back the next receive, not this batch.
                await PruneInboxWhenDueAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (_stopping.IsCancellationRequested)
        {
            // Stopping: a receive or a prune cut off by the stop may fail as its transport does (a dropped connection)
            // rather than as a cancellation; nothing is lost, and the stop goes on.
            if (ex is not OperationCanceledException)
            {
                _logger.LogDebug(ex, "Consumer {Consumer}'s receive failed as it stopped.", Options.Name);
            }
        }
        finally
        {
            _buffer.Writer.TryComplete();
            await GiveBackUnstartedAsync().ConfigureAwait(false);
            await StopReceivingAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Tells the broker this consumer receives no more, so a transport that pushes messages ahead of receives gives back
    /// what it holds for this process to the consumers of other processes. The handlers still running keep their leases.
    /// </summary>
    private async Task StopReceivingAsync()
    {
        try
        {
            await _broker.StopReceivingAsync(Options.Queue, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Consumer {Consumer} could not tell the broker it stopped receiving from {Queue}; what the transport holds for this process is delivered again when its channel closes.", Options.Name, Options.Queue);
        }
    }

    /// <summary>On stop, gives back the messages received but not yet taken by a worker, without waiting for one.</summary>
    private async Task GiveBackUnstartedAsync()
    {
        while (_buffer.Reader.TryRead(out var received))
        {
            var delivery = received.Delivery;
            try
            {
                await GiveBackAsync(received).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                _logger.LogWarning(ex, "Consumer {Consumer} could not give back message {MessageId}; it is delivered again when its lease runs out.", Options.Name, delivery.Message.Id);
            }
            finally
            {
                _slots.Release();
            }
        }
    }

    /// <summary>About once an hour, and at the first receive, forgets inbox records older than the retention.</summary>
    private async Task PruneInboxWhenDueAsync()
    {
        var now = _time.GetUtcNow();
        if (!Options.UseInbox || now < _nextInboxPrune)
        {
            return;
        }

        _nextInboxPrune = now + InboxPruneInterval;
        try
        {
            var pruned = await _broker.PruneInboxAsync(Options.Name, now - Options.InboxRetention, _stopping.Token).ConfigureAwait(false);
            if (pruned > 0)
            {
                _logger.LogInformation("Consumer {Consumer} forgot {Count} inbox records older than {Retention}.", Options.Name, pruned, Options.InboxRetention);
            }
        }
        catch (Exception ex) when (!_stopping.IsCancellationRequested)
        {
            _logger.LogWarning(ex, "Consumer {Consumer} could not prune its inbox; it tries again within the hour.", Options.Name);
        }
    }

    private async Task WorkAsync()
    {
        await foreach (var received in _buffer.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            var delivery = received.Delivery;
            try
            {
                if (_stopping.IsCancellationRequested)
                {
                    // Received but not started: give it back now rather than leave it hidden until its lease runs out.
                    await GiveBackAsync(received).ConfigureAwait(false);
                    continue;
                }

                Interlocked.Increment(ref _inFlight);
                try
                {
                    await ProcessAsync(delivery, received.Renewal).ConfigureAwait(false);
                }
                finally
                {
                    Interlocked.Decrement(ref _inFlight);
                }
            }
            catch (Exception ex)
            {
                // A worker never dies: the message's lease runs out and it is delivered again.
                _logger.LogError(ex, "Consumer {Consumer} failed to settle message {MessageId}.", Options.Name, delivery.Message.Id);
            }
            finally
            {
                _slots.Release();
            }
        }
    }

    /// <summary>Gives back a delivery no worker started, once its lease is out of the renewal loop.</summary>
    private async Task GiveBackAsync(Received received)
    {
        if (received.Renewal is { } renewal)
        {
            await UntrackLeaseAsync(renewal).ConfigureAwait(false);
        }

        await SettleAsync(() => _broker.ReturnAsync(received.Delivery.Lease, CancellationToken.None), received.Delivery).ConfigureAwait(false);
    }

    private async Task ProcessAsync(Delivery delivery, LeaseRenewal? renewal)
    {
        var message = delivery.Message;
        using var activity = StartActivity(delivery);
        using var causation = MessageContext.Begin(message.CorrelationId, message.Id.ToString(), activity is null ? message.TraceParent : null);
        using var timeout = new CancellationTokenSource(Options.HandlerTimeout, _time);
        using var handling = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _abort.Token);
        try
        {
            if (renewal is not null && !BeginHandling(renewal, handling))
            {
                // Its lease ran out while it waited for a worker (a renewal failed): another consumer may hold it now.
                Interlocked.Increment(ref _leasesLost);
                _logger.LogWarning("Consumer {Consumer} lost the lease of message {MessageId} while it waited to be handled; the message's next delivery decides its fate.", Options.Name, message.Id);
                return;
            }

            // Not cancellable: a quick read, and a cancelled one would leave the delivery leased until its lease ran out.
            if (Options.UseInbox && await WasProcessedAsync(message).ConfigureAwait(false))
            {
                // Counted once settled, as every outcome is: a lost lease leaves the message to its other receiver.
                if (await SettleAsync(() => _broker.AcknowledgeAsync([delivery.Lease], CancellationToken.None), delivery).ConfigureAwait(false))
                {
                    Interlocked.Increment(ref _duplicates);
                }

                return;
            }

            for (var attempt = 0; ; attempt++)
            {
                var started = Stopwatch.GetTimestamp();
                var failure = await HandleOnceAsync(delivery, handling.Token).ConfigureAwait(false);
                var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
                if (failure is null)
                {
                    RecordDuration(elapsed, "ok");
                    return;
                }

                // The renewal found the lease gone and cancelled the handler: someone else holds the message now, so
                // neither retry nor settle it.
                var leaseGone = handling.IsCancellationRequested && !timeout.IsCancellationRequested && !_abort.IsCancellationRequested;
                if (failure is LeaseLostException || leaseGone)
                {
                    RecordDuration(elapsed, "lease_lost");
                    Interlocked.Increment(ref _leasesLost);
                    _logger.LogWarning("Consumer {Consumer} lost the lease of message {MessageId} before it could commit; the message's next delivery decides its fate.", Options.Name, message.Id);
                    return;
                }

                var timedOut = timeout.IsCancellationRequested && !_abort.IsCancellationRequested;
                if (timedOut && failure is OperationCanceledException)
                {
                    // The handler gave up as its time-out asked. A failure of its own, even one after the time-out fired,
                    // is kept: it decides whether a retry can help (a non-retryable one is dead-lettered).
                    failure = new HandlerTimeoutException(Options.Name, Options.HandlerTimeout);
                }

                activity?.AddException(failure);
                if (_abort.IsCancellationRequested)
                {
                    // Stopped, not failed: given back untried, so a stop never brings a message nearer its dead letter
                    // (nor a deployment's stops into the handlers' error rate).
                    RecordDuration(elapsed, "stopped");
                    await SettleAsync(() => _broker.ReturnAsync(delivery.Lease, CancellationToken.None), delivery).ConfigureAwait(false);
                    return;
                }

                RecordDuration(elapsed, "error");
                if (!Options.Retry.IsRetryable(failure))
                {
                    // What tracing back ends read a failed operation from: set only where the handling ends in its
                    // failure, not for an attempt an immediate retry follows, a stop, or a lease lost.
                    activity?.SetStatus(ActivityStatusCode.Error, failure.Message);
                    _logger.LogError(failure, "Consumer {Consumer} dead-letters message {MessageId} ({Type}): the failure cannot be retried.", Options.Name, message.Id, message.Type);
                    var settled = await SettleAsync(() => _broker.DeadLetterAsync(delivery.Lease, $"a non-retryable {failure.GetType().Name}: {failure.Message}", FailureInfo.From(failure), CancellationToken.None), delivery).ConfigureAwait(false);

                    // Counted once the broker has moved it: a lease lost meanwhile left it where it was.
                    _flows?.RecordFailed(Options.Name, message.Type, deadLettered: settled);
                    if (settled)
                    {
                        Interlocked.Increment(ref _deadLettered);
                    }

                    return;
                }

                Interlocked.Increment(ref _retried);
                if (attempt < Options.Retry.ImmediateRetries && !timedOut)
                {
                    _flows?.RecordFailed(Options.Name, message.Type, deadLettered: false);
                    CairnDiagnostics.MessagesRetried.Add(1, new KeyValuePair<string, object?>("queue", Options.Queue.Value));
                    continue;
                }

                // A release on the last allowed receive is dead-lettered by the broker.
                var maxReceiveCount = await MaxReceiveCountAsync().ConfigureAwait(false);
                var lastReceive = delivery.ReceiveCount >= maxReceiveCount;

                TimeSpan delay;
                lock (_randomLock)
                {
                    delay = Options.Retry.DelayAfter(delivery.ReceiveCount, _random);
                }

                if (lastReceive)
                {
                    _logger.LogError(failure, "Consumer {Consumer} failed on message {MessageId} ({Type}) on the last of its {MaxReceiveCount} allowed receives; it is dead-lettered.", Options.Name, message.Id, message.Type, maxReceiveCount);
                }
                else
                {
                    _logger.LogWarning(failure, "Consumer {Consumer} failed on message {MessageId} ({Type}), receive {ReceiveCount}; it is given back for {Delay}.", Options.Name, message.Id, message.Type, delivery.ReceiveCount, delay);
                }

                activity?.SetStatus(ActivityStatusCode.Error, failure.Message);
                var deadLettered = await SettleAsync(() => _broker.ReleaseAsync(delivery.Lease, delay, FailureInfo.From(failure), CancellationToken.None), delivery).ConfigureAwait(false) && lastReceive;
                _flows?.RecordFailed(Options.Name, message.Type, deadLettered);
                if (deadLettered)
                {
                    Interlocked.Increment(ref _deadLettered);
                }

                return;
            }
        }
        finally
        {
            if (renewal is not null)
            {
                await UntrackLeaseAsync(renewal).ConfigureAwait(false);
            }
        }
    }

    /// <summary>What a committed transaction produced, for the flow map.</summary>
    private static IEnumerable<(FlowOutputKind, string, string)> Outputs(MessageTransaction transaction)
    {
        foreach (var append in transaction.Appends)
        {
            foreach (var part in append.Streams)
            {
                foreach (var e in part.Events)
                {
                    yield return (FlowOutputKind.Event, e.Type, part.Stream.Category);
                }
            }
        }

        foreach (var (queue, message) in transaction.Sends)
        {
            yield return (FlowOutputKind.Command, message.Type, queue.Value);
        }

        foreach (var (topic, message) in transaction.Publishes)
        {
            yield return (FlowOutputKind.Publication, message.Type, topic.Value);
        }
    }

    /// <summary>
    /// Whether the inbox has the message as handled. Only a shortcut: the commit's inbox record refuses a repeat anyway,
    /// so a look that fails (the store busy for a moment) is logged and the message handled, rather than left leased,
    /// unhandled, until its lease runs out.
    /// </summary>
    private async Task<bool> WasProcessedAsync(Message message)
    {
        try
        {
            return await _broker.WasProcessedAsync(Options.Name, message.Id, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Consumer {Consumer} could not look message {MessageId} up in its inbox; it is handled, and its commit refuses it if it was handled before.", Options.Name, message.Id);
            return false;
        }
    }

    /// <summary>Runs the handler once and commits its effects with the acknowledgement; returns the failure, if any.</summary>
    private async Task<Exception?> HandleOnceAsync(Delivery delivery, CancellationToken cancellationToken)
    {
        var scope = _services?.CreateAsyncScope();
        try
        {
            var started = Stopwatch.GetTimestamp();
            var context = new MessageHandlerContext(delivery, Options.Name, scope?.ServiceProvider ?? EmptyServices.Instance, _serializer);
            await _handler(context, cancellationToken).ConfigureAwait(false);

            // A handler that returned after its token was cancelled (a stop whose time is up, its time-out, its lease
            // lost) may have stopped half-way: nothing it gathered is committed, and its message is dealt with as a
            // cancelled handling's is.
            cancellationToken.ThrowIfCancellationRequested();
            context.Transaction.Acknowledge(delivery.Lease);
            if (Options.UseInbox)
            {
                context.Transaction.MarkProcessed(Options.Name, delivery);
            }

            // Not cancellable: once the handler is done, its effects and the acknowledgement commit or fail together.
            var result = await _broker.CommitAsync(context.Transaction, CancellationToken.None).ConfigureAwait(false);
            if (result.AlreadyProcessed)
            {
                Interlocked.Increment(ref _duplicates);
            }
            else
            {
                _flows?.RecordHandled(Options.Name, delivery.Message.Type, Stopwatch.GetElapsedTime(started), Outputs(context.Transaction));
                try
                {
                    context.Committed();
                }
                catch (Exception ex)
                {
                    // The effects are committed and the message acknowledged: bookkeeping that fails afterwards must
                    // not turn the handling into a failure to retry.
                    _logger.LogWarning(ex, "Consumer {Consumer} committed message {MessageId}, but an action run after the commit failed.", Options.Name, delivery.Message.Id);
                }

                // Counted here, not for every handler that returned: a commit the inbox refused as a repeat (another
                // copy of the message committed while this one ran) is a duplicate, not a second handling.
                Interlocked.Increment(ref _handled);
            }

            return null;
        }
        catch (Exception ex)
        {
            return ex;
        }
        finally
        {
            if (scope is { } s)
            {
                try
                {
                    await s.DisposeAsync().ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    // A scoped service that fails to dispose must not take the attempt's outcome with it: thrown from
                    // here it replaced the handler's failure (no retry, no release, no dead letter) or made a committed
                    // message look unsettled.
                    _logger.LogWarning(ex, "Consumer {Consumer}: disposing the services of the handling of message {MessageId} failed.", Options.Name, delivery.Message.Id);
                }
            }
        }
    }

    /// <summary>
    /// Runs the consumer's one lease-renewal loop beside its workers, until they are done or a stop's time is up (then
    /// a handler that ignores its cancellation loses its lease, and its message is delivered again).
    /// </summary>
    private async Task RenewWhileWorkingAsync(Task work)
    {
        using var done = CancellationTokenSource.CreateLinkedTokenSource(_abort.Token);
        var renewing = BackgroundWork.Start(() => RenewLeasesAsync(done.Token));
        try
        {
            await work.ConfigureAwait(false);
        }
        finally
        {
            await done.CancelAsync().ConfigureAwait(false);
            await renewing.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Hands a delivery just received to the renewal loop, waking it when this lease is due before the loop's next
    /// wake. Per message, that is all the renewal costs: no timer, no token source, no task.
    /// </summary>
    private LeaseRenewal TrackLease(Delivery delivery)
    {
        // Counted from when the lease ends: a receive that waited on a busy store may return a lease already part spent.
        var renewal = new LeaseRenewal(delivery, delivery.LeaseExpiresAt - (_lease / 2));
        TaskCompletionSource? wake = null;
        lock (_renewalsLock)
        {
            _renewals.Add(renewal);
            if (renewal.Due < _renewalWakeAt)
            {
                _renewalWakeAt = renewal.Due;
                wake = _renewalWake;
            }
        }

        wake?.TrySetResult();
        return renewal;
    }

    /// <summary>
    /// Gives a waiting delivery's renewal the handling it may cancel when the lease is lost; false when the lease was
    /// lost while the delivery waited, and the message must not be handled.
    /// </summary>
    private bool BeginHandling(LeaseRenewal renewal, CancellationTokenSource handling)
    {
        lock (_renewalsLock)
        {
            if (renewal.LostWhileWaiting)
            {
                return false;
            }

            renewal.Handling = handling;
            return true;
        }
    }

    /// <summary>
    /// Takes a handled or given-back delivery out of the renewal loop; when an extension of its lease is under way, waits for it,
    /// so the handling's token source outlives any use the renewal makes of it.
    /// </summary>
    private ValueTask UntrackLeaseAsync(LeaseRenewal renewal)
    {
        lock (_renewalsLock)
        {
            renewal.Finished = true;
            _renewals.Remove(renewal);
            if (!renewal.Renewing)
            {
                return ValueTask.CompletedTask;
            }

            renewal.Settled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return new ValueTask(renewal.Settled.Task);
        }
    }

    /// <summary>
    /// The consumer's one renewal loop: sleeps on one timer until the earliest lease in hand is half spent (or until a
    /// delivery due earlier arrives), then extends every lease that is due, each in its own call, without waiting for
    /// them before it sleeps again.
    /// </summary>
    private async Task RenewLeasesAsync(CancellationToken stop)
    {
        using var timer = _time.CreateTimer(static state => ((QueueConsumer)state!).WakeRenewals(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        var due = new List<LeaseRenewal>();
        while (!stop.IsCancellationRequested)
        {
            Task woken;
            var next = DateTimeOffset.MaxValue;
            lock (_renewalsLock)
            {
                var now = _time.GetUtcNow();
                _renewals.RemoveWhere(static renewal => !renewal.Renewing && renewal.Handling is { IsCancellationRequested: true });
                foreach (var renewal in _renewals)
                {
                    if (renewal.Renewing)
                    {
                        continue;
                    }

                    if (renewal.Due <= now)
                    {
                        renewal.Renewing = true;
                        due.Add(renewal);
                    }
                    else if (renewal.Due < next)
                    {
                        next = renewal.Due;
                    }
                }

                _renewalWake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _renewalWakeAt = next;
                woken = _renewalWake.Task;
            }

            foreach (var renewal in due)
            {
                _ = RenewAsync(renewal, stop);
            }

            due.Clear();

            // Timed from now, not from before the extensions started: some brokers extend synchronously.
            var wait = next == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : Max(next - _time.GetUtcNow(), TimeSpan.Zero);
            timer.Change(wait, Timeout.InfiniteTimeSpan);
            await woken.WaitAsync(stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private void WakeRenewals()
    {
        TaskCompletionSource wake;
        lock (_renewalsLock)
        {
            wake = _renewalWake;
        }

        wake.TrySetResult();
    }

    /// <summary>
    /// Extends one lease and schedules its next renewal. A handling that has ended (finished, timed out, aborted) is
    /// not extended: a handler past its timeout must let its lease run out, so the message is delivered again.
    /// </summary>
    private async Task RenewAsync(LeaseRenewal renewal, CancellationToken stop)
    {
        DateTimeOffset? next = null;
        try
        {
            bool ended;
            lock (_renewalsLock)
            {
                ended = renewal.Finished || renewal.Handling is { IsCancellationRequested: true };
            }

            if (ended)
            {
                return;
            }

            var lost = false;
            try
            {
                // Timed from before the call: the extended lease runs out no sooner than a full lease from then.
                var asked = _time.GetUtcNow();
                await _broker.ExtendLeaseAsync(renewal.Delivery.Lease, _lease, stop).ConfigureAwait(false);
                next = asked + _lease - (_lease / 2);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // The consumer has stopped renewing.
            }
            catch (LeaseLostException)
            {
                lost = true;
            }
            catch (Exception ex)
            {
                // A passing failure (a busy file, say): try again soon rather than let the lease run out.
                next = _time.GetUtcNow() + Min(_lease / 10, TimeSpan.FromSeconds(1));
                _logger.LogWarning(ex, "Consumer {Consumer} could not extend the lease {Lease}; trying again.", Options.Name, renewal.Delivery.Lease);
            }

            CancellationTokenSource? cancel = null;
            lock (_renewalsLock)
            {
                if (lost && !renewal.Finished)
                {
                    // A delivery still waiting is never handled; a handler running is stopped, as its commit would be
                    // refused anyway.
                    renewal.LostWhileWaiting = renewal.Handling is null;
                    cancel = renewal.Handling;
                }
            }

            if (cancel is not null)
            {
                // Someone else holds the message now. The handling waits for this renewal before it disposes its
                // token source.
                await cancel.CancelAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Consumer {Consumer} could not renew the lease of message {MessageId}.", Options.Name, renewal.Delivery.Message.Id);
        }
        finally
        {
            TaskCompletionSource? settled, wake = null;
            lock (_renewalsLock)
            {
                renewal.Renewing = false;
                settled = renewal.Settled;
                if (next is not { } at)
                {
                    _renewals.Remove(renewal);
                }
                else if (!renewal.Finished)
                {
                    renewal.Due = at;
                    if (at < _renewalWakeAt)
                    {
                        _renewalWakeAt = at;
                        wake = _renewalWake;
                    }
                }
            }

            settled?.TrySetResult();
            wake?.TrySetResult();
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>Settles a delivery; false when its lease was lost meanwhile.</summary>
    private async Task<bool> SettleAsync(Func<Task> settle, Delivery delivery)
    {
        try
        {
            await settle().ConfigureAwait(false);
            return true;
        }
        catch (LeaseLostException)
        {
            Interlocked.Increment(ref _leasesLost);
            _logger.LogWarning("Consumer {Consumer} could not settle message {MessageId}: its lease was lost.", Options.Name, delivery.Message.Id);
            return false;
        }
    }

    private Activity? StartActivity(Delivery delivery)
    {
        if (!CairnDiagnostics.MessagingSource.HasListeners())
        {
            // Nothing to trace to: skip the span's name and the parse of the producer's context.
            return null;
        }

        var message = delivery.Message;
        ActivityContext.TryParse(message.TraceParent, null, out var producer);
        var activity = CairnDiagnostics.MessagingSource.StartActivity(
            $"process {Options.Queue}",
            ActivityKind.Consumer,
            producer,
            links: producer == default ? null : [new ActivityLink(producer)]);
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "cairn");
            activity.SetTag("messaging.destination.name", Options.Queue.Value);
            activity.SetTag("messaging.message.id", message.Id.ToString());
            activity.SetTag("messaging.consumer.group.name", Options.Name);
            activity.SetTag("cairn.receive_count", delivery.ReceiveCount);
        }

        return activity;
    }

    /// <summary>A delivery received, with the lease renewal that goes with it when leases are extended.</summary>
    private readonly record struct Received(Delivery Delivery, LeaseRenewal? Renewal);

    /// <summary>A delivery held, waiting or being handled, as the renewal loop sees it; its mutable parts are guarded by the consumer's renewal lock.</summary>
    private sealed class LeaseRenewal(Delivery delivery, DateTimeOffset due)
    {
        public Delivery Delivery { get; } = delivery;

        /// <summary>The handling the renewal cancels when the lease is lost; null while the delivery waits for a worker.</summary>
        public CancellationTokenSource? Handling { get; set; }

        /// <summary>The lease was lost before a worker took the delivery.</summary>
        public bool LostWhileWaiting { get; set; }

        /// <summary>When the lease is next to be extended.</summary>
        public DateTimeOffset Due { get; set; } = due;

        /// <summary>An extension is under way.</summary>
        public bool Renewing { get; set; }

        /// <summary>The handling is over: never renewed again.</summary>
        public bool Finished { get; set; }

        /// <summary>Completed when an extension under way at the end of the handling is over.</summary>
        public TaskCompletionSource? Settled { get; set; }
    }

    private sealed class EmptyServices : IServiceProvider
    {
        public static readonly EmptyServices Instance = new();

        public object? GetService(Type serviceType) => null;
    }
}
