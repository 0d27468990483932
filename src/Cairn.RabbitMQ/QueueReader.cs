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
/// delivers them again once the client has recovered the channel and its consumer.
/// <para>
/// Every acknowledgement, rejection and give-back of the reader's deliveries goes through <see cref="AckAsync"/>,
/// <see cref="AckOneAsync"/> or <see cref="NackAsync"/>, one at a time in the order they reach the channel, and the
/// reader knows which delivery tags of its channel are still unsettled (buffered, leased, or being dead-lettered or
/// republished). Acknowledging several deliveries sends one <c>basic.ack</c> with <c>multiple</c> for the longest run
/// that starts at the lowest unsettled tag and holds only tags being acknowledged, since such an ack settles every
/// unsettled tag up to its own; the others get an ack each. A tag still unsettled by the application is never covered.
/// </para>
/// </summary>
internal sealed class QueueReader : IAsyncDisposable
{
    private readonly Channel<BufferedDelivery> _buffer = System.Threading.Channels.Channel.CreateUnbounded<BufferedDelivery>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true });
    private readonly SemaphoreSlim _settling = new(1, 1);
    private readonly SortedSet<ulong> _unsettled = [];
    private long _unsettledGeneration;
    private long _generation;
    private int _buffered;

    private QueueReader(string queue, IChannel channel)
    {
        Queue = queue;
        Channel = channel;
    }

    public string Queue { get; }

    public IChannel Channel { get; }

    public long Generation => Interlocked.Read(ref _generation);

    public int Buffered => Volatile.Read(ref _buffered);

    public static async Task<QueueReader> StartAsync(RabbitMqConnection connection, string queue, CancellationToken cancellationToken)
    {
        var open = await connection.GetAsync(cancellationToken).ConfigureAwait(false);
        var channel = await open.CreateChannelAsync(null, cancellationToken).ConfigureAwait(false);
        await channel.BasicQosAsync(0, connection.Options.Prefetch, false, cancellationToken).ConfigureAwait(false);
        var reader = new QueueReader(queue, channel);
        channel.ChannelShutdownAsync += (_, _) =>
        {
            Interlocked.Increment(ref reader._generation);
            return Task.CompletedTask;
        };
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, delivery) =>
        {
            // The body's buffer is the client's: it is copied before the handler returns.
            var buffered = new BufferedDelivery(reader.Generation, delivery.DeliveryTag, delivery.Redelivered, delivery.BasicProperties, delivery.Body.ToArray());
            lock (reader._unsettled)
            {
                if (reader._unsettledGeneration != buffered.Generation)
                {
                    // A recovered channel: the old one's tags are settled by its closing.
                    reader._unsettled.Clear();
                    reader._unsettledGeneration = buffered.Generation;
                }

                reader._unsettled.Add(buffered.Tag);
            }

            Interlocked.Increment(ref reader._buffered);
            reader._buffer.Writer.TryWrite(buffered);
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

    /// <summary>
    /// Acknowledges deliveries of this reader: one <c>multiple</c> ack for those that, together, are the lowest unsettled
    /// tags of the channel, and one ack for each of the others.
    /// </summary>
    public async Task AckAsync(IReadOnlyList<BufferedDelivery> deliveries, CancellationToken cancellationToken)
    {
        if (deliveries.Count == 1)
        {
            await AckOneAsync(deliveries[0], cancellationToken).ConfigureAwait(false);
            return;
        }

        var tags = deliveries.Select(d => d.Tag).Order().ToList();
        await _settling.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var run = 0;
            lock (_unsettled)
            {
                if (deliveries.All(d => d.Generation == _unsettledGeneration))
                {
                    foreach (var unsettled in _unsettled)
                    {
                        if (run == tags.Count || tags[run] != unsettled)
                        {
                            break;
                        }

                        run++;
                    }

                    foreach (var tag in tags)
                    {
                        _unsettled.Remove(tag);
                    }
                }
            }

            var next = 0;
            if (run > 1)
            {
                await Channel.BasicAckAsync(tags[run - 1], multiple: true, cancellationToken).ConfigureAwait(false);
                next = run;
            }

            for (var i = next; i < tags.Count; i++)
            {
                await Channel.BasicAckAsync(tags[i], multiple: false, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _settling.Release();
        }
    }

    /// <summary>Acknowledges one delivery of this reader.</summary>
    public Task AckOneAsync(BufferedDelivery delivery, CancellationToken cancellationToken) =>
        SettleOneAsync(delivery, channel => channel.BasicAckAsync(delivery.Tag, multiple: false, cancellationToken), cancellationToken);

    /// <summary>Gives one delivery of this reader back to RabbitMQ, to be delivered again.</summary>
    public Task NackAsync(BufferedDelivery delivery, CancellationToken cancellationToken) =>
        SettleOneAsync(delivery, channel => channel.BasicNackAsync(delivery.Tag, multiple: false, requeue: true, cancellationToken), cancellationToken);

    private async Task SettleOneAsync(BufferedDelivery delivery, Func<IChannel, ValueTask> settle, CancellationToken cancellationToken)
    {
        await _settling.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_unsettled)
            {
                if (delivery.Generation == _unsettledGeneration)
                {
                    _unsettled.Remove(delivery.Tag);
                }
            }

            await settle(Channel).ConfigureAwait(false);
        }
        finally
        {
            _settling.Release();
        }
    }

    /// <summary>Waits until a delivery may be there; false when <paramref name="wait"/> ran out first.</summary>
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
        _buffer.Writer.TryComplete();
        try
        {
            if (Channel.IsOpen)
            {
                await Channel.CloseAsync().ConfigureAwait(false);
            }
        }
        catch (Exception)
        {
            // Closing a channel whose connection is gone fails; the broker requeues its deliveries either way.
        }

        await Channel.DisposeAsync().ConfigureAwait(false);
    }
}
