using System.Collections.Concurrent;
using System.Diagnostics;
using Cairn.Diagnostics;
using Cairn.Messaging;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Cairn.RabbitMQ;

/// <summary>
/// Publishes what the backend's outbox holds to RabbitMQ: one loop per outbox queue takes a batch (a receive under a
/// lease, so two relays in two processes never publish the same message at once), publishes every message with
/// publisher confirms, and acknowledges in the outbox only what RabbitMQ confirmed. The loop does not wait for a
/// batch's confirms before it takes and publishes the next: batches stay in flight together as long as their
/// outstanding publishes fit below the point where RabbitMQ.Client throttles the channel, and each is settled in the
/// outbox on its own once its confirms are in. What failed is returned to the outbox untried; the loop then lets the
/// batches in flight settle and pauses, doubling its pause up to <see cref="RabbitMqOptions.MaxReconnectDelay"/>. A
/// crash between a confirm and the outbox acknowledgement publishes the message twice; a consumer's inbox makes the
/// repeat harmless. Delayed sends wait in the outbox until due, so RabbitMQ only sees messages ready for delivery.
/// </summary>
public sealed class RabbitMqOutboxRelay : IHostedService, IAsyncDisposable, IHealthReporting
{
    private readonly RabbitMqMessageBroker _broker;
    private readonly bool _ownsBroker;
    private readonly ConcurrentDictionary<QueueName, Loop> _loops = new();
    private readonly PublishWindow _window;

    /// <summary>
    /// Per outbox, how many of its dead letters RabbitMQ cannot take, as the last listing of them found, and when
    /// (<see cref="Environment.TickCount64"/>): while the outbox holds that many dead letters, none can be put back, and
    /// a rescan need not list them all again.
    /// </summary>
    private readonly ConcurrentDictionary<QueueName, (long Count, long ListedAt)> _unpublishable = new();
    private CancellationTokenSource? _stopping;
    private Task? _scanner;
    private long _published;
    private long _leaseExtensions;
    private long _returned;

    /// <summary>A relay for <paramref name="broker"/>'s outbox.</summary>
    public RabbitMqOutboxRelay(RabbitMqMessageBroker broker)
        : this(broker, ownsBroker: false)
    {
    }

    /// <summary>A relay that, registered by <c>UseRabbitMq</c>, closes the broker's connection when the host stops.</summary>
    internal RabbitMqOutboxRelay(RabbitMqMessageBroker broker, bool ownsBroker)
    {
        ArgumentNullException.ThrowIfNull(broker);
        _broker = broker;
        _ownsBroker = ownsBroker;
        var options = broker.Options;
        _window = new PublishWindow(options.MaxOutstandingConfirms - (options.MaxOutstandingConfirms * options.ConfirmThrottlingPercentage / 100));
    }

    /// <summary>How many messages this relay has published and seen confirmed.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>How many messages this relay has returned to the outbox untried, since RabbitMQ did not confirm them.</summary>
    public long Returned => Interlocked.Read(ref _returned);

    /// <summary>Starts a loop for every outbox queue in the backend, and for each queue declared from now on.</summary>
    /// <exception cref="InvalidOperationException">It runs already (through the task): a second scanner would outlive the stop.</exception>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_stopping is not null)
        {
            return Task.FromException(new InvalidOperationException("The outbox relay is already running; stop it before starting it again."));
        }

        // A loop made while the last stop ran (a commit's or a declaration's handler that was already running) ended at
        // once: taken over, it would keep its queue from being relayed.
        foreach (var (queue, loop) in _loops)
        {
            if (loop.Task.IsCompleted)
            {
                _loops.TryRemove(new KeyValuePair<QueueName, Loop>(queue, loop));
            }
        }

        _stopping = new CancellationTokenSource();
        _broker.QueueDeclared += OnQueueDeclared;
        _broker.OutboxWritten += OnOutboxWritten;
        _scanner = BackgroundWork.Start(() => ScanAsync(_stopping.Token));
        CairnDiagnostics.TrackOutboxes(this, ReadOutboxes);
        return Task.CompletedTask;
    }

    /// <summary>Stops every loop; a batch being published is finished or returned to the outbox.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopping is null)
        {
            return;
        }

        _broker.QueueDeclared -= OnQueueDeclared;
        _broker.OutboxWritten -= OnOutboxWritten;
        CairnDiagnostics.UntrackOutboxes(this);
        await _stopping.CancelAsync().ConfigureAwait(false);
        var all = Task.WhenAll(_loops.Values.Select(l => l.Task).Append(_scanner ?? Task.CompletedTask));
        var stoppingSince = Stopwatch.GetTimestamp();
        try
        {
            while (!all.IsCompleted)
            {
                // The loops finish the batches in flight; while RabbitMQ blocks publishing their confirms would not
                // come before the alarm clears, and confirms held back otherwise (a quorum queue without its majority)
                // may not come at all: the connection is aborted, the publishes fail and go back to the outbox.
                if (_broker.Connection.PublishingBlocked is not null)
                {
                    await _broker.Connection.AbortBlockedPublishingAsync().ConfigureAwait(false);
                }
                else if (Stopwatch.GetElapsedTime(stoppingSince) > StopGrace)
                {
                    await _broker.Connection.AbortPublishingAsync().ConfigureAwait(false);
                }

                await Task.WhenAny(all, Task.Delay(TimeSpan.FromMilliseconds(250), cancellationToken)).ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
        catch (OperationCanceledException)
        {
        }

        _loops.Clear();
        _stopping.Dispose();
        _stopping = null;
        if (_ownsBroker)
        {
            // The hosted consumers stopped before the relay (hosts stop services in reverse order).
            await _broker.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>How long a stop waits for the confirms of the batches in flight before it aborts the publishing connection.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(5);

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);

    /// <summary>
    /// Unhealthy when RabbitMQ cannot be reached or a connection is down (recovering); degraded when RabbitMQ has
    /// blocked publishing (a memory or disk alarm), when the relay is not running, or when the oldest due or in-flight
    /// message of an outbox has waited longer than <see cref="CairnHealthOptions.MaxOutboxAge"/>.
    /// </summary>
    public async Task<HealthCheckResult> CheckHealthAsync(CairnHealthOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        var at = $"RabbitMQ at {string.Join(", ", _broker.Options.Nodes().Select(n => n.Host.Contains(':', StringComparison.Ordinal) ? $"[{n.Host}]:{n.Port}" : $"{n.Host}:{n.Port}"))}";
        if (_stopping is null)
        {
            // Not connecting for it: a relay never started would never close the connection.
            return HealthCheckResult.Degraded($"the outbox relay for {at} is not running");
        }

        try
        {
            var connection = await _broker.Connection.GetAsync(cancellationToken).ConfigureAwait(false);
            if (!connection.IsOpen)
            {
                return HealthCheckResult.Unhealthy($"the consuming connection to {at} is down and recovering ({connection.CloseReason?.ReplyText ?? "closed"})");
            }

            // Not opened for the check: a process that has published nothing has no publishing connection.
            if (_broker.Connection.OpenedPublishing is { IsOpen: false } publishing)
            {
                return HealthCheckResult.Unhealthy($"the publishing connection to {at} is down and recovering ({publishing.CloseReason?.ReplyText ?? "closed"})");
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"{at} cannot be reached ({ex.Message})", ex);
        }

        var degraded = new List<string>();
        long waiting = 0;
        try
        {
            foreach (var queue in _loops.Keys.OrderBy(q => q.Value, StringComparer.Ordinal))
            {
                var stats = await _broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), cancellationToken).ConfigureAwait(false);
                waiting += stats.Visible + stats.Leased;
                if (stats.OldestAge is { } age && age > options.MaxOutboxAge)
                {
                    degraded.Add($"the outbox of queue '{queue}' has held its oldest message {HealthChecking.Seconds(age)}, over {HealthChecking.Seconds(options.MaxOutboxAge)}");
                }

                // What RabbitMQ cannot take is dead-lettered in the outbox and never delivered: only an operator can act.
                if (stats.DeadLettered > 0)
                {
                    degraded.Add($"the outbox of queue '{queue}' holds {stats.DeadLettered} message(s) dead-lettered there, which RabbitMQ cannot take (too large, or headers past its frame) and are never delivered: list them in the backend's queue '{RabbitMqMessageBroker.OutboxOf(queue)}'");
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"the outbox cannot be read ({ex.Message})", ex);
        }

        // Commands still commit, their sends waiting in the outbox: degraded, not unhealthy, so readiness holds.
        if (_broker.Connection.PublishingBlocked is { } reason)
        {
            degraded.Insert(0, $"{at} has blocked publishing ({reason}, one of its resource alarms): sends wait in the outbox, and consumers go on");
        }

        var data = new Dictionary<string, object> { ["outbox_waiting"] = waiting, ["published"] = Published, ["returned"] = Returned };
        return degraded.Count == 0
            ? HealthCheckResult.Healthy($"connected to {at}; {waiting} outbox message(s) due or in flight", data)
            : HealthCheckResult.Degraded(string.Join("; ", degraded), data: data);
    }

    private void OnQueueDeclared(QueueName queue) => Ensure(queue);

    /// <summary>The outbox of each queue the relay publishes, for the <c>cairn.messaging.relay.*</c> gauges.</summary>
    private List<QueueStats> ReadOutboxes() =>
        CairnDiagnostics.ReadForGauge(
            _loops.Keys.ToList(),
            async (queue, cancellationToken) => await _broker.Backend.GetStatsAsync(RabbitMqMessageBroker.OutboxOf(queue), cancellationToken).ConfigureAwait(false) with { Queue = queue });

    private void OnOutboxWritten(IReadOnlyCollection<QueueName> queues)
    {
        // A queue's loop takes what is written from the outbox (its receive is woken by the write); a new queue gets one.
        foreach (var queue in queues)
        {
            Ensure(queue);
        }
    }

    /// <summary>The queue's loop, made when it has none (internal for tests: a late handler of a stopped relay).</summary>
    internal Loop Ensure(QueueName queue)
    {
        var token = _stopping?.Token ?? new CancellationToken(true);
        return _loops.GetOrAdd(queue, q => new Loop(this, q, token));
    }

    private async Task ScanAsync(CancellationToken cancellationToken)
    {
        var pause = _broker.Options.ReconnectDelay;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                foreach (var queue in await _broker.ListQueuesAsync(cancellationToken).ConfigureAwait(false))
                {
                    // A FIFO queue is the backend's own, with no outbox to relay.
                    if (!queue.Fifo)
                    {
                        Ensure(queue.Name);
                        await RedriveOutboxAsync(queue.Name, cancellationToken).ConfigureAwait(false);
                    }
                }

                await Task.Delay(_broker.Options.RelayRescanInterval, cancellationToken).ConfigureAwait(false);
                pause = _broker.Options.ReconnectDelay;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                _broker.Logger.LogWarning(ex, "The outbox relay could not list the outbox queues; trying again in {Pause}.", pause);
                await PauseAsync(ref pause, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Puts back what the backend dead-lettered in a queue's outbox. An outbox is a backend queue with its queue's
    /// settings, so a row whose relay leases kept running out (relays that died before RabbitMQ confirmed it, or confirms
    /// that waited out a resource alarm) reaches the queue's <see cref="QueueDefinition.MaxReceiveCount"/> and is
    /// dead-lettered there, where no consumer would ever see it. Published again, it arrives at least once.
    /// </summary>
    private async Task RedriveOutboxAsync(QueueName queue, CancellationToken cancellationToken)
    {
        var outbox = RabbitMqMessageBroker.OutboxOf(queue);
        var deadLettered = (await _broker.Backend.GetStatsAsync(outbox, cancellationToken).ConfigureAwait(false)).DeadLettered;
        if (deadLettered == 0)
        {
            _unpublishable.TryRemove(queue, out _);
            return;
        }

        // As many dead letters as the last listing found RabbitMQ cannot take: the same ones, most likely. Listed again
        // at least once a minute all the same, in case an operator purged one as another one came.
        var now = Environment.TickCount64;
        if (_unpublishable.TryGetValue(queue, out var known) && known.Count == deadLettered && now - known.ListedAt < UnpublishableRelistMilliseconds)
        {
            return;
        }

        // Not those RabbitMQ cannot take: published again, they would only be dead-lettered again. All pages, however
        // many of those lie ahead of one to put back.
        var redriven = 0;
        var unpublishable = 0L;
        var after = 0L;
        while (true)
        {
            var letters = await _broker.Backend.ListDeadLettersAsync(outbox, after, 1000, cancellationToken).ConfigureAwait(false);
            if (letters.Count == 0)
            {
                break;
            }

            after = letters[^1].Sequence;
            var again = letters.Where(l => !l.Reason.StartsWith(UnpublishableReason, StringComparison.Ordinal)).Select(l => l.Message.Id).ToList();
            unpublishable += letters.Count - again.Count;
            if (again.Count > 0)
            {
                redriven += await _broker.Backend.RedriveAsync(outbox, new RedriveRequest { MessageIds = again }, cancellationToken).ConfigureAwait(false);
            }
        }

        _unpublishable[queue] = (unpublishable, now);
        if (redriven > 0)
        {
            _broker.Logger.LogWarning("The outbox of queue {Queue} held {Count} message(s) its backend had dead-lettered after their relay leases ran out; they are published again.", queue, redriven);
            Ensure(queue);
        }
    }

    private Task PauseAsync(ref TimeSpan pause, CancellationToken cancellationToken)
    {
        var current = pause;
        pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, _broker.Options.MaxReconnectDelay.Ticks));
        return Task.Delay(current, cancellationToken).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Takes up to <paramref name="max"/> messages from <paramref name="queue"/>'s outbox, under the relay's lease (<see cref="RabbitMqOptions.RelayLease"/>).</summary>
    private Task<IReadOnlyList<Delivery>> TakeAsync(QueueName queue, int max, CancellationToken cancellationToken) =>
        _broker.Backend.ReceiveAsync(
            RabbitMqMessageBroker.OutboxOf(queue),
            new ReceiveOptions { MaxMessages = max, Wait = _broker.Options.RelayPollWait, Lease = _broker.Options.RelayLease },
            cancellationToken);

    /// <summary>
    /// Extends a batch's outbox leases every half <see cref="RabbitMqOptions.RelayLease"/> until its publishes are
    /// settled: confirms held up past the lease (a resource alarm) would otherwise let this relay, or another, take the
    /// rows again and publish them once per lease. A lease that cannot be extended (lost, or the backend unreachable)
    /// ends the keeping; what is lost comes back as for any relay that died.
    /// </summary>
    private async Task KeepLeasesAsync(IReadOnlyList<Delivery> deliveries, Task published, CancellationToken cancellationToken)
    {
        var lease = _broker.Options.RelayLease;
        try
        {
            while (await Task.WhenAny(published, Task.Delay(lease / 2, cancellationToken)).ConfigureAwait(false) != published)
            {
                foreach (var delivery in deliveries)
                {
                    await _broker.Backend.ExtendLeaseAsync(delivery.Lease, lease, cancellationToken).ConfigureAwait(false);
                }

                Interlocked.Increment(ref _leaseExtensions);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            _broker.Logger.LogWarning(ex, "The outbox relay could not keep the leases of a batch awaiting RabbitMQ's confirms; it may be published again.");
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>For tests: how many times the relay extended a batch's outbox leases while it awaited confirms.</summary>
    internal long LeaseExtensions => Interlocked.Read(ref _leaseExtensions);

    /// <summary>
    /// Why RabbitMQ cannot take a message at all, or null: its headers past the content-header frame (RabbitMQ closes
    /// the whole publishing connection) or its data past <see cref="RabbitMqOptions.MaxMessageSize"/> (it closes the
    /// publishing channel), either of which would fail every publish in flight, for every queue, on every try. A
    /// commit refuses such messages; a FIFO queue's dead letter redriven to a queue in RabbitMQ, or a queue declared
    /// before the limits were checked, can still put one in an outbox.
    /// </summary>
    private string? Unpublishable(Message message) =>
        AmqpMessageCodec.HeaderFault(message)
        ?? (message.Data.Length > _broker.Options.MaxMessageSize
            ? $"Message {message.Id} has {message.Data.Length} bytes of data, over what RabbitMQ takes (RabbitMqOptions.MaxMessageSize, {_broker.Options.MaxMessageSize})."
            : null);

    /// <summary>What a message RabbitMQ cannot take fails its publish with: it is dead-lettered in its outbox, not tried again.</summary>
    private sealed class UnpublishableException(string fault) : Exception(fault);

    /// <summary>How long a rescan may go by an outbox's count of dead letters RabbitMQ cannot take without listing them again.</summary>
    private const long UnpublishableRelistMilliseconds = 60_000;

    /// <summary>The reason of an outbox dead letter RabbitMQ cannot take, which the relay does not put back.</summary>
    internal const string UnpublishableReason = "RabbitMQ cannot take it: ";

    /// <summary>
    /// Publishes a batch without awaiting its confirms: one task per message, in the batch's order, each completing
    /// when RabbitMQ confirms it. A failure to reach the channel fails every message of the batch.
    /// </summary>
    private async Task<Task[]> PublishAsync(QueueName queue, IReadOnlyList<Delivery> deliveries, CancellationToken cancellationToken)
    {
        await _broker.EnsureDeclaredAsync(queue, cancellationToken).ConfigureAwait(false);
        var channel = await _broker.Connection.PublisherAsync(cancellationToken).ConfigureAwait(false);
        var routingKey = _broker.AmqpName(queue);
        var publishes = new Task[deliveries.Count];
        for (var i = 0; i < deliveries.Count; i++)
        {
            var message = deliveries[i].Message;
            if (Unpublishable(message) is { } fault)
            {
                publishes[i] = Task.FromException(new UnpublishableException(fault));
                continue;
            }

            try
            {
                // A FIFO queue's dead letter redriven here keeps its last failure, the time it was first received and its
                // redrive count, and its retention starts again from now, as a redrive within RabbitMQ does: the backend
                // gave the row a new retention, but kept its enqueue time, which RabbitMQ's receive would find past the
                // retention. A row the rescan put back in its outbox (RedriveOutboxAsync) is a redriven dead letter too.
                var delivery = deliveries[i];
                var redriven = delivery.Redrives > 0;
                var properties = RabbitMqMessageBroker.PropertiesFor(message, redriven ? _broker.Time.GetUtcNow() : delivery.EnqueuedAt);
                AmqpMessageCodec.SetFailure(properties.Headers!, delivery.LastFailure);
                if (redriven)
                {
                    properties.Headers![AmqpMessageCodec.FirstReceivedAt] = AmqpMessageCodec.Format(delivery.FirstReceivedAt);
                    properties.Headers[AmqpMessageCodec.Redrives] = (long)delivery.Redrives;
                }
                publishes[i] = channel.BasicPublishAsync("", routingKey, true, properties, message.Data, CancellationToken.None).AsTask();
            }
            catch (Exception ex)
            {
                publishes[i] = Task.FromException(ex);
            }
        }

        return publishes;
    }

    /// <summary>
    /// Awaits a published batch's confirms, acknowledges in the outbox what RabbitMQ confirmed, and returns the rest
    /// to the outbox untried. Never throws; returns how many messages failed (the whole batch when the outbox could
    /// not be settled).
    /// </summary>
    private async Task<int> SettleAsync(QueueName queue, IReadOnlyList<Delivery> deliveries, Task[]? publishes, Exception? publishFailure, long publishedAt)
    {
        var tag = new KeyValuePair<string, object?>("queue", queue.Value);
        var confirmed = new List<LeaseToken>(deliveries.Count);
        var failed = new List<Delivery>();
        var unpublishable = new List<(Delivery Delivery, string Fault)>();
        if (publishFailure is not null)
        {
            _broker.Logger.LogWarning(publishFailure, "The outbox relay could not publish to {Queue}; the messages stay in the outbox.", queue);
            failed.AddRange(deliveries);
        }
        else
        {
            using var settled = new CancellationTokenSource();
            var all = Task.WhenAll(publishes!).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            var keeping = KeepLeasesAsync(deliveries, all, settled.Token);
            await AwaitConfirmsAsync(queue, all).ConfigureAwait(false);
            for (var i = 0; i < deliveries.Count; i++)
            {
                try
                {
                    await publishes![i].ConfigureAwait(false);
                    confirmed.Add(deliveries[i].Lease);
                }
                catch (UnpublishableException ex)
                {
                    unpublishable.Add((deliveries[i], ex.Message));
                }
                catch (Exception ex)
                {
                    if (RabbitMqMessageBroker.IsUnroutable(ex))
                    {
                        // The queue was deleted behind Cairn's back: declare it again before the next try.
                        _broker.QueueFoundMissing(queue);
                    }

                    if (failed.Count == 0)
                    {
                        _broker.Logger.LogWarning(ex, "RabbitMQ did not confirm a publish to {Queue}; the message stays in the outbox.", queue);
                    }

                    failed.Add(deliveries[i]);
                }
            }

            CairnDiagnostics.RelayConfirmDuration.Record(Stopwatch.GetElapsedTime(publishedAt).TotalSeconds, tag);
            await settled.CancelAsync().ConfigureAwait(false);
            await keeping.ConfigureAwait(false);
        }

        try
        {
            if (confirmed.Count > 0)
            {
                await _broker.Backend.AcknowledgeAsync(confirmed, CancellationToken.None).ConfigureAwait(false);
                Interlocked.Add(ref _published, confirmed.Count);
                CairnDiagnostics.RelayPublished.Add(confirmed.Count, tag);
            }

            foreach (var delivery in failed)
            {
                await _broker.Backend.ReturnAsync(delivery.Lease, CancellationToken.None).ConfigureAwait(false);
                Interlocked.Increment(ref _returned);
                CairnDiagnostics.RelayReturned.Add(1, tag);
            }

            foreach (var (delivery, fault) in unpublishable)
            {
                _broker.Logger.LogError("The outbox relay cannot publish message {MessageId} to {Queue}: {Fault} It is dead-lettered in the queue's outbox.", delivery.Message.Id, queue, fault);
                await _broker.Backend.DeadLetterAsync(delivery.Lease, UnpublishableReason + fault, null, CancellationToken.None).ConfigureAwait(false);
            }

            return failed.Count;
        }
        catch (Exception ex)
        {
            // What is neither acknowledged nor returned comes back when its outbox lease runs out: published again, the
            // inbox absorbs the repeat.
            _broker.Logger.LogWarning(ex, "The outbox relay could not settle a batch of {Queue} in the outbox; its lease returns what is left.", queue);
            return deliveries.Count;
        }
    }

    /// <summary>
    /// Waits for a batch's confirms, and past <see cref="RabbitMqOptions.ConfirmTimeout"/> (while RabbitMQ does not block
    /// publishing, when waiting is right) aborts the publishing connection, which fails them: they go back to the
    /// outbox rather than hold the loop, its leases and the window for ever.
    /// </summary>
    private async Task AwaitConfirmsAsync(QueueName queue, Task confirms)
    {
        var timeout = _broker.Options.ConfirmTimeout;
        while (true)
        {
            try
            {
                // WaitAsync drops its timer once the confirms are in: a batch leaves no timer behind for the timeout.
                await confirms.WaitAsync(timeout).ConfigureAwait(false);
                return;
            }
            catch (TimeoutException) when (_broker.Connection.PublishingBlocked is not null)
            {
                // A resource alarm: the confirms come when it clears.
            }
            catch (TimeoutException)
            {
                _broker.Logger.LogWarning("RabbitMQ did not confirm the publishes to {Queue} within {Timeout}; the publishing connection is aborted and the messages stay in the outbox.", queue, timeout);
                await _broker.Connection.AbortPublishingAsync().ConfigureAwait(false);
                await confirms.ConfigureAwait(false);
                return;
            }
        }
    }

    /// <summary>
    /// One outbox queue's loop. It keeps several batches in flight: while the confirms of the batches it published are
    /// outstanding, it takes and publishes the next, as long as the relay's <see cref="PublishWindow"/> has room; each batch
    /// is settled in the outbox on its own as soon as its confirms are in. After a batch with a failure it lets the
    /// batches in flight settle, then pauses.
    /// </summary>
    internal sealed class Loop
    {
        private readonly RabbitMqOutboxRelay _relay;
        private readonly QueueName _queue;
        private readonly List<Task<int>> _inFlight = [];

        /// <summary>A batch of this loop settled with a failure since the last pause: nothing more is published before it.</summary>
        private volatile bool _failed;

        /// <summary>A batch of this loop settled whole: the pauses start again from the shortest.</summary>
        private volatile bool _succeeded;

        /// <summary>How many of the window's publishes this loop's batches in flight hold.</summary>
        private int _holding;

        public Loop(RabbitMqOutboxRelay relay, QueueName queue, CancellationToken cancellationToken)
        {
            _relay = relay;
            _queue = queue;
            Task = BackgroundWork.Start(() => RunAsync(cancellationToken));
        }

        public Task Task { get; }

        private async Task RunAsync(CancellationToken cancellationToken)
        {
            await Task.Yield();
            var options = _relay._broker.Options;
            var window = _relay._window;
            var pause = options.ReconnectDelay;
            try
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    try
                    {
                        if (!await RelayAsync(window, options.RelayBatchSize, cancellationToken).ConfigureAwait(false))
                        {
                            // Not at each publish: a message refused again would otherwise be tried after the shortest
                            // pause every time.
                            if (_succeeded)
                            {
                                _succeeded = false;
                                pause = options.ReconnectDelay;
                            }

                            continue;
                        }
                    }
                    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception ex)
                    {
                        _relay._broker.Logger.LogWarning(ex, "The outbox relay of {Queue} failed; trying again in {Pause}.", _queue, pause);
                    }

                    // Whatever failed is back in the outbox once the batches in flight have settled: only then pause.
                    await Task.WhenAll(_inFlight).ConfigureAwait(false);
                    _inFlight.Clear();
                    _failed = false;
                    _succeeded = false;
                    var current = pause;
                    pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, options.MaxReconnectDelay.Ticks));
                    try
                    {
                        // The whole pause, not cut short by commits: while RabbitMQ is away, each commit woke the loop
                        // to try again at once, and a steady stream of them made the back-off no pause at all.
                        // What they wrote waits in the outbox, and goes with the next try.
                        await Task.Delay(current, cancellationToken).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }
            finally
            {
                // A batch being published is finished: confirmed messages acknowledged, the others returned.
                await Task.WhenAll(_inFlight).ConfigureAwait(false);
            }
        }

        /// <summary>Takes and publishes one batch, once the window has room; true when a settled batch failed.</summary>
        private async Task<bool> RelayAsync(PublishWindow window, int batchSize, CancellationToken cancellationToken)
        {
            if (Reap())
            {
                return true;
            }

            // A batch is taken once a quarter of the window is free, so the next batch is read from the outbox while
            // the confirms of most of the window are still outstanding; it is as large as the room allows.
            // With other queues to relay, one loop holds at most three quarters of the window: a queue whose confirms
            // are slow or never come (until ConfirmTimeout) leaves the others room.
            var wanted = Math.Min(batchSize, window.Size);
            var share = _relay._loops.Count > 1 ? Math.Max(1, window.Size * 3 / 4) : window.Size;
            var room = Math.Min(window.Room(out var freed), Math.Max(0, share - Volatile.Read(ref _holding)));
            if (room < Math.Min(wanted, Math.Max(1, window.Size / 4)))
            {
                // A batch of any loop settling makes room; one of this loop's settling may also bring a failure.
                await Task.WhenAny(_inFlight.Append(freed)).WaitAsync(cancellationToken).ConfigureAwait(false);
                return Reap();
            }

            var deliveries = await _relay.TakeAsync(_queue, Math.Min(wanted, room), cancellationToken).ConfigureAwait(false);
            if (deliveries.Count == 0)
            {
                return Reap();
            }

            if (_failed)
            {
                // A batch failed while this take waited, and what it returned may be among these: published now, it
                // would be tried again at once, skipping the pause. Given back untried; the loop pauses first.
                foreach (var delivery in deliveries)
                {
                    await _relay._broker.Backend.ReturnAsync(delivery.Lease, CancellationToken.None).ConfigureAwait(false);
                }

                return true;
            }

            window.Take(deliveries.Count);
            Interlocked.Add(ref _holding, deliveries.Count);
            var publishedAt = Stopwatch.GetTimestamp();
            Task[]? publishes = null;
            Exception? failure = null;
            try
            {
                publishes = await _relay.PublishAsync(_queue, deliveries, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                failure = ex;
            }

            _inFlight.Add(SettleAndFreeAsync(window, deliveries, publishes, failure, publishedAt));
            return false;
        }

        private async Task<int> SettleAndFreeAsync(PublishWindow window, IReadOnlyList<Delivery> deliveries, Task[]? publishes, Exception? failure, long publishedAt)
        {
            var failed = deliveries.Count;
            try
            {
                failed = await _relay.SettleAsync(_queue, deliveries, publishes, failure, publishedAt).ConfigureAwait(false);
                return failed;
            }
            finally
            {
                // Before the window makes room, so a take it lets go on sees the failure.
                if (failed > 0)
                {
                    _failed = true;
                }
                else
                {
                    _succeeded = true;
                }

                Interlocked.Add(ref _holding, -deliveries.Count);
                window.Free(deliveries.Count);
            }
        }

        /// <summary>Forgets the settled batches; true when one of them failed.</summary>
        private bool Reap()
        {
            var failed = false;
            for (var i = _inFlight.Count - 1; i >= 0; i--)
            {
                if (_inFlight[i].IsCompleted)
                {
                    failed |= !_inFlight[i].IsCompletedSuccessfully || _inFlight[i].Result > 0;
                    _inFlight.RemoveAt(i);
                }
            }

            return failed;
        }
    }

    /// <summary>
    /// The publishes of every loop of the relay whose confirms are outstanding, bounded below the point at which
    /// RabbitMQ.Client throttles the publishing channel (<see cref="RabbitMqOptions.ConfirmThrottlingPercentage"/> of
    /// <see cref="RabbitMqOptions.MaxOutstandingConfirms"/>): past it, each publish is delayed by up to a second.
    /// </summary>
    private sealed class PublishWindow(int size)
    {
        private readonly object _lock = new();
        private int _used;
        private TaskCompletionSource _freed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Size { get; } = Math.Max(1, size);

        /// <summary>How many more publishes fit now, and a task that completes when some are freed.</summary>
        public int Room(out Task freed)
        {
            lock (_lock)
            {
                freed = _freed.Task;
                return Math.Max(0, Size - _used);
            }
        }

        /// <summary>Counts publishes in; a loop may overshoot by what another loop took since it looked.</summary>
        public void Take(int count)
        {
            lock (_lock)
            {
                _used += count;
            }
        }

        public void Free(int count)
        {
            TaskCompletionSource freed;
            lock (_lock)
            {
                _used -= count;
                freed = _freed;
                _freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            freed.TrySetResult();
        }
    }
}
