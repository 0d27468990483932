using System.Collections.Concurrent;
using Cairn.Messaging;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Cairn.RabbitMQ;

public sealed partial class RabbitMqMessageBroker
{
    private readonly ConcurrentDictionary<QueueName, QueueReader> _readers = new();
    private readonly SemaphoreSlim _readerGate = new(1, 1);

    /// <summary>
    /// Readers retired by <see cref="StopReceivingAsync"/>, with when (<see cref="Environment.TickCount64"/>), whose
    /// channels stay open for the leases taken on them.
    /// </summary>
    private readonly ConcurrentDictionary<QueueReader, long> _retiredReaders = new();

    /// <summary>Deliveries a receive holds to dead-letter (<see cref="DeadLetterOnReceiveAsync"/>), by the order they were held.</summary>
    private readonly ConcurrentDictionary<long, HeldDeadLetter> _heldDeadLetters = new();

    private long _nextHeldDeadLetter;

    /// <summary>1 while the held deliveries are being dead-lettered, by <see cref="_deadLetteringRun"/>.</summary>
    private int _deadLettering;

    private Task _deadLetteringRun = Task.CompletedTask;
    private readonly ConcurrentDictionary<long, HeldLease> _leases = new();
    private readonly Task _sweeper;

    /// <summary>
    /// The last lease sequence issued. It starts at a random point of a 2⁶¹ range, so the tokens of two broker instances
    /// (two hosts in one process, or one built again) do not coincide, and a token of one never settles a delivery the
    /// other holds: a token names no channel, only the queue, this sequence and the receive count.
    /// </summary>
    private long _nextLease = Random.Shared.NextInt64(1L << 40, 1L << 61);

    /// <summary>A delivery this process holds under a lease: the RabbitMQ delivery it stands for, until settled or expired.</summary>
    private sealed record HeldLease(QueueReader Reader, BufferedDelivery Buffered, Delivery Delivery, QueueDefinition Queue, DateTimeOffset ReceivedAt)
    {
        public DateTimeOffset ExpiresAt { get; set; } = Delivery.LeaseExpiresAt;

        public bool Current => Buffered.Generation == Reader.Generation;
    }

    /// <summary>
    /// Leases up to <see cref="ReceiveOptions.MaxMessages"/> deliveries that RabbitMQ pushed to this process's reader of
    /// the queue (started on the first receive, with <see cref="RabbitMqOptions.Prefetch"/>). A delivery past its queue's
    /// retention is acknowledged and dropped; one whose lease ran out on its last allowed receive is dead-lettered.
    /// </summary>
    public async Task<IReadOnlyList<Delivery>> ReceiveAsync(QueueName queue, ReceiveOptions options, CancellationToken cancellationToken)
    {
        MessagingNames.RequirePresent(queue.Value, "queue");
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();

        // Refused, not answered empty at once by a disposed reader: a receive loop would spin on a dead broker.
        ObjectDisposedException.ThrowIf(_disposing.IsCancellationRequested, this);
        var definition = await RequireQueueAsync(queue, cancellationToken).ConfigureAwait(false);
        if (definition.Fifo)
        {
            return await _backend.ReceiveAsync(queue, options, cancellationToken).ConfigureAwait(false);
        }

        var reader = await ReaderAsync(queue, cancellationToken).ConfigureAwait(false);
        var deliveries = new List<Delivery>();
        var waitUntil = _time.GetUtcNow() + options.Wait;
        while (true)
        {
            while (deliveries.Count < options.MaxMessages && reader.TryTake(out var buffered))
            {
                Delivery? delivery;
                try
                {
                    delivery = await LeaseAsync(reader, buffered, definition, options.Lease ?? definition.Lease).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Not leased: RabbitMQ delivers it again once its channel closes or recovers.
                    _logger.LogWarning(ex, "Could not lease a delivery from {Queue}.", queue);
                    continue;
                }

                if (delivery is not null)
                {
                    deliveries.Add(delivery);
                }
            }

            var left = waitUntil - _time.GetUtcNow();
            if (deliveries.Count > 0 || left <= TimeSpan.Zero)
            {
                return deliveries;
            }

            if (!await reader.WaitAsync(left, cancellationToken).ConfigureAwait(false))
            {
                if (reader.Dead is null || _disposing.IsCancellationRequested)
                {
                    return deliveries;
                }

                // The rest of the wait on a reader that gets deliveries.
                reader = await ReaderAsync(queue, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Retires this process's reader of the queue, if it has one: its consumer is cancelled and the deliveries it holds
    /// unreceived are given back, so RabbitMQ delivers them to the consumers of other processes (each counts a receive,
    /// as any delivery given back does). Its channel stays open until the leases taken on it are settled or run out; a
    /// receive afterwards starts a new reader.
    /// </summary>
    public async Task StopReceivingAsync(QueueName queue, CancellationToken cancellationToken)
    {
        if (_disposing.IsCancellationRequested)
        {
            return;
        }

        QueueReader? reader;
        await _readerGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_disposing.IsCancellationRequested || !_readers.TryRemove(queue, out reader))
            {
                return;
            }

            _retiredReaders[reader] = Environment.TickCount64;
        }
        finally
        {
            _readerGate.Release();
        }

        await reader.RetireAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Disposes the retired readers no lease or held dead letter needs any more.</summary>
    private async Task DisposeSettledRetiredReadersAsync()
    {
        foreach (var (reader, retiredAt) in _retiredReaders)
        {
            // Not at once: a receive that took a delivery just before the retirement may not have recorded its lease yet.
            if (Environment.TickCount64 - retiredAt < 5_000
                || _leases.Values.Any(l => l.Reader == reader) || _heldDeadLetters.Values.Any(p => p.Held.Reader == reader))
            {
                continue;
            }

            if (_retiredReaders.TryRemove(reader, out _))
            {
                await reader.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// A publish to the queue came back unroutable: the queue was deleted behind Cairn's back. It is declared again
    /// before its next use, and its reader, whose consumer RabbitMQ cancels (possibly much later, on a busy broker), is
    /// replaced now.
    /// </summary>
    internal void QueueFoundMissing(QueueName queue)
    {
        _connection.Forget(AmqpName(queue));
        if (_readers.TryGetValue(queue, out var reader))
        {
            reader.Die("its queue was found missing in RabbitMQ");
        }
    }

    /// <summary>For tests: the channel of the queue's reader in this process, if it has one.</summary>
    internal IChannel? ReaderChannelOf(QueueName queue) => _readers.TryGetValue(queue, out var reader) ? reader.Channel : null;

    /// <summary>For tests: the queue's reader's own generation count (see <see cref="QueueReader.ChannelGenerations"/>).</summary>
    internal long ChannelGenerationsOf(QueueName queue) => _readers.TryGetValue(queue, out var reader) ? reader.ChannelGenerations : -1;

    /// <summary>For tests: why the queue's reader gets no more deliveries, if it has one that does not.</summary>
    internal string? ReaderDeadOf(QueueName queue) => _readers.TryGetValue(queue, out var reader) ? reader.Dead : null;

    /// <summary>For tests: how many deliveries wait in the queue's reader to be received.</summary>
    internal int BufferedOf(QueueName queue) => _readers.TryGetValue(queue, out var reader) ? reader.Buffered : 0;

    /// <summary>For tests: how many acknowledgements with <c>multiple</c> the queue's reader wrote.</summary>
    internal long MultipleAcknowledgementsOf(QueueName queue) => _readers.TryGetValue(queue, out var reader) ? reader.MultipleAcknowledgements : 0;

    /// <summary>The queue's reader in this process, started on first use, and started again in place of a dead one.</summary>
    private async Task<QueueReader> ReaderAsync(QueueName queue, CancellationToken cancellationToken)
    {
        if (_readers.TryGetValue(queue, out var reader) && reader.Dead is null)
        {
            return reader;
        }

        // Starting a reader talks to RabbitMQ under the gate, which the broker's dispose waits for: disposing cancels it,
        // so a dispose during an outage does not wait out the client's time-outs.
        ObjectDisposedException.ThrowIf(_disposing.IsCancellationRequested, this);
        using var starting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
        try
        {
            return await StartReaderAsync(queue, starting.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_disposing.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new ObjectDisposedException(GetType().FullName);
        }
    }

    /// <summary>Starts the queue's reader, or a new one in place of a dead one, under the reader gate.</summary>
    private async Task<QueueReader> StartReaderAsync(QueueName queue, CancellationToken cancellationToken)
    {
        await _readerGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposing.IsCancellationRequested, this);
            QueueReader? reader;
            if (_readers.TryGetValue(queue, out reader) && reader.Dead is { } why)
            {
                _logger.LogWarning("The reader of {Queue} stopped getting deliveries ({Reason}); a new one takes its place.", queue, why);
                _readers.TryRemove(queue, out _);

                // Its leases can no longer be settled; their messages come again. The queue may be gone: declared anew.
                await reader.DisposeAsync().ConfigureAwait(false);
                _connection.Forget(AmqpName(queue));
                _connection.Forget(DeadLettersIn(queue));
                reader = null;
            }

            if (reader is null)
            {
                await EnsureDeclaredAsync(queue, cancellationToken).ConfigureAwait(false);
                try
                {
                    reader = await QueueReader.StartAsync(_connection, AmqpName(queue), cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException && _connection.ConsumingIsOpen)
                {
                    // RabbitMQ refused the consume with the connection up: most often the queue, declared a moment ago,
                    // was being deleted (a quorum queue goes some time after its deletion is answered). Declared anew,
                    // once more; a refusal for another reason fails again, and the receive with it.
                    _logger.LogWarning(ex, "Consuming {Queue} was refused; it is declared again and consumed once more.", queue);
                    _connection.Forget(AmqpName(queue));
                    await EnsureDeclaredAsync(queue, cancellationToken).ConfigureAwait(false);
                    reader = await QueueReader.StartAsync(_connection, AmqpName(queue), cancellationToken).ConfigureAwait(false);
                }

                _readers[queue] = reader;
            }

            return reader;
        }
        finally
        {
            _readerGate.Release();
        }
    }

    private async Task<Delivery?> LeaseAsync(QueueReader reader, BufferedDelivery buffered, QueueDefinition definition, TimeSpan lease)
    {
        var headers = buffered.Properties.Headers;
        var now = _time.GetUtcNow();
        // A message from outside Cairn has no enqueued-at, and may have no time (CloudEvents' is optional): both count
        // from its first receive here. (Its own time says when its event happened, not how long it has waited here.)
        var firstReceivedAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.FirstReceivedAt) ?? now;
        var message = AmqpMessageCodec.ToMessage(buffered.Properties, buffered.Body, firstReceivedAt, out var unreadable);
        var earlier = AmqpMessageCodec.GetCount(headers, AmqpMessageCodec.Receives);
        var redeliveries = AmqpMessageCodec.GetCount(headers, AmqpMessageCodec.DeliveryCount);
        var receiveCount = (int)Math.Min(int.MaxValue, (long)earlier + redeliveries + 1);
        var enqueuedAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.EnqueuedAt) ?? firstReceivedAt;
        var delivery = message is null
            ? null
            : new Delivery(message, new LeaseToken(definition.Name, Interlocked.Increment(ref _nextLease), receiveCount))
            {
                ReceiveCount = receiveCount,
                FirstReceivedAt = firstReceivedAt,
                EnqueuedAt = enqueuedAt,
                LeaseExpiresAt = now + lease,
                PreviousLeaseExpired = buffered.Redelivered || AmqpMessageCodec.GetString(headers, AmqpMessageCodec.LeaseExpired) == "true",
                LastFailure = AmqpMessageCodec.GetFailure(headers),
                Redrives = AmqpMessageCodec.GetCount(headers, AmqpMessageCodec.Redrives),
            };
        if (delivery is null)
        {
            var foreign = new HeldLease(reader, buffered, new Delivery(new Message(default, "unreadable", "", now, "application/octet-stream", buffered.Body), new LeaseToken(definition.Name, 0, 0)), definition, now);
            await DeadLetterOnReceiveAsync(foreign, $"the message is not a CloudEvent in AMQP's binary mode that Cairn can read: {unreadable}", null, receiveCount).ConfigureAwait(false);
            return null;
        }

        var held = new HeldLease(reader, buffered, delivery, definition, now);
        if (now - enqueuedAt > definition.Retention)
        {
            await SafelyAsync(() => reader.AcknowledgeAsync(buffered), "drop a message past its retention").ConfigureAwait(false);
            return null;
        }

        if (receiveCount > definition.MaxReceiveCount)
        {
            // Not received now, only found over its limit: its last receive is the one whose lease ran out, when a copy
            // given back says when (a redelivery after a closed channel does not). One released as often as a limit
            // lowered since allows was received the maximum times, as the embedded brokers say of it.
            var lastReceivedAt = AmqpMessageCodec.GetTime(headers, AmqpMessageCodec.LastReceivedAt) ?? firstReceivedAt;
            var reason = delivery.PreviousLeaseExpired
                ? $"its lease ran out on the last of its {definition.MaxReceiveCount} allowed receives"
                : $"it was received the maximum of {definition.MaxReceiveCount} times";
            await DeadLetterOnReceiveAsync(held with { ReceivedAt = lastReceivedAt }, reason, delivery.LastFailure, receiveCount - 1).ConfigureAwait(false);
            return null;
        }

        _leases[delivery.Lease.Sequence] = held;
        return delivery;
    }

    /// <summary>Takes a lease out of the held ones, or fails with <see cref="LeaseLostException"/>.</summary>
    private HeldLease Take(LeaseToken lease)
    {
        // Compared before it is removed: a token of another instance may carry the sequence of one of this process's leases.
        if (_leases.TryGetValue(lease.Sequence, out var held) && held.Delivery.Lease == lease && _leases.TryRemove(new KeyValuePair<long, HeldLease>(lease.Sequence, held)))
        {
            if (held.Current)
            {
                return held;
            }

            throw new LeaseLostException(lease, "the RabbitMQ channel it was delivered on has closed; RabbitMQ delivers the message again");
        }

        throw new LeaseLostException(lease, "it is not held: it was settled, or its lease ran out and the message was given back to RabbitMQ");
    }

    private HeldLease Peek(LeaseToken lease) =>
        _leases.TryGetValue(lease.Sequence, out var held) && held.Delivery.Lease == lease && held.Current
            ? held
            : throw new LeaseLostException(lease, "it is not held: it was settled, or its lease ran out, or its channel closed");

    /// <summary>Acknowledges RabbitMQ deliveries: every lease is checked before any is acknowledged.</summary>
    public async Task AcknowledgeAsync(IReadOnlyList<LeaseToken> leases, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(leases);
        CheckDistinct(leases);
        var kept = new List<LeaseToken>();
        var delivered = new List<LeaseToken>();
        foreach (var lease in leases)
        {
            (await IsKeptAsync(lease.Queue, cancellationToken).ConfigureAwait(false) ? kept : delivered).Add(lease);
        }

        foreach (var lease in delivered)
        {
            Peek(lease);
        }

        // The deliveries are taken before the backend settles the FIFO leases, so none can run out in between; should
        // one run out before it is taken, or the backend refuse, those taken are held again, and the call has settled
        // nothing.
        var taken = new List<HeldLease>(delivered.Count);
        try
        {
            foreach (var lease in delivered)
            {
                taken.Add(Take(lease));
            }

            if (kept.Count > 0)
            {
                await _backend.AcknowledgeAsync(kept, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            foreach (var held in taken)
            {
                _leases[held.Delivery.Lease.Sequence] = held;
            }

            throw;
        }

        // All asked for at once, so the reader writes them together.
        await Task.WhenAll(taken.Select(held => AcknowledgeDeliveryAsync(held, cancellationToken))).ConfigureAwait(false);
    }

    /// <summary>
    /// Acknowledges a held delivery on its reader's channel. A channel that closed, or a reader replaced, since the lease
    /// was checked means the lease is lost: RabbitMQ delivers the message again.
    /// </summary>
    private static async Task AcknowledgeDeliveryAsync(HeldLease held, CancellationToken cancellationToken)
    {
        try
        {
            await held.Reader.AcknowledgeAsync(held.Buffered).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or global::RabbitMQ.Client.Exceptions.AlreadyClosedException or System.Threading.Channels.ChannelClosedException)
        {
            throw new LeaseLostException(held.Delivery.Lease, "the RabbitMQ channel it was delivered on closed while it was settled; RabbitMQ delivers the message again");
        }
    }

    private static void CheckDistinct(IReadOnlyList<LeaseToken> leases)
    {
        if (leases.Distinct().Count() != leases.Count)
        {
            throw new InvalidMessageException("The same lease is acknowledged twice in one call.");
        }
    }

    /// <summary>
    /// Gives a delivery back after <paramref name="delay"/>: a copy carrying the receive count and the failure is
    /// published (to the queue, or to the delay queue of that delay, which dead-letters it back when its time is up),
    /// confirmed, and only then is the delivery acknowledged. On its last allowed receive it is dead-lettered instead.
    /// </summary>
    public async Task ReleaseAsync(LeaseToken lease, TimeSpan delay, FailureInfo? failure, CancellationToken cancellationToken)
    {
        if (delay < TimeSpan.Zero || delay > TimeSpan.FromDays(365))
        {
            throw new InvalidMessageException($"The release delay is {delay}; it must be between 0 and 365 days.");
        }

        if (await IsKeptAsync(lease.Queue, cancellationToken).ConfigureAwait(false))
        {
            await _backend.ReleaseAsync(lease, delay, failure, cancellationToken).ConfigureAwait(false);
            return;
        }

        // The queue's settings now, as the embedded brokers read them when the release comes: declared again since the
        // receive, its new MaxReceiveCount decides.
        var settings = await RequireQueueAsync(lease.Queue, cancellationToken).ConfigureAwait(false);

        // A last allowed receive is dead-lettered whatever the delay; otherwise a delay past RabbitMQ's longest is
        // refused before the lease is taken, so the caller still holds it and no copy comes back earlier than asked.
        if (delay > MaxDelay && Peek(lease) is var peeked && peeked.Delivery.ReceiveCount < settings.MaxReceiveCount)
        {
            throw new InvalidMessageException($"The release delay is {delay}; a queue in RabbitMQ holds a message at most {MaxDelay.TotalDays:0.#} days (2^32 - 1 ms, its largest message TTL).");
        }

        var held = Take(lease);
        if (held.Delivery.ReceiveCount >= settings.MaxReceiveCount)
        {
            await MoveToDeadLettersAsync(held, $"it failed on each of its {settings.MaxReceiveCount} allowed receives", failure ?? held.Delivery.LastFailure, held.Delivery.ReceiveCount, cancellationToken).ConfigureAwait(false);
            return;
        }

        await RepublishAsync(held, held.Delivery.ReceiveCount, failure ?? held.Delivery.LastFailure, delay, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Gives a delivery back untried: a copy with the receive count it had before this receive, visible at once.</summary>
    public async Task ReturnAsync(LeaseToken lease, CancellationToken cancellationToken)
    {
        if (await IsKeptAsync(lease.Queue, cancellationToken).ConfigureAwait(false))
        {
            await _backend.ReturnAsync(lease, cancellationToken).ConfigureAwait(false);
            return;
        }

        var held = Take(lease);
        await RepublishAsync(held, held.Delivery.ReceiveCount - 1, held.Delivery.LastFailure, TimeSpan.Zero, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sets the lease to <paramref name="duration"/> from now. RabbitMQ itself closes a channel whose delivery stays unacknowledged past its <c>consumer_timeout</c> (30 minutes by default).</summary>
    public async Task ExtendLeaseAsync(LeaseToken lease, TimeSpan duration, CancellationToken cancellationToken)
    {
        if (duration < TimeSpan.FromMilliseconds(1) || duration > TimeSpan.FromHours(12))
        {
            throw new InvalidMessageException($"The lease extension is {duration}; it must be between 1 ms and 12 hours.");
        }

        if (await IsKeptAsync(lease.Queue, cancellationToken).ConfigureAwait(false))
        {
            await _backend.ExtendLeaseAsync(lease, duration, cancellationToken).ConfigureAwait(false);
            return;
        }

        Peek(lease).ExpiresAt = _time.GetUtcNow() + duration;
    }

    /// <summary>Moves a delivery to the queue's dead-letter queue (<c>&lt;queue&gt;.dlq</c>) with the reason, then acknowledges it.</summary>
    public async Task DeadLetterAsync(LeaseToken lease, string reason, FailureInfo? failure, CancellationToken cancellationToken)
    {
        reason = DeadLetterReason.Check(reason);

        if (await IsKeptAsync(lease.Queue, cancellationToken).ConfigureAwait(false))
        {
            await _backend.DeadLetterAsync(lease, reason, failure, cancellationToken).ConfigureAwait(false);
            return;
        }

        var held = Take(lease);
        await MoveToDeadLettersAsync(held, reason, failure ?? held.Delivery.LastFailure, held.Delivery.ReceiveCount, cancellationToken).ConfigureAwait(false);
    }

    private async Task RepublishAsync(HeldLease held, int receives, FailureInfo? failure, TimeSpan delay, CancellationToken cancellationToken, bool leaseExpired = false)
    {
        var properties = AmqpMessageCodec.Copy(held.Buffered.Properties);
        var headers = properties.Headers!;
        headers[AmqpMessageCodec.Receives] = (long)Math.Max(0, receives);
        headers[AmqpMessageCodec.FirstReceivedAt] = AmqpMessageCodec.Format(held.Delivery.FirstReceivedAt);
        headers[AmqpMessageCodec.LastReceivedAt] = AmqpMessageCodec.Format(held.ReceivedAt);
        headers.Remove(AmqpMessageCodec.LeaseExpired);
        if (leaseExpired)
        {
            headers[AmqpMessageCodec.LeaseExpired] = "true";
        }

        AmqpMessageCodec.SetFailure(headers, failure);
        var target = AmqpName(held.Queue.Name);
        if (delay > TimeSpan.Zero)
        {
            try
            {
                target = await DelayQueueAsync(held.Queue.Name, delay, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception) when (held.Current)
            {
                await SafelyAsync(() => held.Reader.GiveBackAsync(held.Buffered), "give back a delivery whose delay queue could not be declared").ConfigureAwait(false);
                throw;
            }
        }

        // A delay queue RabbitMQ deleted (it expired while this process still counted it declared) is declared again.
        var declareAgain = delay > TimeSpan.Zero ? () => DelayQueueAsync(held.Queue.Name, delay, cancellationToken) : (Func<Task>?)null;
        await ReplaceDeliveryAsync(held, target, properties, cancellationToken, declareAgain).ConfigureAwait(false);
    }

    /// <summary>
    /// Publishes a held delivery's copy to <paramref name="target"/>, then acknowledges the original. A copy RabbitMQ
    /// could not route (its queue is gone) is published once more after <paramref name="declareAgain"/>, when given. A
    /// publish that fails or is cancelled (RabbitMQ away, or blocking publishes) gives the original back to RabbitMQ at
    /// once, which delivers it again: the lease was taken, and nothing else would settle it.
    /// </summary>
    private async Task ReplaceDeliveryAsync(HeldLease held, string target, BasicProperties properties, CancellationToken cancellationToken, Func<Task>? declareAgain = null)
    {
        try
        {
            try
            {
                await PublishCopyAsync(held, target, properties, cancellationToken).ConfigureAwait(false);
            }
            catch (PublishReturnException) when (declareAgain is not null)
            {
                _connection.Forget(target);
                await declareAgain().ConfigureAwait(false);
                await PublishCopyAsync(held, target, properties, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            if (ex is PublishReturnException)
            {
                // Not routed: the queue is gone (deleted by hand, or expired). The next use declares it again.
                _connection.Forget(target);
            }

            if (held.Current)
            {
                await SafelyAsync(() => held.Reader.GiveBackAsync(held.Buffered), "give back a delivery whose copy could not be published").ConfigureAwait(false);
            }

            throw;
        }

        await AcknowledgeDeliveryAsync(held, CancellationToken.None).ConfigureAwait(false);
    }

    private async Task PublishCopyAsync(HeldLease held, string target, BasicProperties properties, CancellationToken cancellationToken)
    {
        AmqpMessageCodec.FitCopy(properties.Headers!);
        var channel = await _connection.PublisherAsync(cancellationToken).ConfigureAwait(false);
        await channel.BasicPublishAsync("", target, true, properties, held.Buffered.Body, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The longest delay a delay queue holds a message: RabbitMQ's largest per-queue message TTL, 2³² − 1 ms (49.7 days).</summary>
    internal static readonly TimeSpan MaxDelay = TimeSpan.FromMilliseconds(uint.MaxValue);

    /// <summary>
    /// The queue that holds messages released with <paramref name="delay"/>: a quorum queue whose messages expire after
    /// the delay and are then dead-lettered back to their queue, at least once. The delay is rounded up to two
    /// significant digits (1,234 ms waits 1,300 ms; 61 s waits 61 s; 123 s waits 130 s), so a queue has at most 90 delay
    /// queues per power of ten however its delays are jittered. A delay queue is kept when idle: RabbitMQ can neither
    /// expire a quorum queue that is in use (its <c>x-expires</c> counts neither publishes nor declarations as use, and
    /// deleted queues in use with their messages) nor delete one only if it is empty. Its name is not the
    /// <c>.delay.</c> of the delay queues that had an <c>x-expires</c>, which cannot be declared again without it.
    /// </summary>
    private async Task<string> DelayQueueAsync(QueueName queue, TimeSpan delay, CancellationToken cancellationToken)
    {
        var ms = Math.Min(DelayQueueMilliseconds(delay), uint.MaxValue);
        var name = DelayQueueName(queue, ms);
        try
        {
            await _connection.DeclareAsync(name, DelayQueueArguments(queue, ms), cancellationToken).ConfigureAwait(false);
        }
        catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == 406)
        {
            // As a queue's own declaration says it: typed, naming the queue in the way.
            throw new QueueDefinitionConflictException(queue, $"RabbitMQ refused to declare its delay queue '{name}' ({ex.ShutdownReason.ReplyText}); another queue of that name, with other arguments, is in the way");
        }

        return name;
    }

    /// <summary>The arguments of <paramref name="queue"/>'s delay queue for <paramref name="milliseconds"/>.</summary>
    internal Dictionary<string, object?> DelayQueueArguments(QueueName queue, long milliseconds)
    {
        var arguments = QuorumArguments();
        arguments["x-message-ttl"] = milliseconds;
        arguments["x-dead-letter-exchange"] = "";
        arguments["x-dead-letter-routing-key"] = AmqpName(queue);
        arguments["x-dead-letter-strategy"] = "at-least-once";
        arguments["x-overflow"] = "reject-publish";
        return arguments;
    }

    /// <summary>The name of <paramref name="queue"/>'s delay queue for a delay of <paramref name="milliseconds"/>, rounded as <see cref="DelayQueueMilliseconds"/> rounds it.</summary>
    internal string DelayQueueName(QueueName queue, long milliseconds) => $"{AmqpName(queue)}.wait.{milliseconds}";

    /// <summary>A delay in whole milliseconds, rounded up to two significant digits.</summary>
    internal static long DelayQueueMilliseconds(TimeSpan delay)
    {
        var ms = (long)Math.Ceiling(delay.TotalMilliseconds);
        var step = 1L;
        while (ms / step >= 100)
        {
            step *= 10;
        }

        return (ms + step - 1) / step * step;
    }

    /// <summary>A delivery a receive found it must dead-letter, with why; done once it is dead-lettered, given back, or let go.</summary>
    private sealed class HeldDeadLetter(HeldLease held, string reason, FailureInfo? failure, int attempts)
    {
        public HeldLease Held { get; } = held;

        public string Reason { get; } = reason;

        public FailureInfo? Failure { get; } = failure;

        public int Attempts { get; } = attempts;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Dead-letters a delivery a receive came upon (unreadable, or past its receive limit). Dead-lettering publishes a
    /// copy, which waits while RabbitMQ blocks publishing (a resource alarm). So the delivery is held, unsettled, and
    /// handed to one task that dead-letters the held ones in turn; the receive waits for it only briefly, and not at
    /// all while publishing is known to be blocked, then goes on to the others, and the queue still drains. RabbitMQ
    /// tells a connection it is blocked only once it publishes during the alarm, hence the brief wait rather than a
    /// check alone. A delivery whose copy cannot be published is given back, and comes again.
    /// </summary>
    private async Task DeadLetterOnReceiveAsync(HeldLease held, string reason, FailureInfo? failure, int attempts)
    {
        var pending = new HeldDeadLetter(held, reason, failure, attempts);
        _heldDeadLetters[Interlocked.Increment(ref _nextHeldDeadLetter)] = pending;
        StartDeadLetteringHeld();
        if (_connection.PublishingBlocked is not null)
        {
            return;
        }

        try
        {
            // Real time, not the broker's clock: this bounds a wait on RabbitMQ, as its client's own time-outs do.
            await pending.Done.Task.WaitAsync(PromptDeadLetterWait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Still held (publishing blocked): dead-lettered once it is not.
        }
    }

    /// <summary>How long a receive waits for a delivery it must dead-letter before it goes on to the others.</summary>
    private static readonly TimeSpan PromptDeadLetterWait = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Starts dead-lettering the held deliveries, unless that runs already or publishing is known to be blocked; on a
    /// task of its own, since a block makes it wait, and receives and the sweep must go on meanwhile.
    /// </summary>
    private void StartDeadLetteringHeld()
    {
        if (_heldDeadLetters.IsEmpty || _connection.PublishingBlocked is not null || _disposing.IsCancellationRequested
            || Interlocked.Exchange(ref _deadLettering, 1) == 1)
        {
            return;
        }

        _deadLetteringRun = Task.Run(async () =>
        {
            try
            {
                await DeadLetterHeldAsync().ConfigureAwait(false);
            }
            finally
            {
                Volatile.Write(ref _deadLettering, 0);
            }
        });
    }

    /// <summary>Dead-letters the held deliveries in the order they were held, while publishing is not known to be blocked.</summary>
    private async Task DeadLetterHeldAsync()
    {
        foreach (var key in _heldDeadLetters.Keys.Order().ToList())
        {
            if (_connection.PublishingBlocked is not null || _disposing.IsCancellationRequested)
            {
                return;
            }

            if (!_heldDeadLetters.TryGetValue(key, out var pending))
            {
                continue;
            }

            try
            {
                if (pending.Held.Current)
                {
                    await MoveToDeadLettersAsync(pending.Held, pending.Reason, pending.Failure, pending.Attempts, CancellationToken.None).ConfigureAwait(false);
                }

                // Otherwise its channel closed meanwhile: RabbitMQ delivers it again, and the receive that gets it decides anew.
                pending.Done.TrySetResult();
            }
            catch (Exception ex)
            {
                // Given back by the failed publish: RabbitMQ delivers it again.
                pending.Done.TrySetResult();
                if (!_disposing.IsCancellationRequested)
                {
                    _logger.LogWarning(ex, "Could not dead-letter a delivery from {Queue}; it is given back.", pending.Held.Queue.Name);
                }
            }
            finally
            {
                _heldDeadLetters.TryRemove(key, out _);
            }
        }
    }

    /// <summary>Lets go of held deliveries whose channel closed (RabbitMQ delivers them again), so a long alarm does not pile them up.</summary>
    private void ForgetClosedHeldDeadLetters()
    {
        foreach (var (key, pending) in _heldDeadLetters)
        {
            if (!pending.Held.Current && _heldDeadLetters.TryRemove(key, out _))
            {
                pending.Done.TrySetResult();
            }
        }
    }

    /// <summary>The held deliveries of a queue still on a current channel: RabbitMQ counts them as unacknowledged.</summary>
    private int HeldDeadLettersOf(QueueName queue) => _heldDeadLetters.Values.Count(p => p.Held.Queue.Name == queue && p.Held.Current);

    /// <summary>
    /// Gives back the deliveries whose lease ran out (<see cref="GiveBackExpiredAsync"/>), so they are delivered again
    /// (counting a receive), and dead-letters those held while publishing was blocked once it is not.
    /// </summary>
    private async Task SweepLeasesAsync(CancellationToken cancellationToken)
    {
        await Task.Yield();
        while (!cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(100), _time, cancellationToken).ConfigureAwait(false);
            ForgetClosedHeldDeadLetters();
            StartDeadLetteringHeld();
            await DisposeSettledRetiredReadersAsync().ConfigureAwait(false);
            var now = _time.GetUtcNow();
            foreach (var (sequence, held) in _leases)
            {
                if (held.ExpiresAt > now && held.Current)
                {
                    continue;
                }

                if (_leases.TryRemove(sequence, out var expired) && expired.Current)
                {
                    await GiveBackExpiredAsync(expired).ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>
    /// Gives back a delivery whose lease ran out as a copy that says so and carries its receive count and the times of
    /// its receives, as a release's copy does: a <c>basic.nack</c> cannot add headers, and the next receive would take
    /// itself for the first. While RabbitMQ blocks publishing, or when the copy cannot be published, the delivery itself
    /// is given back (<c>basic.nack</c> with requeue), and the next receive knows only that it was delivered before. The
    /// sweep waits for the copy only briefly (a block RabbitMQ has not told of yet), then goes on; it ends by itself.
    /// </summary>
    private async Task GiveBackExpiredAsync(HeldLease expired)
    {
        if (_connection.PublishingBlocked is not null)
        {
            await SafelyAsync(() => expired.Reader.GiveBackAsync(expired.Buffered), "give back a delivery whose lease ran out").ConfigureAwait(false);
            return;
        }

        var copied = CopyExpiredAsync(expired);
        try
        {
            // Real time, as for a dead letter held on receive: this bounds a wait on RabbitMQ.
            await copied.WaitAsync(PromptDeadLetterWait).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Still publishing (a block not told of yet): it settles the delivery, or gives it back, when it ends.
        }
    }

    private async Task CopyExpiredAsync(HeldLease expired)
    {
        try
        {
            await RepublishAsync(expired, expired.Delivery.ReceiveCount, null, TimeSpan.Zero, _disposing.Token, leaseExpired: true).ConfigureAwait(false);
        }
        catch (Exception ex) when (!_disposing.IsCancellationRequested)
        {
            // The failed publish gave the delivery itself back.
            _logger.LogWarning(ex, "Could not give back a delivery from {Queue} whose lease ran out as a copy; it is delivered again as it was.", expired.Queue.Name);
        }
        catch (Exception)
        {
            // Disposing: the channel's close gives it back.
        }
    }

    private async Task SafelyAsync(Func<Task> action, string what)
    {
        try
        {
            await action().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The channel is gone: RabbitMQ delivers the message again once the connection recovers.
            _logger.LogWarning(ex, "Could not {What} on RabbitMQ; it is delivered again after the channel recovers.", what);
        }
    }

    internal static bool IsUnroutable(Exception exception) => exception is global::RabbitMQ.Client.Exceptions.PublishException { IsReturn: true };

    internal static BasicProperties PropertiesFor(Message message, DateTimeOffset enqueuedAt) => AmqpMessageCodec.ToProperties(message, enqueuedAt);
}
