using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;
using Cairn.Serialization;
using Microsoft.Extensions.Logging;

namespace Cairn.Workflows;

/// <summary>
/// Starts, reads, controls and finds the instances of the hosted workflows. Every control action (cancel, retry, skip)
/// is an event in the instance's history, committed with the messages it sends.
/// </summary>
public sealed class WorkflowClient
{
    private readonly Dictionary<string, WorkflowCoordinator> _coordinators = new(StringComparer.Ordinal);
    private readonly EventSerializer _serializer;
    private readonly IServiceProvider _services;
    private readonly IEventStore _store;
    private readonly TimeProvider _time;

    /// <summary>Compiles each definition, refusing a broken one with <see cref="InvalidWorkflowDefinitionException"/>.</summary>
    public WorkflowClient(
        IEnumerable<IWorkflowDefinition> definitions,
        IEventStore store,
        IMessageSender sender,
        EventSerializer serializer,
        IServiceProvider services,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggers = null)
    {
        ArgumentNullException.ThrowIfNull(definitions);
        _serializer = serializer;
        _services = services;
        _store = store;
        _time = timeProvider ?? TimeProvider.System;
        foreach (var definition in definitions)
        {
            var model = definition.Compile(serializer);
            if (!_coordinators.TryAdd(model.Name, new WorkflowCoordinator(model, store, sender, serializer, _time, loggers?.CreateLogger("Cairn.Workflows." + model.Name))))
            {
                throw new InvalidWorkflowDefinitionException($"Two workflows are named '{model.Name}'.");
            }
        }

        if (_coordinators.Values.GroupBy(c => c.Model.Queue).FirstOrDefault(g => g.Count() > 1) is { } shared)
        {
            throw new InvalidWorkflowDefinitionException($"Workflows '{string.Join("', '", shared.Select(c => c.Model.Name))}' share the queue '{shared.Key}'; each needs its own.");
        }
    }

    /// <summary>The hosted workflows' names.</summary>
    public IReadOnlyCollection<string> Workflows => _coordinators.Keys;

    /// <summary>
    /// Starts an instance of <paramref name="workflow"/> with <paramref name="state"/>, keyed by
    /// <paramref name="instanceId"/> (its correlation id): the start and its first step's message commit together.
    /// </summary>
    /// <exception cref="WorkflowAlreadyStartedException">An instance with that id exists.</exception>
    /// <exception cref="ArgumentException">The state is not of the workflow's state type, or the id is invalid.</exception>
    public async Task<WorkflowInstance> StartAsync(string workflow, string instanceId, object state, CancellationToken cancellationToken = default)
    {
        // Async so that bad input, as every failure, comes through the task: a caller awaiting several calls together
        // meets each refusal where it awaits.
        ArgumentNullException.ThrowIfNull(state);
        var coordinator = Get(workflow);
        if (!coordinator.Model.StateType.IsInstanceOfType(state))
        {
            throw new ArgumentException($"Workflow '{workflow}' keeps a {coordinator.Model.StateType.Name}, not a {state.GetType().Name}.", nameof(state));
        }

        coordinator.ValidateInstanceId(instanceId);
        return await coordinator.ExecuteAsync(instanceId, create: true, d => d.Start(state, null), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The instance as it stands now, or null when there is none.</summary>
    public async Task<WorkflowInstance?> GetAsync(string workflow, string instanceId, CancellationToken cancellationToken = default) =>
        await Get(workflow, instanceId).LoadAsync(instanceId, null, cancellationToken).ConfigureAwait(false);

    /// <summary>The instance as it stood at <paramref name="time"/>, or null when it had not started by then.</summary>
    public async Task<WorkflowInstance?> GetAsOfAsync(string workflow, string instanceId, DateTimeOffset time, CancellationToken cancellationToken = default) =>
        await Get(workflow, instanceId).LoadAsync(instanceId, time, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// The instance's timeline: every event of its history, oldest first (empty when there is no instance, also when its
    /// history was deleted for good).
    /// </summary>
    public async Task<IReadOnlyList<WorkflowHistoryEntry>> GetHistoryAsync(string workflow, string instanceId, CancellationToken cancellationToken = default)
    {
        var history = new List<WorkflowHistoryEntry>();
        try
        {
            await foreach (var entry in Get(workflow).ReadHistoryAsync(instanceId, cancellationToken).ConfigureAwait(false))
            {
                history.Add(entry);
            }
        }
        catch (StreamDeletedException)
        {
            return [];
        }

        return history;
    }

    /// <summary>The workflow's state, deserialized with Cairn's JSON options.</summary>
    public TState GetState<TState>(WorkflowInstance instance)
    {
        ArgumentNullException.ThrowIfNull(instance);
        return instance.GetState<TState>(_serializer.Options);
    }

    /// <summary>Cancels an instance: its completed steps, and the running step's effect, are compensated in reverse order; it ends cancelled.</summary>
    /// <exception cref="WorkflowStateException">It has finished, or is compensating already.</exception>
    public async Task<WorkflowInstance> CancelAsync(string workflow, string instanceId, string reason, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        return await Get(workflow, instanceId).ExecuteAsync(instanceId, create: false, d => d.Cancel(reason), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Tries the current step (suspended or still waiting) or the suspended compensation again, as a new attempt.</summary>
    /// <exception cref="WorkflowStateException">There is no step or compensation to retry, or the instance moved on (a reply, a timeout) while the retry was decided.</exception>
    public async Task<WorkflowInstance> RetryAsync(string workflow, string instanceId, string? reason = null, CancellationToken cancellationToken = default) =>
        await Get(workflow, instanceId).ExecuteAsync(instanceId, create: false, Unmoved("retry", d => d.Retry(reason)), cancellationToken).ConfigureAwait(false);

    /// <summary>Skips the current step (moving to its next one) or the suspended compensation, recording why.</summary>
    /// <exception cref="WorkflowStateException">There is no step or compensation to skip, the step names no next one, or the instance moved on (a reply, a timeout) while the skip was decided.</exception>
    public async Task<WorkflowInstance> SkipAsync(string workflow, string instanceId, string reason, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        return await Get(workflow, instanceId).ExecuteAsync(instanceId, create: false, Unmoved("skip", d => d.Skip(reason)), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// An operator's action on what the instance was doing when it was first decided. A concurrent change (a late reply,
    /// a timeout) makes the coordinator decide again on the newer history; if the instance has moved on meanwhile, the
    /// action is refused rather than applied to a step or attempt the operator never saw.
    /// </summary>
    private static Action<WorkflowDecider> Unmoved(string action, Action<WorkflowDecider> decide)
    {
        string? seen = null;
        return d =>
        {
            var now = d.OperatorPosition;
            seen ??= now;
            if (now != seen)
            {
                throw new WorkflowStateException($"Workflow instance {d.Instance.Workflow}/{d.InstanceId} moved on while the {action} was decided: it was {seen}, it is now {now}; look at it again before you {action} it.");
            }

            decide(d);
        };
    }

    /// <summary>
    /// Queries the instances of every hosted workflow: filter on <c>workflow</c>, <c>status</c> (a
    /// <see cref="WorkflowStatus"/> name), <c>started_at</c> and <c>updated_at</c>; order and page as any document query.
    /// </summary>
    public DocumentQuery<WorkflowSummary> Query() => Summaries.Query<WorkflowSummary>(WorkflowSummaries.ProjectionName);

    /// <summary>
    /// Unfinished instances that have made no progress for longer than <paramref name="olderThan"/>, oldest first; none
    /// for a span reaching back past the calendar's start. The summaries do not see a history deleted, so each found is
    /// looked up in the store, and one whose stream no longer exists is left out.
    /// </summary>
    public async Task<IReadOnlyList<WorkflowSummary>> FindStuckAsync(TimeSpan olderThan, string? workflow = null, int take = 100, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(olderThan, TimeSpan.Zero);
        var now = _time.GetUtcNow();
        var before = olderThan < now - DateTimeOffset.MinValue ? now - olderThan : DateTimeOffset.MinValue;
        var query = Query()
            .Where("status", QueryOperator.In, new[] { nameof(WorkflowStatus.Running), nameof(WorkflowStatus.Compensating), nameof(WorkflowStatus.Suspended) })
            .Where("updated_at", QueryOperator.LessThan, before)
            .OrderBy("updated_at")
            .Take(take);
        if (workflow is not null)
        {
            query = query.Where("workflow", Get(workflow).Model.Name);
        }

        var stuck = new List<WorkflowSummary>();
        for (var skip = 0; ; skip += take)
        {
            var page = await query.Skip(skip).ToListAsync(cancellationToken).ConfigureAwait(false);
            foreach (var summary in page)
            {
                if ((await _store.GetStreamInfoAsync(new StreamName(summary.Id), cancellationToken).ConfigureAwait(false)).Exists)
                {
                    stuck.Add(summary);
                    if (stuck.Count == take)
                    {
                        return stuck;
                    }
                }
            }

            if (page.Count < take)
            {
                return stuck;
            }
        }
    }

    /// <summary>Waits until the instance summaries include <paramref name="position"/> (read-your-writes for <see cref="Query"/>).</summary>
    public async Task WaitForSummariesAsync(GlobalPosition position, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        await Monitor.WaitForAsync(WorkflowSummaries.ProjectionName, position, timeout, cancellationToken).ConfigureAwait(false);

    /// <summary>Waits until the instance summaries include everything in the log now.</summary>
    public async Task WaitForSummariesAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var head = await _store.GetHeadPositionAsync(cancellationToken).ConfigureAwait(false);
        await WaitForSummariesAsync(head, timeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The workflow's steps and transitions as a Mermaid state diagram.</summary>
    public string Describe(string workflow) => WorkflowDiagram.ToMermaid(Get(workflow).Model);

    internal WorkflowCoordinator Get(string workflow) =>
        _coordinators.TryGetValue(workflow ?? throw new ArgumentNullException(nameof(workflow)), out var coordinator)
            ? coordinator
            : throw new WorkflowNotFoundException($"No workflow named '{workflow}' is hosted; the hosted ones are: {string.Join(", ", _coordinators.Keys.Order(StringComparer.Ordinal))}.");

    /// <summary>The coordinator of <paramref name="workflow"/>, once <paramref name="instanceId"/> is known to be a valid id of its instances.</summary>
    private WorkflowCoordinator Get(string workflow, string instanceId)
    {
        var coordinator = Get(workflow);
        coordinator.ValidateInstanceId(instanceId);
        return coordinator;
    }

    private ReadModels Summaries => (ReadModels)_services.GetService(typeof(ReadModels))!;

    private DependencyInjection.ProjectionMonitor Monitor => (DependencyInjection.ProjectionMonitor)_services.GetService(typeof(DependencyInjection.ProjectionMonitor))!;
}
