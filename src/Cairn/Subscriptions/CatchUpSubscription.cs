using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Subscriptions;

/// <summary>
/// Delivers the events of <c>$all</c>, a category, a stream or event types to a handler, in order: history from the
/// stored checkpoint first, then live events as they are committed, with no gap and no duplicate at the switch-over.
/// A handler that throws or a store that fails stops the subscription loudly (status, log entry, metric); it then
/// resumes from its checkpoint after a growing delay. Delivery is at least once: events after the last stored
/// checkpoint are delivered again after a crash or a failure.
/// </summary>
public sealed class CatchUpSubscription : IAsyncDisposable
{
    private readonly IEventStore _store;
    private readonly ICheckpointStore _checkpoints;
    private readonly Func<RecordedEvent, CancellationToken, ValueTask> _handler;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly List<(long Position, TaskCompletionSource Done)> _waiters = [];
    private readonly KeyValuePair<string, object?> _nameTag;
    private CancellationTokenSource? _stop;

    /// <summary>The handler's token: cancelled when a stop's time is up, or on disposal; not by the stop itself.</summary>
    private CancellationTokenSource? _abort;
    private Task? _run;

    /// <summary>Follows the head once the run gave up, so the lag keeps counting (ended by the stop token).</summary>
    private Task _headWatch = Task.CompletedTask;
    private SubscriptionStatus _status;
    private long _position;
    private long _checkpointed;
    private GlobalPosition? _endResolvedAt;
    private long _head;
    private volatile bool _caughtUp;
    private long _caughtUpHead;
    private long _buffered;
    private long _handled;
    private int _live;

    /// <summary>Creates a subscription; nothing is read until <see cref="StartAsync"/>.</summary>
    public CatchUpSubscription(
        IEventStore store,
        ICheckpointStore checkpoints,
        SubscriptionOptions options,
        Func<RecordedEvent, CancellationToken, ValueTask> handler,
        ILogger<CatchUpSubscription>? logger = null,
        TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(checkpoints);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handler);
        options.Validate();
        _store = store;
        _checkpoints = checkpoints;
        Options = options;
        _handler = handler;
        _logger = logger ?? NullLogger<CatchUpSubscription>.Instance;
        _clock = timeProvider ?? TimeProvider.System;
        _nameTag = new("subscription", options.Name);
        _status = new SubscriptionStatus(options.Name, SubscriptionState.Stopped, GlobalPosition.Start, 0, null, null);
    }

    /// <summary>The subscription's settings.</summary>
    public SubscriptionOptions Options { get; }

    /// <summary>What the subscription is doing now.</summary>
    public SubscriptionStatus Status => Volatile.Read(ref _status) with
    {
        Position = new GlobalPosition(Volatile.Read(ref _position)),

        // Read live: a handled event ends a run of failures at once, not when the subscription next changes state.
        Failures = Volatile.Read(ref _failuresInARow),
    };

    /// <summary>Starts reading from the stored checkpoint (or <see cref="SubscriptionOptions.Start"/>) in the background.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        // One start wins, also against a start or a disposal on another thread: a second run would handle every event
        // again, and nothing could stop it.
        lock (_lifecycle)
        {
            if (_disposing)
            {
                return Refusal.Of(new ObjectDisposedException(nameof(CatchUpSubscription), $"The subscription '{Options.Name}' is disposed."));
            }

            if (_run is not null)
            {
                return Refusal.Of(new InvalidOperationException($"The subscription '{Options.Name}' is already started."));
            }

            _stop = new CancellationTokenSource();
            _abort = new CancellationTokenSource();
            CairnDiagnostics.TrackLag(this, () => new Measurement<long>(Math.Max(0, Volatile.Read(ref _head) - Volatile.Read(ref _position)), _nameTag));
            _run = BackgroundWork.Start(() => RunAsync(_stop.Token, _abort.Token));
            return Task.CompletedTask;
        }
    }

    /// <summary>
    /// Stops after the event in hand, stores the checkpoint and waits for the background work to end. The handler's
    /// token is cancelled only when <paramref name="cancellationToken"/> fires (a host's shutdown time is up): the stop
    /// then waits a moment for a handler that listens, logs a warning and returns, and the event in hand is delivered
    /// again at the next start.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (await StopRunAsync(cancellationToken).ConfigureAwait(false) || _disposed)
        {
            return;
        }

        await _abort!.CancelAsync().ConfigureAwait(false);
        using var grace = new CancellationTokenSource(AbortGrace);
        if (!await StopRunAsync(grace.Token).ConfigureAwait(false))
        {
            _logger.LogWarning("Subscription {Subscription} stopped with its handler still running past the stop's time; the events after its checkpoint at {Position} are delivered again at its next start.", Options.Name, Volatile.Read(ref _checkpointed));
        }
    }

    /// <summary>Ends the run after the event in hand; true once it has ended, false when <paramref name="cancellationToken"/> fired first.</summary>
    private async Task<bool> StopRunAsync(CancellationToken cancellationToken)
    {
        if (_run is null || _stop is null)
        {
            // Never started: it has ended all the same, and nothing would answer a wait for a position.
            FailWaiters();
            return true;
        }

        try
        {
            if (!_disposed)
            {
                await _stop.CancelAsync().ConfigureAwait(false);
            }

            await _run.WaitAsync(cancellationToken).ConfigureAwait(false);
            await _headWatch.WaitAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return false;
        }
        finally
        {
            CairnDiagnostics.UntrackLag(this);
        }
    }

    /// <summary>Completes when the subscription has handled the event at <paramref name="position"/> or a later one.</summary>
    public Task WaitForPositionAsync(GlobalPosition position, CancellationToken cancellationToken)
    {
        lock (_waiters)
        {
            if (Volatile.Read(ref _position) >= position.Value)
            {
                return Task.CompletedTask;
            }

            if (_ended)
            {
                return Task.FromException(Ended(position));
            }

            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var waiter = (position.Value, done);
            _waiters.Add(waiter);
            if (cancellationToken.CanBeCanceled)
            {
                // A cancelled wait leaves the list, so abandoned waits do not pile up.
                var registration = cancellationToken.Register(() =>
                {
                    lock (_waiters)
                    {
                        _waiters.Remove(waiter);
                    }

                    done.TrySetCanceled(cancellationToken);
                });
                done.Task.ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }

            return done.Task;
        }
    }

    /// <summary>
    /// Stops: the handler's token is cancelled, and the disposal waits for it to return for at most
    /// <see cref="DisposeGrace"/>, so a handler that ignores its cancellation cannot hold up a host's shutdown (its
    /// events after the last checkpoint are delivered again at the next start). Call <see cref="StopAsync"/> first to
    /// wait as long as a token allows.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        lock (_lifecycle)
        {
            if (_disposing)
            {
                return;
            }

            _disposing = true;
        }

        // The stop first, then the handler's token: a handler ending on its token then ends a run that is stopping, not
        // one that failed.
        if (_stop is not null && _abort is not null)
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await _abort.CancelAsync().ConfigureAwait(false);
        }

        using (var grace = new CancellationTokenSource(DisposeGrace))
        {
            if (!await StopRunAsync(grace.Token).ConfigureAwait(false))
            {
                // The run goes on until its handler returns; it must then write nothing: a subscription of this name
                // started since may have stored a later checkpoint.
                _abandoned = true;
                _logger.LogWarning("Subscription {Subscription} was disposed while its handler, cancelled, still ran; the events after its checkpoint at {Position} are delivered again at its next start.", Options.Name, Volatile.Read(ref _checkpointed));
            }
        }

        _disposed = true;
        if (_run is null || _run.IsCompleted)
        {
            _stop?.Dispose();
            _abort?.Dispose();
        }
    }

    /// <summary>Completes when the background work has ended (at once when it never started).</summary>
    internal Task Completion => _run ?? Task.CompletedTask;

    /// <summary>Set when a disposal stopped waiting for the run: what it still does is not stored.</summary>
    private volatile bool _abandoned;

    /// <summary>How long <see cref="DisposeAsync"/> waits for a cancelled handler to return.</summary>
    internal static readonly TimeSpan DisposeGrace = TimeSpan.FromSeconds(2);

    /// <summary>How long a stop whose time is up waits for the handler it cancelled to return.</summary>
    private static readonly TimeSpan AbortGrace = TimeSpan.FromSeconds(2);

    /// <summary>Whether <see cref="DisposeAsync"/> has run: a second one, or a stop after it, has nothing to do.</summary>
    private bool _disposed;

    /// <summary>Set, under <see cref="_lifecycle"/>, when a disposal begins: no start after it.</summary>
    private bool _disposing;

    /// <summary>Held while a start or a disposal claims the subscription.</summary>
    private readonly Lock _lifecycle = new();

    private async Task RunAsync(CancellationToken stop, CancellationToken abort)
    {
        var gaveUp = false;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var stored = await _checkpoints.GetAsync(Options.Name, stop).ConfigureAwait(false);
                    if (stored is { } checkpoint && !_checkedAgainstHead)
                    {
                        await WarnIfPastHeadAsync(checkpoint, stop).ConfigureAwait(false);
                    }

                    var from = stored
                        ?? await ResolveEndAsync(stop).ConfigureAwait(false)
                        ?? GlobalPosition.Start;
                    Volatile.Write(ref _position, from.Value);
                    _checkpointed = from.Value;
                    SetStatus(SubscriptionState.CatchingUp, Volatile.Read(ref _failuresInARow), Status.LastError, Status.LastErrorAt);
                    _logger.LogInformation("Subscription {Subscription} starts after position {Position} ({Filter}).", Options.Name, from, Options.Filter);
                    await PumpAsync(from, () => Volatile.Write(ref _failuresInARow, 0), stop, abort).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception ex)
                {
                    var failures = Interlocked.Increment(ref _failuresInARow);
                    CairnDiagnostics.SubscriptionFailures.Add(1, _nameTag);
                    SetStatus(SubscriptionState.Faulted, failures, ex, _clock.GetUtcNow());
                    await TryStoreCheckpointAsync().ConfigureAwait(false);
                    if (Options.MaxRetries is { } max && failures > max)
                    {
                        _logger.LogCritical(ex, "Subscription {Subscription} failed {Failures} times in a row at position {Position} and has stopped for good.", Options.Name, failures, Volatile.Read(ref _position));
                        SetStatus(SubscriptionState.Stopped, failures, ex, Status.LastErrorAt);
                        gaveUp = true;
                        return;
                    }

                    var delay = RetryDelay(failures);
                    _logger.LogError(ex, "Subscription {Subscription} failed after position {Position} (failure {Failures} in a row); it resumes from its checkpoint in {Delay}.", Options.Name, Volatile.Read(ref _position), failures, delay);
                    using var pause = CancellationTokenSource.CreateLinkedTokenSource(stop);
                    var watching = WatchHeadAsync(pause.Token);
                    try
                    {
                        await Task.Delay(delay, _clock, stop).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                    finally
                    {
                        await pause.CancelAsync().ConfigureAwait(false);
                        await watching.ConfigureAwait(false);
                    }
                }
            }
        }
        finally
        {
            await TryStoreCheckpointAsync().ConfigureAwait(false);
            var last = Status;
            if (last.State != SubscriptionState.Stopped)
            {
                SetStatus(SubscriptionState.Stopped, last.Failures, last.LastError, last.LastErrorAt);
            }

            _logger.LogInformation("Subscription {Subscription} stopped at position {Position}.", Options.Name, Volatile.Read(ref _position));
            FailWaiters();
            if (gaveUp)
            {
                // The run has ended, but the lag is still reported until a stop or a disposal: it grows with the log.
                _headWatch = BackgroundWork.Start(() => WatchHeadAsync(stop));
            }
        }
    }

    /// <summary>
    /// Fails the waits for positions the subscription never reached once it has ended (stopped, disposed, or given up
    /// after its retries), and any wait asked for after: nothing would ever complete them.
    /// </summary>
    private void FailWaiters()
    {
        lock (_waiters)
        {
            _ended = true;
            foreach (var (position, done) in _waiters)
            {
                done.TrySetException(Ended(new GlobalPosition(position)));
            }

            _waiters.Clear();
        }
    }

    private bool _ended;

    private InvalidOperationException Ended(GlobalPosition position)
    {
        var last = Status;
        return new InvalidOperationException($"Subscription '{Options.Name}' has stopped at position {last.Position.Value} and will not reach {position.Value}{(last.LastError is { } error ? $" (last error: {error.Message})" : "")}.");
    }

    private TimeSpan RetryDelay(int failures)
    {
        var ticks = Options.RetryDelay.Ticks * Math.Pow(2, Math.Min(failures - 1, 30));
        return TimeSpan.FromTicks((long)Math.Min(ticks, Options.MaxRetryDelay.Ticks));
    }

    private async Task PumpAsync(GlobalPosition from, Action onSuccess, CancellationToken stop, CancellationToken abort)
    {
        var buffer = Channel.CreateBounded<RecordedEvent>(new BoundedChannelOptions(Options.BufferSize)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        using var readerStop = CancellationTokenSource.CreateLinkedTokenSource(stop);
        _caughtUp = false;
        Interlocked.Exchange(ref _buffered, 0);
        Interlocked.Exchange(ref _handled, 0);
        Interlocked.Exchange(ref _live, 0);
        var reader = Task.Run(() => ReadIntoAsync(from, buffer.Writer, readerStop.Token), CancellationToken.None);
        try
        {
            var sinceCheckpoint = 0;
            var lastCheckpoint = _clock.GetTimestamp();
            while (true)
            {
                if (!buffer.Reader.TryRead(out var e))
                {
                    // Idle and caught up: every event up to the head the reader reached is handled, including the ones
                    // the filter skipped, so the position (and the next checkpoint) can move there. The head is read
                    // before the counters: the reader counts an event as buffered before it publishes a head past it,
                    // so an event still in the buffer (or in flight into it) always shows as handled < buffered.
                    var caughtUpHead = Volatile.Read(ref _caughtUpHead);
                    if (_caughtUp && Interlocked.Read(ref _handled) == Interlocked.Read(ref _buffered))
                    {
                        AdvanceTo(caughtUpHead);
                        MarkLive();
                    }

                    if (Volatile.Read(ref _position) != _checkpointed)
                    {
                        // Unsaved progress: store it once the interval is up, unless more events come first.
                        var due = Options.CheckpointInterval - _clock.GetElapsedTime(lastCheckpoint);
                        if (due <= TimeSpan.Zero || !await WaitToReadAsync(buffer.Reader, due, stop).ConfigureAwait(false))
                        {
                            await StoreCheckpointAsync(stop).ConfigureAwait(false);
                            sinceCheckpoint = 0;
                            lastCheckpoint = _clock.GetTimestamp();
                        }

                        continue;
                    }

                    // Live and idle, the reader may still move the position past events the filter skips: woken once
                    // an interval, the loop stores that progress too, so a rare event type's checkpoint does not lag.
                    if (!await WaitToReadAsync(buffer.Reader, Options.CheckpointInterval, stop).ConfigureAwait(false)
                        && buffer.Reader.Completion.IsCompleted)
                    {
                        return;
                    }

                    continue;
                }

                // A stop ends the pump after the event in hand, not after the whole buffer: the events read ahead are
                // read again from the checkpoint by the next start.
                stop.ThrowIfCancellationRequested();
                await HandleAsync(e, stop, abort).ConfigureAwait(false);
                onSuccess();
                Interlocked.Increment(ref _handled);
                AdvanceTo(e.Position.Value);
                sinceCheckpoint++;
                if (sinceCheckpoint >= Options.CheckpointEvery || _clock.GetElapsedTime(lastCheckpoint) >= Options.CheckpointInterval)
                {
                    await StoreCheckpointAsync(stop).ConfigureAwait(false);
                    sinceCheckpoint = 0;
                    lastCheckpoint = _clock.GetTimestamp();
                }
            }
        }
        finally
        {
            await readerStop.CancelAsync().ConfigureAwait(false);
            try
            {
                await reader.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private async Task ReadIntoAsync(GlobalPosition from, ChannelWriter<RecordedEvent> writer, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in _store.SubscribeAsync(from, Options.Filter, cancellationToken, Math.Min(Options.BufferSize, 512), OnProgress).ConfigureAwait(false))
            {
                if (!writer.TryWrite(e))
                {
                    _caughtUp = false;
                    await writer.WriteAsync(e, cancellationToken).ConfigureAwait(false);
                }

                Interlocked.Increment(ref _buffered);
            }

            writer.TryComplete();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            writer.TryComplete();
        }
        catch (Exception ex)
        {
            writer.TryComplete(ex);
        }
    }

    private void OnProgress(GlobalPosition head, bool caughtUp)
    {
        ObserveHead(head.Value);

        if (caughtUp)
        {
            Volatile.Write(ref _caughtUpHead, head.Value);
        }

        _caughtUp = caughtUp;

        // The pump goes live when it finds the buffer empty after the reader caught up. If the pump emptied it first,
        // nothing wakes it until the next event, so the reader goes live itself once everything it read is handled.
        Interlocked.MemoryBarrier();
        if (caughtUp && Interlocked.Read(ref _handled) == Interlocked.Read(ref _buffered))
        {
            AdvanceTo(head.Value);
            MarkLive();
        }
    }

    /// <summary>
    /// Waits for the next event for at most <paramref name="timeout"/>: true when one is ready, false when the time
    /// is up or the buffer is complete. A buffer completed by a reader's error throws it, as the untimed wait does.
    /// </summary>
    private async Task<bool> WaitToReadAsync(ChannelReader<RecordedEvent> reader, TimeSpan timeout, CancellationToken stop)
    {
        // Timed on the subscription's clock, which also measures the interval this waits out.
        using var timer = new CancellationTokenSource(timeout, _clock);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(stop, timer.Token);
        try
        {
            return await reader.WaitToReadAsync(either.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>Moves the handled position forward (never back) and releases those waiting for it.</summary>
    private void AdvanceTo(long position)
    {
        HeadWatch.Raise(ref _position, position);
        ReleaseWaiters(Volatile.Read(ref _position));
    }

    /// <summary>
    /// Failures in a row, which <see cref="SubscriptionOptions.MaxRetries"/> bounds: a handled event ends a run of them,
    /// and so does going live (a quiet log, or a filter skipping everything, has no event to handle).
    /// </summary>
    private int _failuresInARow;

    private void MarkLive()
    {
        if (Interlocked.Exchange(ref _live, 1) == 0)
        {
            Volatile.Write(ref _failuresInARow, 0);
            SetStatus(SubscriptionState.Live, 0, Status.LastError, Status.LastErrorAt);
            _logger.LogInformation("Subscription {Subscription} is live at position {Position}.", Options.Name, Volatile.Read(ref _position));
        }
    }

    private async ValueTask HandleAsync(RecordedEvent e, CancellationToken stop, CancellationToken abort)
    {
        ActivityContext.TryParse(e.TraceParent, null, out var parent);
        using var activity = CairnDiagnostics.SubscriptionSource.StartActivity(
            "cairn.subscription.handle",
            ActivityKind.Consumer,
            parentContext: default,
            links: parent == default ? null : [new ActivityLink(parent)]);
        if (activity is not null)
        {
            activity.SetTag("cairn.subscription", Options.Name);
            activity.SetTag("cairn.stream", e.Stream.Value);
            activity.SetTag("cairn.event.type", e.Type);
            activity.SetTag("cairn.position", e.Position.Value);
        }

        // As a consumer handles a message: what the handler appends or sends carries the event's correlation, the event
        // as its cause, and (when no span continues it) the event's trace.
        using var causation = MessageContext.Begin(e.CorrelationId, e.Id.ToString(), activity is null ? e.TraceParent : null);
        var started = Stopwatch.GetTimestamp();
        try
        {
            await _handler(e, abort).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !(stop.IsCancellationRequested || abort.IsCancellationRequested))
        {
            activity?.AddException(ex);
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            throw new SubscriptionHandlerException(Options.Name, e, ex);
        }
        finally
        {
            CairnDiagnostics.SubscriptionHandlerDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, _nameTag);
        }

        CairnDiagnostics.SubscriptionEvents.Add(1, _nameTag);
        ObserveHead(e.Position.Value);
    }

    /// <summary>Raises the head the lag is counted to; never lowers it (the reader, the handler and a watch all report).</summary>
    private void ObserveHead(long head) => HeadWatch.Raise(ref _head, head);

    /// <summary>
    /// Follows the head while the subscription reads nothing (a failure's pause, or stopped for good), so its lag grows
    /// with what is appended meanwhile; ends with <paramref name="until"/>.
    /// </summary>
    private Task WatchHeadAsync(CancellationToken until) =>
        HeadWatch.FollowAsync(_store, ObserveHead, _clock, _logger, $"Subscription {Options.Name}", until);

    private bool _checkedAgainstHead;

    /// <summary>
    /// A checkpoint past the store's head means the store was restored from a backup or replaced, or the checkpoint
    /// belongs to another store: the events appended up to it will not be delivered. Said once, at the first start.
    /// </summary>
    private async Task WarnIfPastHeadAsync(GlobalPosition checkpoint, CancellationToken stop)
    {
        var head = await _store.GetHeadPositionAsync(stop).ConfigureAwait(false);
        _checkedAgainstHead = true;
        if (checkpoint > head)
        {
            _logger.LogWarning(
                "Subscription {Subscription}'s checkpoint {Checkpoint} is past the store's head {Head}: the store was restored or replaced, or the checkpoint is another store's. The events appended up to it will not be delivered unless the checkpoint is set back (ICheckpointStore.SetAsync).",
                Options.Name,
                checkpoint,
                head);
        }
    }

    /// <summary>
    /// Where a subscription starting at <see cref="SubscriptionStart.End"/> without a checkpoint begins: the head when it
    /// first started, stored as its checkpoint at once. A retry after a failure, or a later start, then goes on from
    /// there, and never skips what was appended since (an event its handler failed on first of all). Null for a
    /// subscription starting at <see cref="SubscriptionStart.Beginning"/>.
    /// </summary>
    private async Task<GlobalPosition?> ResolveEndAsync(CancellationToken stop)
    {
        if (Options.Start != SubscriptionStart.End)
        {
            return null;
        }

        // Kept in memory too, for a retry after the store refused the checkpoint.
        _endResolvedAt ??= await _store.GetHeadPositionAsync(stop).ConfigureAwait(false);
        await _checkpoints.SetAsync(Options.Name, _endResolvedAt.Value, stop).ConfigureAwait(false);
        return _endResolvedAt;
    }

    private async Task StoreCheckpointAsync(CancellationToken cancellationToken)
    {
        var position = Volatile.Read(ref _position);
        if (position == _checkpointed || _abandoned)
        {
            return;
        }

        await _checkpoints.SetAsync(Options.Name, new GlobalPosition(position), cancellationToken).ConfigureAwait(false);
        _checkpointed = position;
    }

    private async Task TryStoreCheckpointAsync()
    {
        try
        {
            await StoreCheckpointAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Subscription {Subscription} could not store its checkpoint at {Position}; events after the previous one will be delivered again.", Options.Name, Volatile.Read(ref _position));
        }
    }

    private void ReleaseWaiters(long position)
    {
        lock (_waiters)
        {
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Position <= position)
                {
                    _waiters[i].Done.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    private void SetStatus(SubscriptionState state, int failures, Exception? error, DateTimeOffset? errorAt) =>
        Volatile.Write(ref _status, new SubscriptionStatus(Options.Name, state, new GlobalPosition(Volatile.Read(ref _position)), failures, error, errorAt));
}

/// <summary>A subscription's handler threw while handling an event.</summary>
public sealed class SubscriptionHandlerException(string subscription, RecordedEvent recorded, Exception inner)
    : CairnException($"The handler of subscription '{subscription}' threw on event {recorded.Id} ({recorded.Type}, {recorded.Stream}@{recorded.Version}, position {recorded.Position}): {inner.Message}", inner)
{
    /// <summary>The subscription.</summary>
    public string Subscription { get; } = subscription;

    /// <summary>The event being handled.</summary>
    public RecordedEvent Event { get; } = recorded;
}
