using System.Threading.Channels;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Cairn.RabbitMQ;

/// <summary>A delivery RabbitMQ pushed to a reader and that waits to be received.</summary>
internal sealed record BufferedDelivery(long Generation, ulong Tag, bool Redelivered, IReadOnlyBasicProperties Properties, byte[] Body);

/// <summary>
/// One queue's consumer in this process: a channel with manual acknowledgements and a prefetch, whose deliveries wait in
/// a buffer (bounded by the prefetch) until a receive takes them. When the channel closes (a connection loss, a broker
/// restart), its generation moves on: the deliveries and leases of the old channel can no longer be settled, and RabbitMQ
/// delivers them again once the client has recovered the channel and its consumer. The client recovers channels only
/// with their connection, so a reader whose channel RabbitMQ closed on its own (a delivery held past the broker's
/// <c>consumer_timeout</c>, a channel error) or whose consumer it cancelled (the queue was deleted) is
/// <see cref="Dead"/>: the broker starts another in its place.
/// </summary>
internal sealed class QueueReader : IAsyncDisposable
{
    private readonly Channel<BufferedDelivery> _buffer = System.Threading.Channels.Channel.CreateUnbounded<BufferedDelivery>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true });
    private long _generation;
    private int _buffered;
    private string? _dead;
    private volatile bool _disposing;

    // What is settled on the current channel (see Settled), and the acknowledgements waiting to be written.
    private readonly object _settling = new();
    private long _settledGeneration;
    private ulong _floor;
    private readonly HashSet<ulong> _settledAbove = [];
    private bool _coalescing = true;
    private List<(long Generation, ulong Tag, TaskCompletionSource Done)> _toAcknowledge = [];
    private bool _writingAcknowledgements;

    private QueueReader(string queue, IChannel channel)
    {
        Queue = queue;
        Channel = channel;
    }

    public string Queue { get; }

    public IChannel Channel { get; }

    public long Generation => Interlocked.Read(ref _generation);

    public int Buffered => Volatile.Read(ref _buffered);

    /// <summary>Why this reader gets no more deliveries while its connection is up; null while it does.</summary>
    public string? Dead => Volatile.Read(ref _dead);

    /// <summary>Marks the reader dead and wakes its waiting receives, which then move to a new reader.</summary>
    public void Die(string reason)
    {
        // Closed by its owner: not a death that calls for another reader.
        if (_disposing)
        {
            return;
        }

        Interlocked.CompareExchange(ref _dead, reason, null);
        _buffer.Writer.TryComplete();
    }

    public static async Task<QueueReader> StartAsync(RabbitMqConnection connection, string queue, CancellationToken cancellationToken)
    {
        var open = await connection.GetAsync(cancellationToken).ConfigureAwait(false);
        var channel = await open.CreateChannelAsync(null, cancellationToken).ConfigureAwait(false);
        try
        {
            return await ConsumeAsync(connection, open, channel, queue, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // A refused consume (the queue gone) closes the channel; it is not left behind either way.
            await channel.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<QueueReader> ConsumeAsync(RabbitMqConnection connection, IConnection open, IChannel channel, string queue, CancellationToken cancellationToken)
    {
        await channel.BasicQosAsync(0, connection.Options.Prefetch, false, cancellationToken).ConfigureAwait(false);
        var reader = new QueueReader(queue, channel);
        channel.ChannelShutdownAsync += (_, e) =>
        {
            Interlocked.Increment(ref reader._generation);

            // With the connection up, the channel alone was closed: nothing will recover it.
            if (open.IsOpen)
            {
                reader.Die($"RabbitMQ closed its channel ({e.ReplyCode} {e.ReplyText})");
            }

            return Task.CompletedTask;
        };
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, delivery) =>
        {
            // The body's buffer is the client's: it is copied before the handler returns.
            var buffered = new BufferedDelivery(reader.Generation, delivery.DeliveryTag, delivery.Redelivered, delivery.BasicProperties, delivery.Body.ToArray());
            // One that reaches a dead reader is not counted: its channel is closed when the reader is replaced, and
            // RabbitMQ delivers it again.
            Interlocked.Increment(ref reader._buffered);
            if (!reader._buffer.Writer.TryWrite(buffered))
            {
                Interlocked.Decrement(ref reader._buffered);
            }

            return Task.CompletedTask;
        };

        // RabbitMQ cancels a consumer whose queue was deleted; the channel stays open, and consumes nothing more. The
        // client raises the same event when the channel shuts down (a connection loss, which recovery mends), so only a
        // cancel on an open channel of an open connection counts.
        consumer.UnregisteredAsync += (_, _) =>
        {
            if (open.IsOpen && channel.IsOpen)
            {
                reader.Die("RabbitMQ cancelled its consumer");
            }

            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(queue, autoAck: false, consumer, cancellationToken).ConfigureAwait(false);
        return reader;
    }

    /// <summary>Takes a delivery of the current channel, skipping those of a closed one (RabbitMQ delivers them again).</summary>
    public bool TryTake(out BufferedDelivery delivery)
    {
        while (_buffer.Reader.TryRead(out var taken))
        {
            Interlocked.Decrement(ref _buffered);
            if (taken.Generation == Generation)
            {
                delivery = taken;
                return true;
            }
        }

        delivery = null!;
        return false;
    }

    /// <summary>Waits until a delivery may be there; false when <paramref name="wait"/> ran out first, or the reader died.</summary>
    public async Task<bool> WaitAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(wait);
        try
        {
            return await _buffer.Reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>
    /// Acknowledges a delivery of this reader. Acknowledgements that come while one is being written are written
    /// together: one <c>basic.ack</c> with <c>multiple</c> set covers every delivery up to the highest tag below which
    /// all are settled, and those above a delivery still held are acknowledged one by one. RabbitMQ then handles one
    /// frame for a run of deliveries rather than one each. A delivery of an earlier channel is not acknowledged: the
    /// client would drop the tag, and RabbitMQ delivers the message again.
    /// </summary>
    public Task AcknowledgeAsync(BufferedDelivery delivery)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_settling)
        {
            if (delivery.Generation != Generation)
            {
                return Task.CompletedTask;
            }

            _toAcknowledge.Add((delivery.Generation, delivery.Tag, done));
            if (_writingAcknowledgements)
            {
                return done.Task;
            }

            _writingAcknowledgements = true;
        }

        _ = Task.Run(WriteAcknowledgementsAsync);
        return done.Task;
    }

    /// <summary>
    /// Gives a delivery of this reader back to RabbitMQ, which delivers it again; written at once, and counted as settled
    /// only once written, so no acknowledgement covering several deliveries can take it.
    /// </summary>
    public async Task GiveBackAsync(BufferedDelivery delivery)
    {
        await Channel.BasicNackAsync(delivery.Tag, false, true).ConfigureAwait(false);
        lock (_settling)
        {
            Settled(delivery.Generation, delivery.Tag);
        }
    }

    /// <summary>Writes the acknowledgements that came, and those that come meanwhile, until none waits.</summary>
    private async Task WriteAcknowledgementsAsync()
    {
        while (true)
        {
            // Behind the work already queued, which often holds more acknowledgements of this burst.
            await Task.Yield();
            List<(long Generation, ulong Tag, TaskCompletionSource Done)> batch;
            ulong upTo = 0;
            var oneByOne = new List<ulong>();
            lock (_settling)
            {
                if (_toAcknowledge.Count == 0)
                {
                    _writingAcknowledgements = false;
                    return;
                }

                batch = _toAcknowledge;
                _toAcknowledge = [];
                foreach (var (generation, tag, _) in batch)
                {
                    Settled(generation, tag);
                }

                foreach (var (generation, tag, _) in batch)
                {
                    if (generation != _settledGeneration)
                    {
                        continue; // of a closed channel: dropped, as the client would
                    }

                    if (_coalescing && tag <= _floor)
                    {
                        upTo = Math.Max(upTo, tag);
                    }
                    else
                    {
                        oneByOne.Add(tag);
                    }
                }
            }

            try
            {
                if (upTo > 0)
                {
                    await Channel.BasicAckAsync(upTo, true).ConfigureAwait(false);
                }

                foreach (var tag in oneByOne)
                {
                    await Channel.BasicAckAsync(tag, false).ConfigureAwait(false);
                }

                foreach (var (_, _, done) in batch)
                {
                    done.TrySetResult();
                }
            }
            catch (Exception ex)
            {
                foreach (var (_, _, done) in batch)
                {
                    done.TrySetException(ex);
                }
            }
        }
    }

    /// <summary>
    /// Counts a tag settled (under <see cref="_settling"/>), and moves the floor, below which every tag of the current
    /// channel is settled, as far as it can. Too many settled above a delivery held long (a handler that takes its
    /// time, a dead letter held through a resource alarm) stop the counting for the channel: acknowledgements then go
    /// one by one, and the memory stays bounded.
    /// </summary>
    private void Settled(long generation, ulong tag)
    {
        if (generation != _settledGeneration)
        {
            if (generation < Generation)
            {
                return;
            }

            // A new channel: its tags start again.
            _settledGeneration = generation;
            _floor = 0;
            _settledAbove.Clear();
            _coalescing = true;
        }

        if (!_coalescing)
        {
            return;
        }

        if (tag == _floor + 1)
        {
            _floor = tag;
            while (_settledAbove.Remove(_floor + 1))
            {
                _floor++;
            }
        }
        else if (tag > _floor)
        {
            _settledAbove.Add(tag);
            if (_settledAbove.Count > MaxSettledAboveFloor)
            {
                _coalescing = false;
                _settledAbove.Clear();
            }
        }
    }

    /// <summary>Tags settled above the floor that are counted before acknowledgements of the channel go one by one.</summary>
    private const int MaxSettledAboveFloor = 65_536;

    public async ValueTask DisposeAsync()
    {
        _disposing = true;
        _buffer.Writer.TryComplete();
        try
        {
            // Even when already closed: closing is what removes the channel from the connection's recovery records.
            await Channel.CloseAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Closing a channel whose connection is gone fails; the broker requeues its deliveries either way.
        }

        await Channel.DisposeAsync().ConfigureAwait(false);
    }
}
