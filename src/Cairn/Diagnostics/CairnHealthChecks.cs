using System.Globalization;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Cairn.Diagnostics;

/// <summary>
/// The thresholds of Cairn's health checks (<see cref="CairnHealthCheckExtensions.AddCairn"/>). Past a threshold a check
/// reports <see cref="HealthStatus.Degraded"/>: the process works, but someone should look.
/// </summary>
public sealed record CairnHealthOptions
{
    /// <summary>How long a check waits for the backend or the broker before it reports them unreachable.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A queue whose oldest due or leased message has waited longer than this is falling behind.</summary>
    public TimeSpan MaxQueueAge { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A transport's outbox (messages committed but not yet handed to the broker) whose oldest message has waited longer
    /// than this is stuck: the broker refuses or the relay is not running.
    /// </summary>
    public TimeSpan MaxOutboxAge { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>An async projection further behind the log than this (the age of its oldest unapplied event) is lagging.</summary>
    public TimeSpan MaxProjectionLag { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Whether a queue holding dead letters makes the messaging check degraded (until they are redriven or purged).</summary>
    public bool DeadLettersDegrade { get; init; } = true;

    /// <summary>Checks the thresholds; throws <see cref="ArgumentOutOfRangeException"/> naming the one that is wrong.</summary>
    public void Validate()
    {
        Positive(Timeout, nameof(Timeout));
        if (Timeout > TimeSpan.FromHours(1))
        {
            // Each check is cancelled after it (a timer's limit is 49.7 days); a health check that waits longer says nothing.
            throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, $"CairnHealthOptions.Timeout is {Timeout}; it must be at most 1 hour.");
        }

        Positive(MaxQueueAge, nameof(MaxQueueAge));
        Positive(MaxOutboxAge, nameof(MaxOutboxAge));
        Positive(MaxProjectionLag, nameof(MaxProjectionLag));
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero || value == System.Threading.Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(name, value, $"CairnHealthOptions.{name} is {value}; it must be a positive time.");
        }
    }
}

/// <summary>
/// A part beyond the backend that can tell its own health, such as a transport's outbox relay and its connection. The
/// messaging check asks the configured transport's service when it implements this.
/// </summary>
public interface IHealthReporting
{
    /// <summary>Checks the part; never throws for a failure it can describe (that is an unhealthy result).</summary>
    Task<HealthCheckResult> CheckHealthAsync(CairnHealthOptions options, CancellationToken cancellationToken);
}

/// <summary>What the health checks share.</summary>
internal static class HealthChecking
{
    /// <summary>
    /// Runs <paramref name="check"/> with <see cref="CairnHealthOptions.Timeout"/> as its limit: past it, throws a
    /// <see cref="TimeoutException"/> and cancels the check's token, so a read left hanging is cancelled, not abandoned.
    /// A check that does not heed its token is not waited for either, even one that blocks before it returns its task;
    /// its late failure is observed.
    /// </summary>
    internal static async Task<T> WithinAsync<T>(CairnHealthOptions options, Func<CancellationToken, Task<T>> check, CancellationToken cancellationToken)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(options.Timeout);

        // On a thread of its own, started at once (not queued behind a busy thread pool, where a read could start after
        // its limit, or after the other reads had ended): a backend that does its work before it returns its task
        // (SQLite's reads wait for a lock there) would otherwise hold the caller past the limit, and the checks started
        // after it would wait their turn. Checks are seldom; the thread is given back at the read's first await.
        var running = Task.Factory.StartNew(() => check(limit.Token), CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default).Unwrap();
        try
        {
            return await running.WaitAsync(limit.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (limit.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"no answer within {Seconds(options.Timeout)}");
        }
        finally
        {
            if (!running.IsCompleted)
            {
                // Before the source is disposed, or its token would never be cancelled.
                await limit.CancelAsync().ConfigureAwait(false);
                _ = running.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }
    }

    internal static string Seconds(TimeSpan time) => string.Create(CultureInfo.InvariantCulture, $"{time.TotalSeconds:0.###} s");

    /// <summary>The worst of several results, their descriptions joined; healthy with <paramref name="healthy"/> when there are none.</summary>
    internal static HealthCheckResult Combine(List<(HealthStatus Status, string Problem)> problems, string healthy, IReadOnlyDictionary<string, object> data, Exception? exception = null)
    {
        if (problems.Count == 0)
        {
            return HealthCheckResult.Healthy(healthy, data);
        }

        var worst = problems.Min(p => p.Status);
        return new HealthCheckResult(worst, string.Join("; ", problems.OrderBy(p => p.Status).Select(p => p.Problem)), exception, data);
    }
}

/// <summary>The log answers: its head position is read within the time-out.</summary>
internal sealed class StorageHealthCheck(IServiceProvider services, CairnHealthOptions options) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            // The store resolved within the limit too: the first resolution opens it, which may wait for a lock.
            var head = await HealthChecking.WithinAsync(options, ct => services.GetRequiredService<IEventReader>().GetHeadPositionAsync(ct).AsTask(), cancellationToken).ConfigureAwait(false);
            return HealthCheckResult.Healthy($"The log answers; its head is at position {head.Value}.", new Dictionary<string, object> { ["head"] = head.Value });
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, $"The log does not answer: {ex.Message}", ex);
        }
    }
}

/// <summary>
/// The queues this process declares or consumes: each one's statistics are read within the time-out (unhealthy when
/// one cannot be), degraded when its oldest due or leased message is older than allowed, or when it holds dead letters;
/// and the transport's own report (its connection, its outbox relay), when it gives one.
/// </summary>
internal sealed class MessagingHealthCheck(IServiceProvider services, CairnHealthOptions options) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var cairn = services.GetRequiredService<IOptions<CairnOptions>>().Value;
        if (cairn.BrokerFactory is null)
        {
            return HealthCheckResult.Healthy($"The {cairn.BackendName} backend has no message broker.");
        }

        // Resolved within the limit, and a failure reported: the first resolution opens the broker (and its store),
        // which may wait for a lock, or fail.
        IMessageBroker broker;
        MessagingTopology topology;
        TransportService? transportService;
        try
        {
            (broker, topology, transportService) = await HealthChecking.WithinAsync(
                options,
                _ => Task.FromResult((services.GetRequiredService<IMessageBroker>(), services.GetRequiredService<MessagingTopology>(), services.GetService<TransportService>())),
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, $"The message broker cannot be opened: {ex.Message}", ex);
        }

        var queues = new SortedSet<QueueName>(Comparer<QueueName>.Create((a, b) => string.CompareOrdinal(a.Value, b.Value)));
        queues.UnionWith(topology.Queues.Select(q => q.Name));
        queues.UnionWith(topology.Consumers.Select(c => c.Queue));
        if (broker is InstrumentedMessageBroker instrumented)
        {
            queues.UnionWith(instrumented.DeclaredQueues);
        }

        // Every read at once, each within the time-out: a hung broker costs the check one time-out, not one per queue.
        var reads = queues.Select(queue => ReadAsync(broker, queue, cancellationToken)).ToList();
        var transport = transportService?.Inner is IHealthReporting reporting
            ? AskAsync(reporting, cancellationToken)
            : Task.FromResult<HealthCheckResult?>(null);
        await Task.WhenAll(reads.Cast<Task>().Append(transport)).ConfigureAwait(false);

        var problems = new List<(HealthStatus, string)>();
        long deadLetters = 0, depth = 0;
        Exception? failure = null;
        foreach (var (queue, stats, error) in reads.Select(r => r.Result))
        {
            if (stats is null)
            {
                failure ??= error;
                problems.Add((context.Registration.FailureStatus, $"queue '{queue}': its statistics cannot be read ({error!.Message})"));
                continue;
            }

            // Parked FIFO messages (behind a dead-lettered head of their group) are held too, counted apart by the stats.
            depth += stats.Visible + stats.Leased + stats.Delayed + stats.Parked;
            deadLetters += stats.DeadLettered;
            if (stats.OldestAge is { } age && age > options.MaxQueueAge)
            {
                problems.Add((HealthStatus.Degraded, $"queue '{queue}': its oldest message has waited {HealthChecking.Seconds(age)}, over {HealthChecking.Seconds(options.MaxQueueAge)}"));
            }

            if (options.DeadLettersDegrade && stats.DeadLettered > 0)
            {
                problems.Add((HealthStatus.Degraded, $"queue '{queue}': {stats.DeadLettered} dead letter(s)"));
            }
        }

        if (transport.Result is { Status: not HealthStatus.Healthy } reported)
        {
            failure ??= reported.Exception;
            var status = reported.Status == HealthStatus.Unhealthy ? context.Registration.FailureStatus : reported.Status;
            problems.Add((status, $"{cairn.TransportName}: {reported.Description}"));
        }

        var data = new Dictionary<string, object> { ["queues"] = queues.Count, ["messages"] = depth, ["dead_letters"] = deadLetters };
        foreach (var (key, value) in transport.Result?.Data ?? new Dictionary<string, object>())
        {
            // The transport's own figures (its outbox, what it published and returned), healthy or not.
            data.TryAdd(key, value);
        }

        return HealthChecking.Combine(problems, $"{queues.Count} queue(s) read: {depth} message(s) waiting or in flight, {deadLetters} dead letter(s).", data, failure);
    }

    private async Task<(QueueName Queue, QueueStats? Stats, Exception? Error)> ReadAsync(IMessageBroker broker, QueueName queue, CancellationToken cancellationToken)
    {
        try
        {
            return (queue, await HealthChecking.WithinAsync(options, ct => broker.GetStatsAsync(queue, ct), cancellationToken).ConfigureAwait(false), null);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return (queue, null, ex);
        }
    }

    private async Task<HealthCheckResult?> AskAsync(IHealthReporting transport, CancellationToken cancellationToken)
    {
        try
        {
            return await HealthChecking.WithinAsync(options, ct => transport.CheckHealthAsync(options, ct), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"the transport does not answer ({ex.Message})", ex);
        }
    }
}

/// <summary>
/// The hosted subscriptions, projections, consumers and event routes: unhealthy when one has stopped for good on a
/// failure; degraded when one is retrying after a failure, is not running, or (a projection) lags the log by more than
/// allowed. A projection on standby (another process holds its lease) is healthy.
/// </summary>
internal sealed class ProcessingHealthCheck(IServiceProvider services, CairnHealthOptions options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var problems = new List<(HealthStatus, string)>();
        var count = 0;
        var subscriptions = services.GetService<SubscriptionMonitor>();
        foreach (var s in subscriptions?.Statuses ?? [])
        {
            count++;
            var gaveUp = s.State == SubscriptionState.Stopped && subscriptions!.Find(s.Name)?.Options.MaxRetries is { } max && s.Failures > max;
            if (gaveUp)
            {
                problems.Add((context.Registration.FailureStatus, $"subscription '{s.Name}': gave up after {s.Failures} failure(s) ({s.LastError?.Message})"));
            }
            else if (s.State == SubscriptionState.Stopped)
            {
                problems.Add((HealthStatus.Degraded, $"subscription '{s.Name}': not running"));
            }
            else if (s.State == SubscriptionState.Faulted || s.Failures > 0)
            {
                // Failures count in a row: one resumed and not yet past the event it failed on is still retrying.
                problems.Add((HealthStatus.Degraded, $"subscription '{s.Name}': failed {s.Failures} time(s) in a row, retrying ({s.LastError?.Message})"));
            }
        }

        foreach (var p in services.GetService<ProjectionMonitor>()?.Statuses ?? [])
        {
            count++;
            switch (p.State)
            {
                case ProjectionState.Failed:
                    problems.Add((context.Registration.FailureStatus, $"projection '{p.Name}': stopped{(p.FailedEvent is { } at ? $" at position {at.Value}" : "")} ({p.LastError})"));
                    break;
                case ProjectionState.Faulted:
                    problems.Add((HealthStatus.Degraded, $"projection '{p.Name}': failed, retrying ({p.LastError})"));
                    break;
                case ProjectionState.Stopped:
                    problems.Add((HealthStatus.Degraded, $"projection '{p.Name}': not running"));
                    break;
                case ProjectionState.CatchingUp or ProjectionState.Live when p.Rebuild?.StoppedAt is { } rebuildStoppedAt:
                    problems.Add((HealthStatus.Degraded, $"projection '{p.Name}': its rebuild into build {p.Rebuild.Build} stopped at position {rebuildStoppedAt.Value}, the serving build goes on ({p.LastError})"));
                    break;
                case ProjectionState.CatchingUp or ProjectionState.Live when p.LagSeconds > options.MaxProjectionLag.TotalSeconds:
                    problems.Add((HealthStatus.Degraded, $"projection '{p.Name}': {p.LagEvents} event(s) behind, the oldest waiting {HealthChecking.Seconds(TimeSpan.FromSeconds(p.LagSeconds))}, over {HealthChecking.Seconds(options.MaxProjectionLag)}"));
                    break;
            }
        }

        foreach (var c in services.GetService<ConsumerMonitor>()?.Statuses ?? [])
        {
            count++;
            if (!c.Running)
            {
                problems.Add((HealthStatus.Degraded, $"consumer '{c.Name}' of queue '{c.Queue}': not running"));
            }
        }

        foreach (var r in services.GetService<RouteMonitor>()?.Statuses ?? [])
        {
            count++;
            if (!r.Running)
            {
                problems.Add((HealthStatus.Degraded, $"route '{r.Name}' to topic '{r.Topic}': not running{(r.LastError is null ? "" : $" ({r.LastError})")}"));
            }
            else if (r.FailuresInARow > 0)
            {
                problems.Add((HealthStatus.Degraded, $"route '{r.Name}' to topic '{r.Topic}': failed {r.FailuresInARow} time(s) in a row{(r.HeldAt is { } held ? $", held at the event at position {held.Value}" : "")}, retrying ({r.LastError})"));
            }
        }

        var data = new Dictionary<string, object> { ["workers"] = count };
        return Task.FromResult(HealthChecking.Combine(problems, $"{count} subscription(s), projection(s), consumer(s) and route(s), all running.", data));
    }
}
