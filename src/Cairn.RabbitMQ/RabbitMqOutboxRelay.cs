using System.Collections.Concurrent;
using Cairn.Messaging;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Cairn.RabbitMQ;

/// <summary>
/// Publishes what the backend's outbox holds to RabbitMQ: one loop per outbox queue takes a batch (a receive under a
/// lease, so two relays in two processes never publish the same message at once), publishes every message with
/// publisher confirms, and acknowledges in the outbox only what RabbitMQ confirmed. What failed is returned to the
/// outbox untried, and the loop pauses, doubling its pause up to <see cref="RabbitMqOptions.MaxReconnectDelay"/>. A
/// crash between a confirm and the outbox acknowledgement publishes the message twice; a consumer's inbox makes the
/// repeat harmless. Delayed sends wait in the outbox until due, so RabbitMQ only sees messages ready for delivery.
/// </summary>
public sealed class RabbitMqOutboxRelay : IHostedService, IAsyncDisposable
{
    private readonly RabbitMqMessageBroker _broker;
    private readonly bool _ownsBroker;
    private readonly ConcurrentDictionary<QueueName, Loop> _loops = new();
    private CancellationTokenSource? _stopping;
    private Task? _scanner;
    private long _published;

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
    }

    /// <summary>How many messages this relay has published and seen confirmed.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Starts a loop for every outbox queue in the backend, and for each queue declared from now on.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _stopping = new CancellationTokenSource();
        _broker.QueueDeclared += OnQueueDeclared;
        _broker.OutboxWritten += OnOutboxWritten;
        _scanner = ScanAsync(_stopping.Token);
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
        await _stopping.CancelAsync().ConfigureAwait(false);
        var tasks = _loops.Values.Select(l => l.Task).Append(_scanner ?? Task.CompletedTask);
        try
        {
            await Task.WhenAll(tasks).WaitAsync(cancellationToken).ConfigureAwait(false);
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

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None).ConfigureAwait(false);

    private void OnQueueDeclared(QueueName queue) => Ensure(queue);

    private void OnOutboxWritten(IReadOnlyCollection<QueueName> queues)
    {
        foreach (var queue in queues)
        {
            Ensure(queue).Wake();
        }
    }

    private Loop Ensure(QueueName queue)
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
                    Ensure(queue.Name);
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

    private Task PauseAsync(ref TimeSpan pause, CancellationToken cancellationToken)
    {
        var current = pause;
        pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, _broker.Options.MaxReconnectDelay.Ticks));
        return Task.Delay(current, cancellationToken).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Publishes one batch; returns how many failed.</summary>
    private async Task<int> RelayBatchAsync(QueueName queue, CancellationToken cancellationToken)
    {
        var options = _broker.Options;
        var deliveries = await _broker.Backend.ReceiveAsync(
            RabbitMqMessageBroker.OutboxOf(queue),
            new ReceiveOptions { MaxMessages = options.RelayBatchSize, Wait = options.RelayPollWait },
            cancellationToken).ConfigureAwait(false);
        if (deliveries.Count == 0)
        {
            return 0;
        }

        var failed = new List<Delivery>();
        var confirmed = new List<LeaseToken>(deliveries.Count);
        try
        {
            await _broker.EnsureDeclaredAsync(queue, cancellationToken).ConfigureAwait(false);
            var channel = await _broker.Connection.PublisherAsync(cancellationToken).ConfigureAwait(false);
            var publishes = deliveries
                .Select(d => channel.BasicPublishAsync("", _broker.AmqpName(queue), true, RabbitMqMessageBroker.PropertiesFor(d.Message, d.EnqueuedAt), d.Message.Data, CancellationToken.None).AsTask())
                .ToList();
            for (var i = 0; i < publishes.Count; i++)
            {
                try
                {
                    await publishes[i].ConfigureAwait(false);
                    confirmed.Add(deliveries[i].Lease);
                }
                catch (Exception ex)
                {
                    if (RabbitMqMessageBroker.IsUnroutable(ex))
                    {
                        // The queue was deleted behind Cairn's back: declare it again before the next try.
                        _broker.Connection.Forget(_broker.AmqpName(queue));
                    }

                    if (failed.Count == 0)
                    {
                        _broker.Logger.LogWarning(ex, "RabbitMQ did not confirm a publish to {Queue}; the message stays in the outbox.", queue);
                    }

                    failed.Add(deliveries[i]);
                }
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            _broker.Logger.LogWarning(ex, "The outbox relay could not publish to {Queue}; the messages stay in the outbox.", queue);
            failed = [.. deliveries.Where(d => !confirmed.Contains(d.Lease))];
        }

        if (confirmed.Count > 0)
        {
            await _broker.Backend.AcknowledgeAsync(confirmed, CancellationToken.None).ConfigureAwait(false);
            Interlocked.Add(ref _published, confirmed.Count);
        }

        foreach (var delivery in failed)
        {
            await _broker.Backend.ReturnAsync(delivery.Lease, CancellationToken.None).ConfigureAwait(false);
        }

        return failed.Count;
    }

    private sealed class Loop
    {
        private readonly RabbitMqOutboxRelay _relay;
        private readonly QueueName _queue;
        private readonly SemaphoreSlim _wake = new(0, 1);

        public Loop(RabbitMqOutboxRelay relay, QueueName queue, CancellationToken cancellationToken)
        {
            _relay = relay;
            _queue = queue;
            Task = RunAsync(cancellationToken);
        }

        public Task Task { get; }

        public void Wake()
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }

        private async Task RunAsync(CancellationToken cancellationToken)
        {
            await Task.Yield();
            var options = _relay._broker.Options;
            var pause = options.ReconnectDelay;
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    var failed = await _relay.RelayBatchAsync(_queue, cancellationToken).ConfigureAwait(false);
                    if (failed == 0)
                    {
                        pause = options.ReconnectDelay;
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

                var current = pause;
                pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, options.MaxReconnectDelay.Ticks));
                try
                {
                    await _wake.WaitAsync(current, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
