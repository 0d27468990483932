using System.Threading.Channels;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Cairn.RabbitMQ;

/// <summary>A delivery RabbitMQ pushed to a reader and that waits to be received.</summary>
internal sealed record BufferedDelivery(long Generation, ulong Tag, bool Redelivered, IReadOnlyBasicProperties Properties, byte[] Body);

/// <summary>
/// One queue's consumer in this process: a channel with manual acknowledgements and a prefetch, whose deliveries wait in
/// a buffer (bounded by the prefetch) until a receive takes them. When the channel closes (a connection loss, a broker
/// restart), its generation moves on (see <see cref="Generation"/>): the deliveries and leases of the old channel can no
/// longer be settled, and RabbitMQ delivers them again once the client has recovered the channel and its consumer. The
/// client recovers channels only with their connection, so a reader whose channel RabbitMQ closed on its own (a delivery
/// held past the broker's <c>consumer_timeout</c>, a channel error) or whose consumer it cancelled (the queue was
/// deleted) is <see cref="Dead"/>: the broker starts another in its place.
/// </summary>
internal sealed class QueueReader : IAsyncDisposable
{
    private readonly Channel<BufferedDelivery> _buffer = System.Threading.Channels.Channel.CreateUnbounded<BufferedDelivery>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true });
    private readonly RabbitMqConnection _connection;
    private readonly IConnection _open;
    private readonly string _consumerTag = "cairn-" + Guid.NewGuid().ToString("N");
    private long _generation;
    private readonly Lock _bufferedGate = new();
    private int _buffered;
    private long _bufferedGeneration;
    private string? _dead;
    private volatile bool _disposing;

    // Set once the process's receivers stopped (RetireAsync): deliveries that come after are given back at once.
    private readonly Lock _retireGate = new();
    private bool _retired;

    // What is settled on the current channel (see Settled), and the acknowledgements waiting to be written.
    private readonly object _settling = new();
    private long _settledGeneration;
    private ulong _floor;
    private HashSet<ulong> _settledAbove = [];
    private bool _coalescing = true;
    private List<(long Generation, ulong Tag, TaskCompletionSource Done)> _toAcknowledge = [];
    private bool _writingAcknowledgements;
    private long _multipleAcknowledgements;
    private long _firstTagGeneration = -1;
    private ulong _firstTag;

    private QueueReader(RabbitMqConnection connection, IConnection open, string queue, IChannel channel)
    {
        _connection = connection;
        _open = open;
        Queue = queue;
        Channel = channel;
    }

    public string Queue { get; }

    public IChannel Channel { get; }

    /// <summary>
    /// The channel's generation: a delivery is stamped with it as it comes, and can be settled only while it stays the
    /// same. It moves on three times:
    /// <list type="bullet">
    /// <item>when the consuming connection shuts down (<see cref="RabbitMqConnection.ConsumingLosses"/>), first of all its
    /// shutdown's handlers, so the leases of deliveries received before are lost at once;</item>
    /// <item>just before RabbitMQ.Client recovers this reader's consumer, since it raises
    /// <see cref="IConnection.RecoveringConsumerAsync"/> before the recovered channel consumes: the recovered channel's
    /// first delivery is stamped anew, whenever the client reports the old channel's shutdown, and a delivery the old
    /// channel's dispatcher hands over after the connection's shutdown is stamped with the generation in between, which
    /// this move leaves behind;</item>
    /// <item>when RabbitMQ closes the channel alone, and the reader dies.</item>
    /// </list>
    /// Both counts only grow, so the sum does too.
    /// </summary>
    public long Generation => Interlocked.Read(ref _generation) + _connection.ConsumingLosses;

    /// <summary>
    /// The deliveries of the current generation waiting for a receive. Those of a closed channel still in the buffer are
    /// not counted: RabbitMQ counts them ready again (or delivers them again to the recovered channel).
    /// </summary>
    public int Buffered
    {
        get
        {
            lock (_bufferedGate)
            {
                return _bufferedGeneration == Generation ? _buffered : 0;
            }
        }
    }

    /// <summary>Counts a delivery of <paramref name="generation"/> into the buffer (+1) or out of it (-1).</summary>
    private void CountBuffered(long generation, int change)
    {
        lock (_bufferedGate)
        {
            if (generation > _bufferedGeneration)
            {
                // A newer generation: what was counted of the older ones no longer counts.
                _bufferedGeneration = generation;
                _buffered = 0;
            }

            if (generation == _bufferedGeneration)
            {
                _buffered = Math.Max(0, _buffered + change);
            }
        }
    }

    /// <summary>For tests: the generation's own count, moved on by a channel closed alone and by a recovery of the consumer.</summary>
    internal long ChannelGenerations => Interlocked.Read(ref _generation);

    /// <summary>The <c>basic.ack</c> frames with <c>multiple</c> set this reader wrote, one per run of settled deliveries.</summary>
    public long MultipleAcknowledgements => Interlocked.Read(ref _multipleAcknowledgements);

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
        // One dispatcher for the consumer, whatever the factory says: the reader notes each channel's first tag and counts
        // settled ones in the order RabbitMQ delivered them, which concurrent dispatch would scramble.
        var channel = await open.CreateChannelAsync(new CreateChannelOptions(false, false, consumerDispatchConcurrency: 1), cancellationToken).ConfigureAwait(false);
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
        var reader = new QueueReader(connection, open, queue, channel);
        channel.ChannelShutdownAsync += (_, e) =>
        {
            // A lost connection has moved the generation on already, and its recovery moves it on again. RabbitMQ.Client
            // may report the old channel's shutdown after the recovered channel has delivered (it runs the connection's
            // shutdown handlers in turn while the recovery goes on), so counting it here could leave those deliveries
            // behind, unsettled, on a live channel; nor does it mean that the reader must be replaced.
            if (connection.IsConsumingLoss(e) || !open.IsOpen)
            {
                return Task.CompletedTask;
            }

            // With the connection up, the channel alone was closed: nothing will recover it.
            Interlocked.Increment(ref reader._generation);
            reader.Die($"RabbitMQ closed its channel ({e.ReplyCode} {e.ReplyText})");
            return Task.CompletedTask;
        };
        var consumer = new ReaderConsumer(reader);
        open.RecoveringConsumerAsync += reader.RecoveringConsumerAsync;
        try
        {
            await channel.BasicConsumeAsync(queue, autoAck: false, reader._consumerTag, consumer, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception)
        {
            open.RecoveringConsumerAsync -= reader.RecoveringConsumerAsync;
            throw;
        }

        return reader;
    }

    /// <summary>
    /// The reader's consumer. It takes only what RabbitMQ sends: deliveries, and a <c>basic.cancel</c> (its queue was
    /// deleted), after which the reader is dead and closes its channel. The channel's shutdown, which the client
    /// also reports to the consumer as a cancel, is the shutdown handler's to judge: after a lost connection the client
    /// may report it once the recovered channel is consuming already.
    /// </summary>
    private sealed class ReaderConsumer(QueueReader reader) : AsyncDefaultBasicConsumer(reader.Channel)
    {
        public override Task HandleBasicDeliverAsync(string consumerTag, ulong deliveryTag, bool redelivered, string exchange, string routingKey, IReadOnlyBasicProperties properties, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
        {
            // The body's buffer is the client's: it is copied before the handler returns.
            var generation = reader.Generation;
            reader.Delivered(generation, deliveryTag);
            var buffered = new BufferedDelivery(generation, deliveryTag, redelivered, properties, body.ToArray());
            lock (reader._retireGate)
            {
                if (!reader._retired)
                {
                    // One that reaches a dead reader is not counted: its channel is closed (at once after a cancel,
                    // otherwise when the reader is replaced), and RabbitMQ delivers it again.
                    reader.CountBuffered(generation, +1);
                    if (!reader._buffer.Writer.TryWrite(buffered))
                    {
                        reader.CountBuffered(generation, -1);
                    }

                    return Task.CompletedTask;
                }
            }

            // Sent before RabbitMQ took the retirement's cancel: nobody here receives it any more.
            return reader.GiveBackQuietlyAsync(buffered);
        }

        public override async Task HandleBasicCancelAsync(string consumerTag, CancellationToken cancellationToken = default)
        {
            await base.HandleBasicCancelAsync(consumerTag, cancellationToken).ConfigureAwait(false);
            reader.Die("RabbitMQ cancelled its consumer");

            // Closed now rather than when a receive next comes to replace the reader: the client keeps the consumer on
            // record, recovers it with the connection onto the queue declared again, and what it delivered there would
            // wait unacknowledged on a dead reader's channel. Closed off the dispatcher, which closing waits for.
            if (!reader._disposing)
            {
                _ = Task.Run(reader.CloseChannelAsync, CancellationToken.None);
            }
        }
    }

    /// <summary>Moves the generation on just before the client consumes again on this reader's recovered channel.</summary>
    private Task RecoveringConsumerAsync(object? sender, RecoveringConsumerEventArgs e)
    {
        if (e.ConsumerTag == _consumerTag)
        {
            Interlocked.Increment(ref _generation);
        }

        return Task.CompletedTask;
    }

    /// <summary>Takes a delivery of the current channel, skipping those of a closed one (RabbitMQ delivers them again).</summary>
    public bool TryTake(out BufferedDelivery delivery)
    {
        while (_buffer.Reader.TryRead(out var taken))
        {
            CountBuffered(taken.Generation, -1);
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
    /// frame for a run of deliveries rather than one each. A delivery of a channel closed since fails with
    /// <see cref="ObjectDisposedException"/>: RabbitMQ delivers the message again.
    /// </summary>
    public Task AcknowledgeAsync(BufferedDelivery delivery)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_settling)
        {
            if (delivery.Generation != Generation)
            {
                return Task.FromException(ChannelClosed());
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

    /// <summary>
    /// Stops taking deliveries, for a process whose receivers of the queue stopped: the consumer is cancelled and what
    /// waits unreceived is given back, so RabbitMQ delivers it to the consumers of other processes. The channel stays
    /// open, so the leases taken before can still be settled; it closes when the reader is disposed. The reader is then
    /// <see cref="Dead"/>: a receive that still holds it moves to a new reader.
    /// </summary>
    public async Task RetireAsync(CancellationToken cancellationToken)
    {
        lock (_retireGate)
        {
            _retired = true;
            Interlocked.CompareExchange(ref _dead, "the process's receivers of its queue stopped", null);
            _buffer.Writer.TryComplete();
        }

        try
        {
            await Channel.BasicCancelAsync(_consumerTag, noWait: false, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The channel is closed already: RabbitMQ has taken back everything it delivered to it.
        }

        while (TryTake(out var buffered))
        {
            await GiveBackQuietlyAsync(buffered).ConfigureAwait(false);
        }
    }

    /// <summary>Gives a delivery back; a failure means the channel closed, which gives it back too.</summary>
    private async Task GiveBackQuietlyAsync(BufferedDelivery delivery)
    {
        try
        {
            await GiveBackAsync(delivery).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The channel closed: RabbitMQ delivers the message again.
        }
    }

    private ObjectDisposedException ChannelClosed() => new(nameof(QueueReader), $"The channel of the reader of {Queue} on which the delivery came has closed.");

    /// <summary>Writes the acknowledgements that came, and those that come meanwhile, until none waits.</summary>
    private async Task WriteAcknowledgementsAsync()
    {
        try
        {
            while (await WriteAcknowledgementBatchAsync().ConfigureAwait(false))
            {
            }
        }
        catch (Exception ex)
        {
            // Not expected (each batch's failures are its waiters'); whatever waits must not wait for ever.
            lock (_settling)
            {
                _writingAcknowledgements = false;
                foreach (var (_, _, done) in _toAcknowledge)
                {
                    done.TrySetException(ex);
                }

                _toAcknowledge = [];
            }
        }
    }

    /// <summary>Writes the acknowledgements waiting now; false when none was waiting, and the writer has stopped.</summary>
    private async Task<bool> WriteAcknowledgementBatchAsync()
    {
        // Behind the work already queued, which often holds more acknowledgements of this burst.
        await Task.Yield();
        List<(long Generation, ulong Tag, TaskCompletionSource Done)> batch;
        long batchGeneration;
        ulong upTo = 0;
        var covered = new List<TaskCompletionSource>();
        var oneByOne = new List<(ulong Tag, TaskCompletionSource Done)>();
        lock (_settling)
        {
            if (_toAcknowledge.Count == 0)
            {
                _writingAcknowledgements = false;
                return false;
            }

            batch = _toAcknowledge;
            _toAcknowledge = [];
            foreach (var (generation, tag, _) in batch)
            {
                Settled(generation, tag);
            }

            batchGeneration = _settledGeneration;

            foreach (var (generation, tag, done) in batch)
            {
                if (generation != Generation || generation != _settledGeneration)
                {
                    // Of a channel closed since it was asked for: the client would drop the tag.
                    done.TrySetException(ChannelClosed());
                }
                else if (_coalescing && tag <= _floor)
                {
                    upTo = Math.Max(upTo, tag);
                    covered.Add(done);
                }
                else
                {
                    oneByOne.Add((tag, done));
                }
            }
        }

        try
        {
            if (upTo > 0)
            {
                await Channel.BasicAckAsync(upTo, true).ConfigureAwait(false);
                Interlocked.Increment(ref _multipleAcknowledgements);
            }

            foreach (var done in covered)
            {
                done.TrySetResult();
            }

            covered.Clear();
            for (var i = 0; i < oneByOne.Count; i++)
            {
                await Channel.BasicAckAsync(oneByOne[i].Tag, false).ConfigureAwait(false);
                oneByOne[i].Done.TrySetResult();
            }
        }
        catch (Exception ex)
        {
            // What was not written fails. Its tags were counted settled, so no later acknowledgement with multiple may
            // cover them: the channel's acknowledgements go one by one from now on.
            lock (_settling)
            {
                // Unless a newer channel's count has started meanwhile, which this failure says nothing of.
                if (_settledGeneration == batchGeneration)
                {
                    _coalescing = false;
                    _settledAbove = [];
                }
            }

            foreach (var done in covered.Concat(oneByOne.Select(o => o.Done)))
            {
                done.TrySetException(ex);
            }
        }

        return true;
    }

    /// <summary>
    /// Counts a tag settled (under <see cref="_settling"/>), and moves the floor, below which every tag of the current
    /// channel is settled, as far as it can. Too many settled above a delivery held long (a handler that takes its
    /// time, a dead letter held through a resource alarm) stop the counting for the channel: acknowledgements then go
    /// one by one, and the memory stays bounded.
    /// </summary>
    private void Settled(long generation, ulong tag)
    {
        if (generation < Generation)
        {
            return; // of a closed channel
        }

        if (generation != _settledGeneration)
        {
            // A new channel: every tag below its first is of a closed one.
            _settledGeneration = generation;
            _floor = generation == _firstTagGeneration ? _firstTag - 1 : 0;
            _settledAbove = [];
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
                _settledAbove = [];
            }
        }
    }

    /// <summary>
    /// Notes the first delivery tag of each channel generation. RabbitMQ.Client numbers a recovered channel's deliveries
    /// on from the last tag it saw, and drops acknowledgements of tags from before, so every tag below a generation's
    /// first is settled as far as the new channel is concerned.
    /// </summary>
    private void Delivered(long generation, ulong tag)
    {
        if (generation == Volatile.Read(ref _firstTagGeneration))
        {
            return;
        }

        lock (_settling)
        {
            if (generation > _firstTagGeneration)
            {
                _firstTag = tag;
                Volatile.Write(ref _firstTagGeneration, generation);
            }
        }
    }

    /// <summary>Tags settled above the floor that are counted before acknowledgements of the channel go one by one.</summary>
    private const int MaxSettledAboveFloor = 65_536;

    /// <summary>Closes the channel, which also takes it and its consumer off the connection's recovery records.</summary>
    private async Task CloseChannelAsync()
    {
        try
        {
            await Channel.CloseAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Closed already, or its connection is gone: the broker requeues its deliveries either way.
        }
    }

    public async ValueTask DisposeAsync()
    {
        _disposing = true;
        _open.RecoveringConsumerAsync -= RecoveringConsumerAsync;
        _buffer.Writer.TryComplete();

        // Even when already closed: closing is what removes the channel from the connection's recovery records.
        await CloseChannelAsync().ConfigureAwait(false);
        await Channel.DisposeAsync().ConfigureAwait(false);
    }
}
