using System.Runtime.CompilerServices;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Projections;

/// <summary>
/// Runs one projection: applies the log to its serving build in batches, each committed with its position, and during a
/// rebuild fills a shadow build from position 0 beside it, switching atomically once the shadow has caught up. An
/// inline projection is applied by the appends themselves once caught up; the runner brings it there and runs its
/// rebuilds. A failing event is retried, then meets the projection's <see cref="ProjectionFailurePolicy"/>; a failing
/// store is retried with a growing delay. On a store shared by several processes that offers leases
/// (<see cref="IProjectionLeases"/>), it applies only while it holds its projection's lease, and stands by otherwise.
/// Every state is visible in <see cref="Status"/> and in metrics.
/// </summary>
public sealed class ProjectionRunner : IAsyncDisposable
{
    /// <summary>How often a runner standing by reads the position the holder of the lease has stored.</summary>
    private static readonly TimeSpan StandbyPollInterval = TimeSpan.FromMilliseconds(250);

    private readonly IEventStore _store;
    private readonly IProjectionStore _projections;
    private readonly ProjectionApplier _applier;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly KeyValuePair<string, object?> _tag;
    private readonly object _gate = new();
    private readonly List<(long Position, TaskCompletionSource Done)> _waiters = [];
    private readonly RateWindow _rate;
    private CancellationTokenSource? _stop;
    private Task? _run;

    /// <summary>While the projection stands failed: the watch that keeps its head, and so its lag, up to date.</summary>
    private Task? _headWatch;
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource? _rebuildDone;
    private bool _rebuildRequested;

    /// <summary>Set while the loop makes the shadow a taken request asked for: a call then joins that rebuild.</summary>
    private bool _shadowStarting;
    private Track? _serving;
    private Track? _shadow;
    private bool _inlineLive;
    private ProjectionState _state = ProjectionState.Stopped;
    private long _head;
    /// <summary>
    /// The commit time of the oldest event the serving track has read and not applied yet (the first of the batch it is
    /// applying); null once it has reached the head.
    /// </summary>
    private DateTimeOffset? _oldestUnappliedAt;
    private long _failures;
    private long _deadLetters;
    private string? _lastError;
    private GlobalPosition? _failedEvent;
    private RebuildClock? _rebuild;
    private long _catchUpFailedAt;

    /// <summary>When a refused switch may be tried again (a <see cref="TimeProvider"/> timestamp), or 0.</summary>
    private long _switchRefusedUntil;

    /// <summary>
    /// The build whose switch was refused: only its own switch waits (a shadow's refused switch does not keep the serving
    /// build of an inline projection from going live in appends).
    /// </summary>
    private long _switchRefusedBuild;

    /// <summary>How long a runner waits before trying a refused switch again.</summary>
    private static readonly TimeSpan SwitchRetryDelay = TimeSpan.FromSeconds(30);

    /// <summary>Creates a runner; nothing runs until <see cref="StartAsync"/>. Refuses a projection whose handled types are not registered.</summary>
    public ProjectionRunner(Projection projection, IEventStore store, IProjectionStore projections, EventSerializer serializer, ILogger<ProjectionRunner>? logger = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(projections);
        _applier = new ProjectionApplier(projection, serializer);
        _store = store;
        _projections = projections;
        _logger = logger ?? NullLogger<ProjectionRunner>.Instance;
        _clock = timeProvider ?? TimeProvider.System;
        _tag = new("projection", projection.Name);
        _rate = new RateWindow(_clock);
    }

    /// <summary>The projection.</summary>
    public Projection Projection => _applier.Projection;

    /// <summary>The stored event types the projection reads.</summary>
    public IReadOnlyList<string> EventTypes => _applier.EventTypes;

    /// <summary>What the projection is doing now.</summary>
    public ProjectionStatus Status
    {
        get
        {
            lock (_gate)
            {
                var head = new GlobalPosition(Volatile.Read(ref _head));
                var position = ServingPosition;
                // How long the oldest unapplied event has waited since it was committed: a runner starting (or taking
                // over a lease) on a backlog is as far behind as its oldest event, not as long as it has been reading.
                var lag = _oldestUnappliedAt is { } committed && position < head ? Math.Max(0, (_clock.GetUtcNow() - committed).TotalSeconds) : 0;
                RebuildProgress? rebuild = null;
                if (_shadow is { } shadow && _rebuild is { } clock)
                {
                    rebuild = clock.Progress(shadow, head, _clock);
                }

                return new ProjectionStatus(
                    Projection.Name,
                    Projection.Lifecycle,
                    _state,
                    Projection.Version,
                    _serving?.Version,
                    position,
                    head,
                    lag,
                    _rate.PerSecond(),
                    _failures,
                    _deadLetters,
                    _lastError,
                    _failedEvent,
                    rebuild);
            }
        }
    }

    /// <summary>The position the serving read model has reached; for a live inline projection, the head.</summary>
    private GlobalPosition ServingPosition =>
        InlineFollowsHead ? new GlobalPosition(Math.Max(Volatile.Read(ref _head), _serving?.Reached.Value ?? 0)) : _serving?.Reached ?? GlobalPosition.Start;

    /// <summary>
    /// Whether the appends apply this inline projection, so its read model is at the head: not once they stopped (another
    /// process switched to a build of another version or shape), though the runner has not started again yet; a head
    /// observed meanwhile (by a batch it read) must not answer a wait for an event no read model holds.
    /// </summary>
    private bool InlineFollowsHead => _inlineLive && !_projections.IsInlineDetached(Projection.Name);

    /// <summary>
    /// The inline projections each event store's appends have a running runner for (by projection store, for a store
    /// that does not say which event store it applies them with). A store applies an inline projection by its name,
    /// once: a second runner of the same name, also over another projection store object of the same event store, would
    /// take its place and, stopping, take it away from the first.
    /// </summary>
    private static readonly ConditionalWeakTable<object, HashSet<string>> RunningInline = new();

    /// <summary>What <see cref="RunningInline"/> keys this runner's inline projection by.</summary>
    private object InlineScope => _projections is IInlineScope scoped ? scoped.InlineScope : _projections;

    /// <summary>Whether this runner holds its name in <see cref="RunningInline"/>.</summary>
    private bool _holdsInlineName;

    /// <summary>
    /// Starts applying in the background.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The runner is running already, or another runner of this inline projection runs over the same projection store.
    /// </exception>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            // Refused through the task, as every call of Cairn's: a host starting several services meets it where it awaits.
            if (_disposed)
            {
                return Refusal.Of(new ObjectDisposedException(GetType().FullName));
            }

            if (_run is { IsCompleted: false })
            {
                return Refusal.Of(new InvalidOperationException($"Projection '{Projection.Name}' is already running."));
            }

            if (Projection.Lifecycle == ProjectionLifecycle.Inline && !_holdsInlineName)
            {
                var names = RunningInline.GetOrCreateValue(InlineScope);
                lock (names)
                {
                    if (!names.Add(Projection.Name))
                    {
                        return Refusal.Of(new InvalidOperationException($"The inline projection '{Projection.Name}' already has a running runner over this projection store (or another over the same event store); a store applies an inline projection once, so run one runner of it per process."));
                    }
                }

                _holdsInlineName = true;
            }

            // Cancelled first: a failed run's head watch ends with it.
            _stop?.Cancel();
            _stop?.Dispose();
            _stop = new CancellationTokenSource();
            _headWatch = null;
            _state = ProjectionState.CatchingUp;
            _failedEvent = null;
            var stop = _stop.Token;
            _run = BackgroundWork.Start(() => RunAsync(stop));
        }

        CairnDiagnostics.TrackProjection(this, () => Status);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Stops after the batch in hand. When <paramref name="cancellationToken"/> fires first (a host's shutdown time is
    /// up) it logs a warning and returns, rather than failing the host's stop: the run ends after that batch.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        Task? run;
        Task? headWatch;
        lock (_gate)
        {
            run = _run;
            headWatch = _headWatch;
            if (!_disposed)
            {
                _stop?.Cancel();
            }
        }

        try
        {
            if (run is not null)
            {
                await run.WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            if (headWatch is not null)
            {
                await headWatch.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // A host's shutdown time is up (maybe used by a service stopped before this one): its stop must not fail
            // for that. The run ends after its batch, whose commit or rollback leaves the read model whole either way.
            _logger.LogWarning("Projection {Projection} stopped before its run ended (the stop's time was up); the batch in hand is committed or rolled back as it ends, and the next start goes on from the stored position.", Projection.Name);
        }
        finally
        {
            CairnDiagnostics.UntrackProjection(this);
            if (Projection.Lifecycle == ProjectionLifecycle.Inline && _holdsInlineName)
            {
                _projections.DetachInline(Projection.Name);
                var names = RunningInline.GetOrCreateValue(InlineScope);
                lock (names)
                {
                    names.Remove(Projection.Name);
                }

                _holdsInlineName = false;
            }
        }
    }

    /// <summary>
    /// Stops, waiting at most <see cref="DisposeGrace"/> for the batch in hand, so that a handler blocking in a
    /// projection's <c>Apply</c> cannot hold up a host's disposal without bound (that batch is committed or rolled
    /// back as it ends). Call <see cref="StopAsync"/> first to wait as long as a token allows.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        using (var grace = new CancellationTokenSource(DisposeGrace))
        {
            await StopAsync(grace.Token).ConfigureAwait(false);
        }

        lock (_gate)
        {
            _disposed = true;
        }

        if (_run is null || _run.IsCompleted)
        {
            _stop?.Dispose();
        }
    }

    /// <summary>Whether <see cref="DisposeAsync"/> has run: a second one, or a stop after it, has nothing to cancel.</summary>
    private bool _disposed;

    /// <summary>How long <see cref="DisposeAsync"/> waits for the batch in hand.</summary>
    private static readonly TimeSpan DisposeGrace = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Rebuilds the read model from position 0 into a shadow while the current one keeps serving; completes when the
    /// shadow has caught up and the switch is committed. Follow it in <see cref="ProjectionStatus.Rebuild"/>. A call
    /// while a rebuild runs waits for that one. <paramref name="cancellationToken"/> bounds the wait: a token already
    /// cancelled asks for nothing, and one cancelled later leaves the rebuild going on to its switch
    /// (<see cref="StopAsync"/> stops it; the next start resumes it).
    /// </summary>
    public Task RebuildAsync(CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }

        Task done;
        lock (_gate)
        {
            if (_run is null || _run.IsCompleted)
            {
                return Refusal.Of(new InvalidOperationException($"Projection '{Projection.Name}' is not running; start it before rebuilding."));
            }

            if (_state == ProjectionState.Standby)
            {
                // Only the process holding the lease writes builds; one that stands by would hold the request until
                // it took the lease, if ever.
                return Refusal.Of(new InvalidOperationException($"Projection '{Projection.Name}' stands by: another process holds its lease and runs it. Ask that process to rebuild it."));
            }

            _rebuildDone ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

            // A shadow filling (or switching) is the rebuild asked for: joined, not asked again, or a request left
            // pending through its switch would start another one nobody awaits. One stopped at an event is tried again.
            if ((_shadow is null && !_shadowStarting) || _shadow is { StoppedAt: not null })
            {
                _rebuildRequested = true;
            }

            done = _rebuildDone.Task;
        }

        Wake();
        return done.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Read-your-writes: completes once the serving read model includes the event at <paramref name="position"/> (the
    /// <see cref="AppendResult.LastPosition"/> a command returned). Throws <see cref="ProjectionWaitTimeoutException"/>
    /// when <paramref name="timeout"/> passes first (<see cref="Timeout.InfiniteTimeSpan"/> waits without limit), at once
    /// if the projection has failed.
    /// </summary>
    public async Task WaitForPositionAsync(GlobalPosition position, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (timeout != Timeout.InfiniteTimeSpan)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero, nameof(timeout));
        }

        TaskCompletionSource done;
        lock (_gate)
        {
            if (ServingPosition >= position)
            {
                return;
            }

            if (_state is ProjectionState.Failed or ProjectionState.Stopped)
            {
                throw new ProjectionWaitTimeoutException(Projection.Name, position, ServingPosition, TimeSpan.Zero, $"the projection is {_state.ToString().ToLowerInvariant()}{(_lastError is null ? "" : " after: " + _lastError)}");
            }

            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((position.Value, done));
        }

        try
        {
            await done.Task.WaitAsync(timeout, _clock, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            var status = Status;
            throw new ProjectionWaitTimeoutException(Projection.Name, position, status.Position, timeout, status.State == ProjectionState.Live ? null : $"the projection is {status.State}{(status.LastError is null ? "" : " after: " + status.LastError)}");
        }
        finally
        {
            lock (_gate)
            {
                _waiters.RemoveAll(w => w.Done == done);
            }
        }
    }

    /// <summary>
    /// The events this projection's builds skipped, by position: the serving build's and, during a rebuild, the
    /// shadow's (<see cref="ProjectionDeadLetter.Build"/>). A switch drops the old build's with it.
    /// </summary>
    public Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(int max = 100, CancellationToken cancellationToken = default) =>
        _projections.ListDeadLettersAsync(Projection.Name, max, cancellationToken);

    private async Task RunAsync(CancellationToken stop)
    {
        var failures = 0;
        while (!stop.IsCancellationRequested)
        {
            IProjectionLease? lease = null;
            try
            {
                lease = await AcquireLeaseAsync(stop).ConfigureAwait(false);
                using var work = lease is null ? null : CancellationTokenSource.CreateLinkedTokenSource(stop, lease.Lost);
                await OpenAsync(work?.Token ?? stop).ConfigureAwait(false);
                await LoopAsync(work?.Token ?? stop, () => failures = 0).ConfigureAwait(false);
                if (!stop.IsCancellationRequested && lease is not null)
                {
                    // The loop ended because the lease was lost, not because the runner stops.
                    throw new OperationCanceledException(lease.Lost);
                }

                break;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (lease is { Lost.IsCancellationRequested: true })
            {
                // Another process may hold the lease by now; whatever it writes, the positions batches expect keep
                // an event from being applied twice. A rebuild in progress is that process's to finish.
                _logger.LogWarning(ex, "Projection {Projection} lost its lease at position {Position}; it stands by to take it again.", Projection.Name, ServingPosition);
                LeaveRebuild();
            }
            catch (Exception ex) when (ex is ProjectionShapeChangedException or ProjectionVersionNewerException or ProjectionStoppedException or InvalidProjectionException or NotSupportedException)
            {
                Fail(ProjectionState.Failed, ex);
                FailWaiters();
                lock (_gate)
                {
                    _headWatch = BackgroundWork.Start(() => WatchHeadWhileFailedAsync(stop));
                }

                return;
            }
            catch (Exception ex)
            {
                failures++;
                Fail(ProjectionState.Faulted, ex);
                var delay = TimeSpan.FromMilliseconds(Math.Min(30_000, 100 * Math.Pow(2, Math.Min(failures - 1, 10))));
                _logger.LogError(ex, "Projection {Projection} failed at position {Position}; it resumes from its stored position in {Delay}.", Projection.Name, ServingPosition, delay);
                try
                {
                    await Task.Delay(delay, _clock, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            finally
            {
                if (lease is not null)
                {
                    await ReleaseLeaseAsync(lease).ConfigureAwait(false);
                }
            }
        }

        SetState(ProjectionState.Stopped);
        EndWaiters("the projection is stopped", $"Projection '{Projection.Name}' was stopped before its rebuild switched; the rebuild goes on from where it was when the projection starts again.");
    }

    /// <summary>
    /// Waits for the projection's lease when the store offers leases (null when it does not). While another process
    /// holds it, the runner stands by and follows the stored position, so read-your-writes waits here are released.
    /// </summary>
    private async Task<IProjectionLease?> AcquireLeaseAsync(CancellationToken stop)
    {
        if (_projections is not IProjectionLeases leases)
        {
            return null;
        }

        if (Projection.Lifecycle == ProjectionLifecycle.Inline)
        {
            // This process's appends apply the projection too, once the process holding the lease has made it live.
            _projections.AttachInline(Projection, _applier.Apply);
        }

        var acquiring = leases.AcquireAsync(Projection.Name, stop);
        if (!acquiring.IsCompleted)
        {
            SetState(ProjectionState.Standby);
            LeaveRebuild();
            _logger.LogInformation("Projection {Projection} stands by: another process holds its lease.", Projection.Name);
            while (!acquiring.IsCompleted)
            {
                await FollowAsync(stop).ConfigureAwait(false);
                using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stop);
                await Task.WhenAny(acquiring, Task.Delay(StandbyPollInterval, _clock, cancel.Token)).ConfigureAwait(false);
                await cancel.CancelAsync().ConfigureAwait(false);
            }
        }

        var lease = await acquiring.ConfigureAwait(false);
        SetState(ProjectionState.CatchingUp);
        _logger.LogInformation("Projection {Projection} holds its lease and runs here.", Projection.Name);
        return lease;
    }

    /// <summary>Follows the serving build's stored position while another process runs the projection.</summary>
    private async Task FollowAsync(CancellationToken stop)
    {
        try
        {
            var builds = await _projections.OpenAsync(Projection, stop).ConfigureAwait(false);
            var serving = builds.Serving;
            Track track;
            lock (_gate)
            {
                if (_serving is null || _serving.Build != serving.Id)
                {
                    _serving = new Track(serving, _applier);
                }

                track = _serving;
            }

            Advance(track, serving.Position);

            // The holder moves past events its projection does not handle without storing a position; so does this
            // follower: up to the next event it handles, or the head when there is none (read first, so an event
            // committed during the scan is not passed over). A wait for an append of an unhandled type completes here
            // as it does in the holder's process.
            var head = await _store.GetHeadPositionAsync(stop).ConfigureAwait(false);
            ObserveHead(head);
            GlobalPosition? next = null;
            await foreach (var recorded in _store.ReadAllAsync(serving.Position.Next, _applier.Filter, 1, stop).ConfigureAwait(false))
            {
                next = recorded.Position;
            }

            Advance(track, next is { } handled ? new GlobalPosition(handled.Value - 1) : head);
        }
        catch (Exception ex) when (!stop.IsCancellationRequested)
        {
            _logger.LogDebug(ex, "Projection {Projection} could not read its stored position while standing by.", Projection.Name);
        }
    }

    private async Task ReleaseLeaseAsync(IProjectionLease lease)
    {
        try
        {
            await lease.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A lease that cannot be released is released by the backend when its holder's connection ends.
            _logger.LogWarning(ex, "Projection {Projection} could not release its lease.", Projection.Name);
        }
    }

    private async Task OpenAsync(CancellationToken stop)
    {
        var builds = await _projections.OpenAsync(Projection, stop).ConfigureAwait(false);
        var serving = builds.Serving;
        var shadow = builds.Shadow;
        if (serving.Version > Projection.Version)
        {
            // A newer deployment rebuilt it: during a rolling deployment a process of the old code would otherwise
            // rebuild it back, and the next new one forward again.
            throw new ProjectionVersionNewerException(Projection.Name, serving.Version, Projection.Version);
        }

        var current = serving.Version == Projection.Version && serving.Shape == Projection.Shape;
        if (shadow is not null && (shadow.Version != Projection.Version || shadow.Shape != Projection.Shape))
        {
            // A shadow left by other code: start again.
            shadow = null;
        }

        if (!current && shadow is null)
        {
            if (Projection.RebuildOnVersionChange && serving.Version != Projection.Version)
            {
                _logger.LogInformation("Projection {Projection} is served by version {Old}; version {New} rebuilds it into a shadow.", Projection.Name, serving.Version, Projection.Version);
                shadow = await _projections.StartShadowAsync(Projection, stop).ConfigureAwait(false);
            }
            else if (serving.Shape != Projection.Shape)
            {
                throw new ProjectionShapeChangedException(Projection.Name, serving.Version, serving.Shape, Projection.Shape);
            }
            else
            {
                _logger.LogWarning("Projection {Projection} version {New} runs over a read model built by version {Old}; raise RebuildOnVersionChange or call RebuildAsync to rebuild it.", Projection.Name, Projection.Version, serving.Version);
            }
        }

        lock (_gate)
        {
            _serving = new Track(serving, _applier);
            _shadow = shadow is null ? null : new Track(shadow, _applier);
            _rebuild = shadow is null ? null : new RebuildClock(_clock.GetUtcNow(), _clock.GetTimestamp(), shadow.Position);
            _inlineLive = false;
        }

        if (Projection.Lifecycle == ProjectionLifecycle.Inline)
        {
            _projections.AttachInline(Projection, _applier.Apply);
        }

        _logger.LogInformation("Projection {Projection} ({Lifecycle}) starts at position {Position}{Shadow}.", Projection.Name, Projection.Lifecycle, serving.Position, shadow is null ? "" : $", rebuilding from {shadow.Position}");
    }

    private async Task LoopAsync(CancellationToken stop, Action onSuccess)
    {
        while (!stop.IsCancellationRequested)
        {
            var wake = WakeTask();
            if (TakeRebuildRequest())
            {
                ProjectionBuild? build = null;
                try
                {
                    build = await _projections.StartShadowAsync(Projection, stop).ConfigureAwait(false);
                }
                catch (Exception ex) when (!stop.IsCancellationRequested)
                {
                    // The rebuild asked for fails, and its caller learns why: the serving build goes on (a shadow
                    // that cannot be made, a permission missing say, must not hold it back), and asking again tries
                    // again. Left standing, the request would be retried before every step of the serving build.
                    lock (_gate)
                    {
                        _shadowStarting = false;
                        _rebuildDone?.TrySetException(ex);
                        _rebuildDone = null;
                    }

                    _logger.LogError(ex, "Projection {Projection} could not start its rebuild; the serving build goes on. Ask for the rebuild again to retry.", Projection.Name);
                }
                catch
                {
                    lock (_gate)
                    {
                        _shadowStarting = false;
                    }

                    throw;
                }

                if (build is not null)
                {
                    lock (_gate)
                    {
                        _shadow = new Track(build, _applier);
                        _rebuild = new RebuildClock(_clock.GetUtcNow(), _clock.GetTimestamp(), build.Position);
                        _shadowStarting = false;
                    }

                    _logger.LogInformation("Projection {Projection} rebuilds into build {Build}.", Projection.Name, build.Id);
                }
            }

            var progressed = false;
            var serving = _serving!;
            if (_shadow is { StoppedAt: null } shadow)
            {
                var step = await StepAsync(shadow, stop).ConfigureAwait(false);
                progressed |= step.Progressed;
                var inline = Projection.Lifecycle == ProjectionLifecycle.Inline;
                if (shadow.StoppedAt is null && NearHead(shadow, step.CaughtUp) && await GoLiveAsync(shadow, stop).ConfigureAwait(false))
                {
                    lock (_gate)
                    {
                        _serving = shadow;
                        _shadow = null;
                        _rebuild = null;
                        _inlineLive = inline;

                        // In the same lock as the shadow's end: a call from here on asks for a new rebuild, one before
                        // it waited for this one.
                        _rebuildDone?.TrySetResult();
                        _rebuildDone = null;
                    }

                    _logger.LogInformation("Projection {Projection} switched to build {Build} (version {Version}) at position {Position}.", Projection.Name, shadow.Build, shadow.Version, shadow.Reached);
                    serving = shadow;
                    progressed = true;
                }
            }

            if (_shadow is not null && !serving.Advances)
            {
                // The serving build is another version's, with other document collections or indexes than this code
                // writes (or SQL tables this code's statements failed on): it is left as it is, serving queries, until
                // the shadow's switch brings the new one up to the head in one commit. Writing this code's documents into
                // it failed on an index column it lacks, stopping the projection, or (in memory) stored index values
                // where its shape does not look for them. (A build whose documents fit, its own SQL tables changed, goes
                // on advancing under the new code while its statements run there.)
            }
            else if (!_inlineLive)
            {
                var step = await StepAsync(serving, stop).ConfigureAwait(false);
                progressed |= step.Progressed;
                // Also with a rebuild of this version under way (a process restarted during a rebuild): the serving
                // build goes live in appends while the shadow fills. Not one of another version.
                if (Projection.Lifecycle == ProjectionLifecycle.Inline && (_shadow is null || serving.Version == Projection.Version)
                    && NearHead(serving, step.CaughtUp) && await GoLiveAsync(serving, stop).ConfigureAwait(false))
                {
                    lock (_gate)
                    {
                        _inlineLive = true;
                    }

                    progressed = true;
                }

                if (step.CaughtUp && (Projection.Lifecycle == ProjectionLifecycle.Async || _inlineLive))
                {
                    SetLive();
                }
            }
            else if (_projections.IsInlineDetached(Projection.Name))
            {
                _logger.LogWarning("Projection {Projection}: appends here stopped applying it, another process having switched to a build of another version or shape; it starts again on what serves.", Projection.Name);
                await OpenAsync(stop).ConfigureAwait(false);
                progressed = true;
            }
            else
            {
                SetLive();
            }

            onSuccess();
            ReleaseWaiters();
            if (!progressed)
            {
                await WaitAsync(wake, stop).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Waits for an append after the slowest track, a rebuild request or the stop.</summary>
    private async Task WaitAsync(Task wake, CancellationToken stop)
    {
        // A refused switch is tried again when its delay is over, appends or not: at once when it already is.
        var retryIn = Timeout.InfiniteTimeSpan;
        if (_shadow is not null && _switchRefusedUntil != 0)
        {
            retryIn = RemainingUntil(_switchRefusedUntil);
            if (retryIn <= TimeSpan.Zero)
            {
                _switchRefusedUntil = 0;
                return;
            }
        }

        // A serving build this code's documents do not fit is left as it is during the rebuild: only the shadow waits.
        // A shadow stopped at an event waits for nothing.
        var after = _shadow is { StoppedAt: null } shadow
            ? _serving is { Advances: false } ? shadow.Reached : GlobalPosition.Min(shadow.Reached, ServingPosition)
            : ServingPosition;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(stop);
        var appended = _store.WaitForAppendAsync(after, cancel.Token);
        var retry = Task.Delay(retryIn, _clock, cancel.Token);
        await Task.WhenAny(appended, wake, retry).ConfigureAwait(false);
        await cancel.CancelAsync().ConfigureAwait(false);
        stop.ThrowIfCancellationRequested();
        // Once another process switched to a build of another version or shape, this process's appends stop applying
        // the projection: the position stops following the head, and the loop starts again on what serves.
        if (_inlineLive && !_projections.IsInlineDetached(Projection.Name))
        {
            var head = await _store.GetHeadPositionAsync(stop).ConfigureAwait(false);
            ObserveHead(head);
        }

        try
        {
            await appended.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!stop.IsCancellationRequested)
        {
            // Woken by a request instead.
        }
    }

    /// <summary>The time left until a <see cref="TimeProvider"/> timestamp; zero once it has passed.</summary>
    private TimeSpan RemainingUntil(long timestamp)
    {
        var now = _clock.GetTimestamp();
        return now >= timestamp ? TimeSpan.Zero : TimeSpan.FromSeconds((timestamp - now) / (double)_clock.TimestampFrequency);
    }

    /// <summary>Applies the next batch of a track; reports whether it wrote and whether it reached the head.</summary>
    private async Task<(bool Progressed, bool CaughtUp)> StepAsync(Track track, CancellationToken stop)
    {
        var size = track.ReadSize;
        var (head, events) = await TakeReadAsync(track, stop).ConfigureAwait(false);
        ObserveHead(head);
        var caughtUp = events.Count < size;
        track.ReadSize = caughtUp ? Projection.BatchSize : Math.Max(Projection.BatchSize, Math.Min(size * 2, Projection.CatchUpBatchSize));
        if (events.Count == 0)
        {
            Advance(track, head);
            return (false, true);
        }

        lock (_gate)
        {
            if (track == _serving)
            {
                // The batch about to be applied holds the oldest event not applied yet: the earlier ones are.
                _oldestUnappliedAt = events[0].Time;
            }
        }

        var position = caughtUp ? GlobalPosition.Max(head, events[^1].Position) : events[^1].Position;
        if (!caughtUp)
        {
            // A full batch: more is waiting. Read it while this one commits, so reading and writing overlap.
            // On a thread of its own: a backend whose reads complete synchronously would otherwise read before committing.
            var from = position.Next;
            var readSize = track.ReadSize;
            track.ReadAhead = (from, readSize, Task.Run(() => ReadAsync(from, readSize, stop), CancellationToken.None));
        }

        await CommitAsync(track, events, position, stop).ConfigureAwait(false);
        return (true, caughtUp);
    }

    /// <summary>The next batch of a track: the one read ahead when it starts where the track is, else a fresh read.</summary>
    private async Task<(GlobalPosition Head, List<RecordedEvent> Events)> TakeReadAsync(Track track, CancellationToken stop)
    {
        if (track.ReadAhead is { } ahead)
        {
            track.ReadAhead = null;
            try
            {
                var read = await ahead.Read.ConfigureAwait(false);
                if (ahead.From == track.Reached.Next && ahead.Size == track.ReadSize)
                {
                    return read;
                }
            }
            catch (Exception) when (!stop.IsCancellationRequested)
            {
                // Read again below; a lasting fault shows there.
            }
        }

        return await ReadAsync(track.Reached.Next, track.ReadSize, stop).ConfigureAwait(false);
    }

    /// <summary>Reads a batch; the head is read before the scan, so an event committed during the scan is never passed over.</summary>
    private async Task<(GlobalPosition Head, List<RecordedEvent> Events)> ReadAsync(GlobalPosition from, int size, CancellationToken stop)
    {
        var head = await _store.GetHeadPositionAsync(stop).ConfigureAwait(false);
        var events = new List<RecordedEvent>(Math.Min(size, 1024));
        await foreach (var recorded in _store.ReadAllAsync(from, _applier.Filter, size, stop).ConfigureAwait(false))
        {
            events.Add(recorded);
        }

        _applier.Decode(events);
        return (head, events);
    }

    /// <summary>
    /// Commits a batch, retrying a failing event and then applying the failure policy to it. False when another runner
    /// had moved the build on first: the track then goes on from where that one left it, and nothing of the batch that
    /// follows from this one may be written.
    /// </summary>
    private async Task<bool> CommitAsync(Track track, List<RecordedEvent> events, GlobalPosition position, CancellationToken stop)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await ApplyAsync(track, new ProjectionBatch(Projection.Name, track.Build, track.Stored, position, events, track.Apply), stop).ConfigureAwait(false);
                Committed(track, position, events.Count);
                return true;
            }
            catch (ProjectionConflictException conflict) when (conflict.BuildMissing)
            {
                // Another runner switched builds and dropped this one: start again from what is stored now.
                throw new InvalidOperationException($"Projection '{Projection.Name}' build {track.Build} is gone: {conflict.Message}", conflict);
            }
            catch (ProjectionConflictException conflict)
            {
                ContinueFrom(track, conflict);
                return false;
            }
            catch (ProjectionEventException failure) when (failure.Projection == Projection.Name && events.Contains(failure.Event))
            {
                Interlocked.Increment(ref _failures);
                CairnDiagnostics.ProjectionFailures.Add(1, _tag);
                lock (_gate)
                {
                    _lastError = failure.Message;
                }

                if (attempt <= Projection.MaxRetries)
                {
                    // Doubled each attempt, up to the longest delay a projection may be given.
                    var delay = TimeSpan.FromTicks((long)Math.Min(Projection.RetryDelay.Ticks * Math.Pow(2, Math.Min(attempt - 1, 62)), Subscriptions.SubscriptionOptions.MaxWait.Ticks));
                    _logger.LogWarning(failure.InnerException, "Projection {Projection} failed on event at position {Position} (attempt {Attempt}); retrying in {Delay}.", Projection.Name, failure.Event.Position, attempt, delay);
                    if (delay > TimeSpan.Zero)
                    {
                        await Task.Delay(delay, _clock, stop).ConfigureAwait(false);
                    }

                    continue;
                }

                await GiveUpAsync(track, events, failure, attempt, position, stop).ConfigureAwait(false);
                return true;
            }
        }
    }

    /// <summary>Another runner moved the build on first: the track goes on from where that one left it.</summary>
    private void ContinueFrom(Track track, ProjectionConflictException conflict)
    {
        _logger.LogWarning("Projection {Projection}: {Message} It continues from there.", Projection.Name, conflict.Message);
        track.Stored = conflict.Actual;
        track.Reached = conflict.Actual;
    }

    /// <summary>Commits what precedes the failing event, then stops at it or dead-letters it and goes on.</summary>
    private async Task GiveUpAsync(Track track, List<RecordedEvent> events, ProjectionEventException failure, int attempts, GlobalPosition position, CancellationToken stop)
    {
        var index = events.IndexOf(failure.Event);

        // Another runner committing first has met the failing event itself: skipping it from the position that one
        // reached would take the build back and apply the events after it twice.
        if (index > 0 && !await CommitAsync(track, events[..index], events[index - 1].Position, stop).ConfigureAwait(false))
        {
            return;
        }

        lock (_gate)
        {
            if (track == _serving)
            {
                // The events before it are applied: the lag counts from the failing event now, not the batch's first.
                _oldestUnappliedAt = failure.Event.Time;
            }
        }

        if (track == _serving && _shadow is not null && track.Version != Projection.Version)
        {
            // The serving build is another version's, and this code's statements failed on it (its SQL tables lack a
            // column they write, say): not the event's fault, nor the projection's. It serves as it is until the
            // shadow, built by this code, switches in with every event.
            track.HeldBack = true;
            _logger.LogWarning(failure, "Projection {Projection}: this code (version {Version}) failed on the serving build of version {Serving} at event {Position}; that build serves as it is until the rebuild's switch.", Projection.Name, Projection.Version, track.Version, failure.Event.Position);
            return;
        }

        if (Projection.OnFailure == ProjectionFailurePolicy.Stop)
        {
            if (track == _shadow && _serving is { Advances: true })
            {
                // The rebuild stops, not the projection: the serving build was built past this event and goes on.
                StopRebuild(track, failure, attempts);
                return;
            }

            lock (_gate)
            {
                _failedEvent = failure.Event.Position;
            }

            _logger.LogCritical(failure, "Projection {Projection} stopped at event {Position} after {Attempts} attempts (policy Stop). Fix the cause and restart it.", Projection.Name, failure.Event.Position, attempts);
            throw new ProjectionStoppedException(failure);
        }

        var e = failure.Event;
        var deadLetter = new ProjectionDeadLetter(Projection.Name, track.Build, e.Position, e.Id, e.Stream, e.Version, e.Type, FailureInfo.From(failure.InnerException ?? failure), attempts, _clock.GetUtcNow());
        var rest = events[(index + 1)..];
        var skippedTo = rest.Count == 0 ? position : e.Position;
        try
        {
            await ApplyAsync(track, new ProjectionBatch(Projection.Name, track.Build, track.Stored, skippedTo, [], track.Apply) { DeadLetters = [deadLetter] }, stop).ConfigureAwait(false);
        }
        catch (ProjectionConflictException conflict) when (!conflict.BuildMissing)
        {
            ContinueFrom(track, conflict);
            return;
        }

        Committed(track, skippedTo, 0);
        Interlocked.Increment(ref _deadLetters);
        CairnDiagnostics.ProjectionDeadLetters.Add(1, _tag);
        _logger.LogError(failure, "Projection {Projection} skipped event {Position} after {Attempts} attempts and recorded it as a dead letter.", Projection.Name, e.Position, attempts);
        if (rest.Count > 0)
        {
            await CommitAsync(track, rest, position, stop).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Whether a build is close enough to the head to switch: it read the last events there were, or it is within a
    /// few batches of the head, which the switch's own catch-up then covers (under a steady load the first may never
    /// happen). Not before an event a catch-up failed on has been met by the failure policy, nor within
    /// <see cref="SwitchRetryDelay"/> of a refused switch.
    /// </summary>
    private bool NearHead(Track track, bool caughtUp) =>
        track.Reached.Value >= _catchUpFailedAt
        && (_switchRefusedUntil == 0 || track.Build != _switchRefusedBuild || _clock.GetTimestamp() >= _switchRefusedUntil)
        && (caughtUp || Volatile.Read(ref _head) - track.Reached.Value <= 4L * Projection.BatchSize);

    /// <summary>
    /// Switches a build to serving (for inline, to being applied by appends) in one commit that first applies every
    /// event up to the head. False when an event of that catch-up fails: the normal batches then meet it with retries
    /// and the failure policy, and the switch is tried again past it. False too when the backend refuses the switch:
    /// the serving build goes on, the refusal shows as the last error, and the switch is tried again later.
    /// </summary>
    private async Task<bool> GoLiveAsync(Track track, CancellationToken stop)
    {
        try
        {
            var result = await ApplyAsync(
                track,
                new ProjectionBatch(Projection.Name, track.Build, track.Stored, track.Reached, [], track.Apply)
                {
                    GoLive = true,
                    CatchUpToHead = _applier.Filter,
                },
                stop).ConfigureAwait(false);
            Committed(track, result.Position, result.CaughtUp);
            return true;
        }
        catch (ProjectionEventException failure) when (failure.Projection == Projection.Name)
        {
            _catchUpFailedAt = failure.Event.Position.Value;
            _logger.LogWarning(failure, "Projection {Projection} could not switch: the catch-up failed on event {Position}; it goes on in batches.", Projection.Name, failure.Event.Position);
            return false;
        }
        catch (ProjectionSwitchRefusedException refused) when (refused.Projection == Projection.Name)
        {
            _switchRefusedUntil = _clock.GetTimestamp() + (long)(SwitchRetryDelay.TotalSeconds * _clock.TimestampFrequency);
            _switchRefusedBuild = track.Build;
            lock (_gate)
            {
                _lastError = $"{refused.GetType().Name}: {refused.Message}";
            }

            _logger.LogWarning(refused, "Projection {Projection} could not switch to build {Build}; the serving build goes on, and the switch is tried again in {Delay}.", Projection.Name, refused.Build, SwitchRetryDelay);
            return false;
        }
    }

    /// <summary>Applies a batch; the track's document cache keeps what it stored only when the commit succeeds.</summary>
    private async Task<ProjectionBatchResult> ApplyAsync(Track track, ProjectionBatch batch, CancellationToken stop)
    {
        try
        {
            var result = await _projections.ApplyAsync(batch, stop).ConfigureAwait(false);
            track.Cache.Commit();
            return result;
        }
        catch
        {
            track.Cache.Clear();
            throw;
        }
    }

    private void Committed(Track track, GlobalPosition position, int events)
    {
        track.Stored = position;
        lock (_gate)
        {
            if (track == _serving && _state == ProjectionState.Faulted)
            {
                // The store takes batches again: catching up on what piled up meanwhile, no longer faulted.
                _state = ProjectionState.CatchingUp;
                _logger.LogInformation("Projection {Projection} commits again at position {Position} after a failure of its store.", Projection.Name, position);
            }
        }

        // Counted before the position is published: whoever waited for it sees the batch in the metrics too.
        if (events > 0)
        {
            CairnDiagnostics.ProjectionEvents.Add(events, _tag);
            _rate.Add(events);
            lock (_gate)
            {
                if (track == _shadow)
                {
                    _rebuild?.Applied(events);
                }
            }
        }

        Advance(track, position);
    }

    private void Advance(Track track, GlobalPosition position)
    {
        lock (_gate)
        {
            if (position > track.Reached)
            {
                track.Reached = position;
            }

            if (track == _serving && track.Reached.Value >= Volatile.Read(ref _head))
            {
                _oldestUnappliedAt = null;
            }
        }

        ReleaseWaiters();
    }

    /// <summary>
    /// Keeps the head (and so <see cref="ProjectionStatus.LagEvents"/> and the lag gauge) moving while the projection
    /// stands failed, until the runner stops: a stopped projection's lag grows with the events appended after it, the
    /// signal to alert on.
    /// </summary>
    private Task WatchHeadWhileFailedAsync(CancellationToken stop) =>
        HeadWatch.FollowAsync(_store, head => HeadWatch.Raise(ref _head, head), _clock, _logger, $"Projection {Projection.Name}", stop);

    private void ObserveHead(GlobalPosition head) => HeadWatch.Raise(ref _head, head.Value);

    private void ReleaseWaiters()
    {
        lock (_gate)
        {
            var reached = ServingPosition.Value;
            foreach (var waiter in _waiters.Where(w => w.Position <= reached).ToList())
            {
                waiter.Done.TrySetResult();
                _waiters.Remove(waiter);
            }
        }
    }

    private void FailWaiters() =>
        EndWaiters("the projection has failed: " + _lastError, $"Projection '{Projection.Name}' failed before its rebuild finished: {_lastError}");

    /// <summary>
    /// Ends every pending wait and the awaited rebuild with why they cannot complete: the projection failed, or was
    /// stopped. Nothing would release them otherwise, and they would run out their whole time.
    /// </summary>
    private void EndWaiters(string why, string rebuildFault)
    {
        lock (_gate)
        {
            foreach (var waiter in _waiters)
            {
                waiter.Done.TrySetException(new ProjectionWaitTimeoutException(Projection.Name, new GlobalPosition(waiter.Position), ServingPosition, TimeSpan.Zero, why));
            }

            _waiters.Clear();
            _rebuildDone?.TrySetException(new InvalidOperationException(rebuildFault));
            _rebuildDone = null;
        }
    }

    private void Fail(ProjectionState state, Exception error)
    {
        lock (_gate)
        {
            _state = state;
            _lastError = $"{error.GetType().Name}: {error.Message}";
        }
    }

    private void SetLive()
    {
        lock (_gate)
        {
            if (_state != ProjectionState.Live)
            {
                _state = ProjectionState.Live;
                _logger.LogInformation("Projection {Projection} is live at position {Position}.", Projection.Name, ServingPosition);
            }
        }
    }

    private void SetState(ProjectionState state)
    {
        lock (_gate)
        {
            if (_state != ProjectionState.Failed)
            {
                _state = state;
            }
        }
    }

    private bool TakeRebuildRequest()
    {
        lock (_gate)
        {
            var requested = _rebuildRequested;
            _rebuildRequested = false;
            if (requested && _shadow is { StoppedAt: not null } stopped)
            {
                // Asked again after it stopped at an event: the rebuild tries that event again, from where it stopped.
                _logger.LogInformation("Projection {Projection} tries its rebuild into build {Build} again from position {Position}.", Projection.Name, stopped.Build, stopped.Reached);
                stopped.StoppedAt = null;
                return false;
            }

            _shadowStarting = requested && _shadow is null;
            return _shadowStarting;
        }
    }

    /// <summary>
    /// Stops a rebuild at the event it failed on under <see cref="ProjectionFailurePolicy.Stop"/>: the shadow keeps what
    /// it has built and waits, the serving build goes on, and the awaited rebuild fails. <see cref="RebuildAsync"/> or a
    /// restart tries the event again.
    /// </summary>
    private void StopRebuild(Track shadow, ProjectionEventException failure, int attempts)
    {
        lock (_gate)
        {
            shadow.StoppedAt = failure.Event.Position;
            _rebuildDone?.TrySetException(new ProjectionStoppedException(failure, rebuild: true));
            _rebuildDone = null;
        }

        _logger.LogCritical(failure, "Projection {Projection} stopped its rebuild into build {Build} at event {Position} after {Attempts} attempts (policy Stop); the serving build goes on. Fix the cause and rebuild again, or restart it.", Projection.Name, shadow.Build, failure.Event.Position, attempts);
    }

    /// <summary>
    /// After the lease is lost, or when standing by: the shadow is the lease holder's to finish (it goes on with it
    /// where this runner left it), so this runner stops reporting it, and a caller awaiting the rebuild here learns so
    /// at once.
    /// </summary>
    private void LeaveRebuild()
    {
        lock (_gate)
        {
            var shadow = _shadow;
            _shadow = null;
            _rebuild = null;
            _rebuildRequested = false;
            _rebuildDone?.TrySetException(new InvalidOperationException(
                $"Projection '{Projection.Name}' lost its lease, or stands by, before its rebuild{(shadow is null ? "" : $" into build {shadow.Build}")} switched; the process that holds the lease runs it (a rebuild under way goes on there)."));
            _rebuildDone = null;
        }
    }

    private Task WakeTask()
    {
        lock (_gate)
        {
            return _wake.Task;
        }
    }

    private void Wake()
    {
        TaskCompletionSource woken;
        lock (_gate)
        {
            woken = _wake;
            _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        woken.TrySetResult();
    }

    /// <summary>A build being written, with its stored position and the position it has reached (past skipped events).</summary>
    private sealed class Track
    {
        public Track(ProjectionBuild build, ProjectionApplier applier)
            : this(build.Id, build.Version, build.Position, applier)
        {
            WritesDocuments = Projection.DocumentsOf(build.Shape) == Projection.DocumentsOf(applier.Projection.Shape);
        }

        public Track(long build, int version, GlobalPosition stored, ProjectionApplier applier)
        {
            Build = build;
            Version = version;
            Stored = stored;
            Reached = stored;
            ReadSize = applier.Projection.BatchSize;
            Apply = (transaction, events) => applier.Apply(transaction, events, Cache);
        }

        public long Build { get; }

        public int Version { get; }

        /// <summary>
        /// Whether this code's documents fit the build (the same collections and indexes): a build of another version
        /// may have other index columns, which the store's writes of this code's documents would name.
        /// </summary>
        public bool WritesDocuments { get; } = true;

        /// <summary>
        /// Set on the serving build of another version when this code's writes failed on it during the rebuild (its SQL
        /// tables lack a column this code's statements write): it is left as it is until the shadow's switch.
        /// </summary>
        public bool HeldBack { get; set; }

        /// <summary>Whether the build goes on advancing under this code during a rebuild.</summary>
        public bool Advances => WritesDocuments && !HeldBack;

        public GlobalPosition Stored { get; set; }

        public GlobalPosition Reached { get; set; }

        /// <summary>How many events the next read asks for: it grows while reads come back full.</summary>
        public int ReadSize { get; set; }

        /// <summary>Applies events to this build, through its document cache.</summary>
        public ReadModelApply Apply { get; }

        /// <summary>The documents this track's committed batches stored.</summary>
        public DocumentCache Cache { get; } = new();

        /// <summary>The event a shadow stopped at under <see cref="ProjectionFailurePolicy.Stop"/>; it is not written until asked again.</summary>
        public GlobalPosition? StoppedAt { get; set; }

        /// <summary>The next batch, being read while the last one commits.</summary>
        public (GlobalPosition From, int Size, Task<(GlobalPosition Head, List<RecordedEvent> Events)> Read)? ReadAhead { get; set; }
    }

    private sealed class RebuildClock(DateTimeOffset startedAt, long started, GlobalPosition from)
    {
        private long _applied;

        public void Applied(long events) => _applied += events;

        public RebuildProgress Progress(Track shadow, GlobalPosition head, TimeProvider clock)
        {
            var elapsed = clock.GetElapsedTime(started).TotalSeconds;
            var covered = shadow.Reached.Value - from.Value;
            var pace = elapsed > 0 ? covered / elapsed : 0;
            TimeSpan? remaining = pace > 0 ? TimeSpan.FromSeconds(Math.Max(0, head.Value - shadow.Reached.Value) / pace) : null;
            return new RebuildProgress(shadow.Build, shadow.Version, shadow.Reached, head, _applied, pace, remaining, startedAt) { StoppedAt = shadow.StoppedAt };
        }
    }
}

/// <summary>A projection, or its rebuild, stopped at an event under <see cref="ProjectionFailurePolicy.Stop"/>.</summary>
public sealed class ProjectionStoppedException(ProjectionEventException failure, bool rebuild = false)
    : CairnException(rebuild ? $"{failure.Message} The rebuild has stopped there (policy Stop); the serving build goes on." : $"{failure.Message} The projection has stopped (policy Stop).", failure)
{
    /// <summary>The failure it stopped on.</summary>
    public ProjectionEventException Failure { get; } = failure;

    /// <summary>Whether a rebuild stopped, the serving build going on, rather than the projection.</summary>
    public bool Rebuild { get; } = rebuild;
}

/// <summary>Events per second over the last ten seconds, in one-second buckets.</summary>
internal sealed class RateWindow(TimeProvider clock)
{
    private const int Buckets = 10;
    private readonly long[] _counts = new long[Buckets];
    private readonly long[] _seconds = new long[Buckets];
    private readonly long _origin = clock.GetTimestamp();

    public void Add(long count)
    {
        lock (_counts)
        {
            var second = Second();
            var slot = (int)(second % Buckets);
            if (_seconds[slot] != second)
            {
                _seconds[slot] = second;
                _counts[slot] = 0;
            }

            _counts[slot] += count;
        }
    }

    public double PerSecond()
    {
        lock (_counts)
        {
            var now = Second();
            long total = 0;
            for (var i = 0; i < Buckets; i++)
            {
                if (now - _seconds[i] < Buckets)
                {
                    total += _counts[i];
                }
            }

            var span = Math.Clamp(clock.GetElapsedTime(_origin).TotalSeconds, 1, Buckets);
            return total / span;
        }
    }

    private long Second() => (long)clock.GetElapsedTime(_origin).TotalSeconds;
}
