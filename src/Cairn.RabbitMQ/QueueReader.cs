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
