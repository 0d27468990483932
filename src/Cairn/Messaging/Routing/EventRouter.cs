using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Subscriptions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Messaging.Routing;

/// <summary>Routes the events of a category or of some types from the log to a topic.</summary>
/// <param name="Name">The route's name; its checkpoint is stored under <c>route:&lt;name&gt;</c>.</param>
/// <param name="Filter">Which events: a category, a stream, event types.</param>
/// <param name="Topic">The topic they are published to.</param>
public sealed record EventRoute(string Name, EventFilter Filter, TopicName Topic)
{
    /// <summary>The most events published per commit.</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>The checkpoint key of the route.</summary>
    public string CheckpointKey => "route:" + Name;

    /// <summary>Refuses impossible settings.</summary>
    public void Validate()
    {
        MessagingNames.Validate("route", Name);
        ArgumentNullException.ThrowIfNull(Filter);
        if (Topic == default)
        {
            throw new InvalidMessageException($"Route '{Name}' names no topic.");
        }

        if (BatchSize is < 1 or > 10_000)
        {
            throw new InvalidMessageException($"Route '{Name}': BatchSize is {BatchSize}; it must be between 1 and 10,000.");
        }
    }
}

/// <summary>What a route has done: where it is in the log, whether it runs, and its last failure.</summary>
public sealed record EventRouteStatus(string Name, TopicName Topic, GlobalPosition Position, bool Running, long Failures, string? LastError)
{
    /// <summary>Failures since its last successful batch: more than 0 while it is retrying.</summary>
    public int FailuresInARow { get; init; }

    /// <summary>
    /// The event the route is held at: published alone, it was still refused (<see cref="MessageTooLargeException"/> or
    /// <see cref="InvalidMessageException"/>: too large for a subscribed queue, say), and the events before it have gone
    /// out. Null while the route is not held by one event.
    /// </summary>
    public GlobalPosition? HeldAt { get; init; }
}

/// <summary>
/// Publishes appended events to a topic, so an application appends once and its events reach the bus: the log is the
/// outbox. The router follows <c>$all</c> from its checkpoint and commits each batch of publishes together with the
/// checkpoint, so after a crash it resumes exactly where its last commit ended: no event is lost or published twice,
/// and events go out in log order (so in order per stream).
/// </summary>
public sealed class EventRouter : IAsyncDisposable
{
    private readonly IEventStore _store;
    private readonly IMessageBroker _broker;
    private readonly ICheckpointStore _checkpoints;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private Task _running = Task.CompletedTask;
    private long _position;
    private long _failures;
    private int _failuresInARow;
    private volatile string? _lastError;
    private TaskCompletionSource _advanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _started;
    private int _disposed;

    /// <summary>Held while a start sets the loop going and while a disposal claims the router: one sees the other.</summary>
    private readonly Lock _lifecycle = new();

    /// <summary>Set when the routing loop has ended: a wait for a position it had not reached then fails.</summary>
    private bool _ended;

    /// <summary>Creates a router; <see cref="StartAsync"/> starts it.</summary>
    public EventRouter(IEventStore store, IMessageBroker broker, ICheckpointStore checkpoints, EventRoute route, ILogger<EventRouter>? logger = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(checkpoints);
        ArgumentNullException.ThrowIfNull(route);
        route.Validate();
        _store = store;
        _broker = broker;
        _checkpoints = checkpoints;
        Route = route;
        _logger = logger ?? NullLogger<EventRouter>.Instance;
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The route.</summary>
    public EventRoute Route { get; }

    /// <summary>What the route has done so far.</summary>
    public EventRouteStatus Status => new(Route.Name, Route.Topic, Position, !_running.IsCompleted, Interlocked.Read(ref _failures), _lastError)
    {
        FailuresInARow = Volatile.Read(ref _failuresInARow),
        HeldAt = Interlocked.Read(ref _heldAt) is > 0 and var held ? new GlobalPosition(held) : null,
    };

    /// <summary>
    /// The most events the next batch reads: the route's batch size, or after a failure fewer, down to the one event that
    /// fails, so that one event a queue refuses holds back no event before it.
    /// </summary>
    private int _limit;

    /// <summary>The ids and positions of the batch last tried.</summary>
    private readonly List<(MessageId Id, GlobalPosition Position)> _batch = [];

    /// <summary>The position of the event that failed alone, or 0.</summary>
    private long _heldAt;

    /// <summary>
    /// The checkpoint as this router last read or wrote it: each batch's commit expects it there, so of several processes
    /// routing one route, the one that finds it moved knows another published those events, and goes on from there.
    /// </summary>
    private GlobalPosition _stored;

    /// <summary>The position of the last event routed (or passed over).</summary>
    public GlobalPosition Position => new(Interlocked.Read(ref _position));

    /// <summary>Starts routing from the checkpoint.</summary>
    /// <exception cref="InvalidOperationException">It was started before.</exception>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException($"The route '{Route.Name}' is already started.");
        }

        // Read now, so the route's position says where it stands once started. One that cannot be read (a backend
        // down as the host starts) is left to the loop, whose failures are waited out and retried, as a
        // subscription's: not a host that cannot start, nor a route that can never be started again.
        try
        {
            _stored = await _checkpoints.GetAsync(Route.CheckpointKey, cancellationToken).ConfigureAwait(false) ?? GlobalPosition.Start;
            Interlocked.Exchange(ref _position, _stored.Value);
            _checkpointRead = true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Interlocked.Exchange(ref _started, 0);
            throw;
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Route {Route} could not read its checkpoint as it started; it reads it again in the background.", Route.Name);
        }

        _limit = Route.BatchSize;

        // A disposal while the checkpoint was read has disposed what the loop would use: the start fails, and nothing runs.
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            _running = BackgroundWork.Start(RunAsync);
        }
    }

    /// <summary>Whether <see cref="StartAsync"/> read the checkpoint; the loop reads it first otherwise.</summary>
    private bool _checkpointRead;

    /// <summary>Waits until every event up to <paramref name="position"/> has been routed.</summary>
    /// <exception cref="InvalidOperationException">The route is not running, or stopped before it got there.</exception>
    public async Task WaitForPositionAsync(GlobalPosition position, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task advanced;
            bool ended;
            lock (_stopping)
            {
                if (Position >= position)
                {
                    return;
                }

                advanced = _advanced.Task;
                ended = _ended;
            }

            if (ended || _running.IsCompleted)
            {
                throw new InvalidOperationException($"Route '{Route.Name}' is not running.");
            }

            await advanced.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Stops after the batch in hand.</summary>
    public Task StopAsync(CancellationToken cancellationToken) =>
        // Disposed: stopped already, and its token source disposed.
        Volatile.Read(ref _disposed) != 0 ? Task.CompletedTask : StopRunningAsync(cancellationToken);

    private async Task StopRunningAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _running.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        lock (_lifecycle)
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
        }

        await StopRunningAsync(CancellationToken.None).ConfigureAwait(false);
        _stopping.Dispose();
    }

    private async Task RunAsync()
    {
        try
        {
            await RouteUntilStoppedAsync().ConfigureAwait(false);
        }
        finally
        {
            // Waiters for a position not reached would otherwise wait for an advance that never comes.
            TaskCompletionSource released;
            lock (_stopping)
            {
                _ended = true;
                released = _advanced;
            }

            released.TrySetResult();
        }
    }

    private async Task RouteUntilStoppedAsync()
    {
        var token = _stopping.Token;
        var failures = 0;
        var reread = !_checkpointRead;
        while (!token.IsCancellationRequested)
        {
            try
            {
                if (reread)
                {
                    // After a failure (or a start that could not read it), from the stored checkpoint: in the loop's try,
                    // so a passing fault of this look-up is one more failure to wait out and retry, not the end of the route.
                    var checkpoint = await _checkpoints.GetAsync(Route.CheckpointKey, token).ConfigureAwait(false);
                    _stored = checkpoint ?? GlobalPosition.Start;
                    if (_stored > Position)
                    {
                        // Its first read, when the start could not: a wait for a position it covers is over.
                        Advance(_stored);
                    }
                    else
                    {
                        Interlocked.Exchange(ref _position, _stored.Value);
                    }

                    LetGoIfPublished();
                    reread = false;
                }

                // The head is read before the scan: an event committed during the scan is then never passed over.
                var head = await _store.GetHeadPositionAsync(token).ConfigureAwait(false);
                var routed = await RouteBatchAsync(token).ConfigureAwait(false);
                failures = 0;
                Volatile.Write(ref _failuresInARow, 0);
                if (!routed)
                {
                    if (head > Position)
                    {
                        // Nothing matched up to the head: remember that without a write.
                        Advance(head);
                    }

                    await _store.WaitForAppendAsync(Position, token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (CheckpointConflictException moved)
            {
                // Another process routed these events (or some of them) first: go on from where it left off.
                _stored = moved.Actual;
                if (moved.Actual > Position)
                {
                    Advance(moved.Actual);
                }

                LetGoIfPublished();
            }
            catch (Exception ex)
            {
                failures++;
                Volatile.Write(ref _failuresInARow, failures);
                Interlocked.Increment(ref _failures);
                _lastError = $"{ex.GetType().Name}: {ex.Message}";
                Narrow(ex);
                var delay = TimeSpan.FromMilliseconds(Math.Min(30_000, 100 * Math.Pow(2, Math.Min(failures, 10))));
                _logger.LogError(ex, "Route {Route} failed to publish to {Topic}; retrying from its checkpoint in {Delay}.", Route.Name, Route.Topic, delay);
                try
                {
                    await Task.Delay(delay, _time, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                reread = true;
            }
        }
    }

    /// <summary>Publishes the next batch with the checkpoint; false when no event matched.</summary>
    private async Task<bool> RouteBatchAsync(CancellationToken cancellationToken)
    {
        var transaction = new MessageTransaction();
        var last = Position;
        _batch.Clear();
        await foreach (var recorded in _store.ReadAllAsync(last.Next, Route.Filter, _limit, cancellationToken).ConfigureAwait(false))
        {
            var message = EventMessages.ToMessage(recorded);
            transaction.Publish(Route.Topic, message);
            _batch.Add((message.Id, recorded.Position));
            last = recorded.Position;
        }

        if (last == Position)
        {
            return false;
        }

        transaction.SetCheckpoint(Route.CheckpointKey, last, expected: _stored);
        await _broker.CommitAsync(transaction, cancellationToken).ConfigureAwait(false);
        _stored = last;
        _limit = Route.BatchSize;
        Interlocked.Exchange(ref _heldAt, 0);
        Advance(last);
        return true;
    }

    /// <summary>
    /// After a failed batch, reads fewer events next time: those before the message a refusal names, else half as many,
    /// down to the one event that fails alone, which the route is then held at. A failure of the broker itself (its
    /// topic missing, the connection down) also narrows the batches until the first success.
    /// </summary>
    private void Narrow(Exception failure)
    {
        if (_batch.Count == 0)
        {
            return;
        }

        if (_batch.Count == 1)
        {
            // Held by the event only when the broker refused the message itself, not when it failed (a missing topic).
            if (failure is MessageTooLargeException or InvalidMessageException)
            {
                Interlocked.Exchange(ref _heldAt, _batch[0].Position.Value);
            }

            return;
        }

        var refused = failure is MessageTooLargeException tooLarge ? _batch.FindIndex(b => b.Id == tooLarge.MessageId) : -1;
        _limit = refused > 0 ? refused : refused == 0 ? 1 : Math.Max(1, _batch.Count / 2);
    }

    /// <summary>
    /// Clears <see cref="EventRouteStatus.HeldAt"/> once the checkpoint has passed the event the route was held at:
    /// another process published it, and this one has nothing of it left to commit.
    /// </summary>
    private void LetGoIfPublished()
    {
        if (Interlocked.Read(ref _heldAt) is > 0 and var held && _stored.Value >= held)
        {
            Interlocked.Exchange(ref _heldAt, 0);
        }
    }

    private void Advance(GlobalPosition position)
    {
        TaskCompletionSource released;
        lock (_stopping)
        {
            Interlocked.Exchange(ref _position, position.Value);
            released = _advanced;
            _advanced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        released.TrySetResult();
    }
}
