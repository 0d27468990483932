using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cairn.Workflows;

/// <summary>One entry of an instance's history.</summary>
/// <param name="Version">The event's version in the instance's stream.</param>
/// <param name="Position">Its global position.</param>
/// <param name="Time">When it was recorded.</param>
/// <param name="Type">Its type name, such as <c>cairn.workflow.step-started</c>.</param>
/// <param name="Event">The event.</param>
/// <param name="CausationId">The id of the message (reply, timer, start) that caused it, if any.</param>
public sealed record WorkflowHistoryEntry(long Version, GlobalPosition Position, DateTimeOffset Time, string Type, WorkflowEvent Event, string? CausationId);

/// <summary>
/// Runs one workflow: it takes the messages of the workflow's queue (starts, replies, timers), folds the instance's
/// history, decides, and commits the new events with the messages they send, the delivery's acknowledgement and the
/// inbox record in one transaction. Operators' actions go through the same decisions, committed with the instance's
/// expected version.
/// </summary>
internal sealed class WorkflowCoordinator
{
    private const int MaxConflictRetries = 20;

    /// <summary>How many running instances' folded state the coordinator keeps between their messages.</summary>
    private const int MaxCachedInstances = 10_000;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, WorkflowInstance> _cache = new(StringComparer.Ordinal);
    private readonly IEventStore _store;
    private readonly IMessageSender _sender;
    private readonly EventSerializer _serializer;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _timerType;

    public WorkflowCoordinator(WorkflowModel model, IEventStore store, IMessageSender sender, EventSerializer serializer, TimeProvider? time = null, ILogger? logger = null)
    {
        Model = model;
        _store = store;
        _sender = sender;
        _serializer = serializer;
        _time = time ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _timerType = serializer.Registry.GetName(typeof(WorkflowTimer));
    }

    public WorkflowModel Model { get; }

    /// <summary>The consumer's handler: one message of the workflow's queue.</summary>
    public async ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        var message = context.Message;
        string instanceId;
        Action<WorkflowDecider, bool> decide;
        if (message.Type == _timerType)
        {
            var timer = context.Read<WorkflowTimer>();
            if (timer.Workflow != Model.Name)
            {
                throw new UndeliverableWorkflowMessageException($"A timer of workflow '{timer.Workflow}' reached the queue of workflow '{Model.Name}'.");
            }

            instanceId = InstanceIdOf(message, timer.InstanceId);
            decide = (d, exists) =>
            {
                if (exists)
                {
                    d.Timer(timer.Timer, timer.Run);
                }
            };
        }
        else if (Model.Starts.TryGetValue(message.Type, out var start))
        {
            var body = context.Read<object>();
            instanceId = InstanceIdOf(message, start.Correlate?.Invoke(body) ?? message.CorrelationId);
            decide = (d, exists) =>
            {
                if (exists)
                {
                    d.StartAgain(message.Type, message.Id.ToString());
                }
                else
                {
                    d.Start(start.Start(body), message.Type);
                }
            };
        }
        else if (Model.IsReply(message.Type))
        {
            var body = context.Read<object>();
            instanceId = InstanceIdOf(message, Model.Correlations.TryGetValue(message.Type, out var correlate) ? correlate(body) : message.CorrelationId);
            decide = (d, exists) =>
            {
                if (!exists)
                {
                    throw new UndeliverableWorkflowMessageException($"Message {message.Id} ({message.Type}) is a reply for instance '{instanceId}' of workflow '{Model.Name}', which does not exist.");
                }

                d.Reply(message.Type, message.Id.ToString(), body, message.CausationId);
            };
        }
        else
        {
            throw new UndeliverableWorkflowMessageException($"Workflow '{Model.Name}' neither starts on nor expects messages of type '{message.Type}' (message {message.Id}).");
        }

        var (instance, exists, tombstoned) = await LoadOrNewAsync(instanceId, cancellationToken).ConfigureAwait(false);
        if (tombstoned)
        {
            if (message.Type == _timerType)
            {
                _logger.LogWarning("Workflow {Workflow} got a timer for instance {Instance}, whose history was deleted for good; it is dropped.", Model.Name, instanceId);
                return;
            }

            // Nothing can be appended to its stream again: a reply or a start would fail on every delivery.
            throw new UndeliverableWorkflowMessageException($"Message {message.Id} ({message.Type}) is for instance '{instanceId}' of workflow '{Model.Name}', whose history was deleted for good.");
        }

        if (!exists && message.Type == _timerType)
        {
            _logger.LogWarning("Workflow {Workflow} got a timer for instance {Instance}, which does not exist; it is dropped.", Model.Name, instanceId);
            return;
        }

        var decider = new WorkflowDecider(Model, _serializer, instance, instanceId, _time.GetUtcNow());
        decide(decider, exists);
        var request = ToAppend(decider);
        if (request is null)
        {
            return;
        }

        context.Append(request);
        foreach (var effect in decider.Effects)
        {
            if (effect.Kind == StepActionKind.Send)
            {
                context.Send(new QueueName(effect.Target), effect.Message);
            }
            else
            {
                context.Publish(new TopicName(effect.Target), effect.Message);
            }
        }

        context.OnCommitted(() =>
        {
            Remember(decider.Instance);
            WorkflowMetrics.Record(Model.Name, decider);
        });
    }

    /// <summary>
    /// Runs an operator's (or the client's) decision against the instance's latest state and commits it, deciding again
    /// on a conflict with a concurrent change.
    /// </summary>
    public async Task<WorkflowInstance> ExecuteAsync(string instanceId, bool create, Action<WorkflowDecider> decide, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            // A start reads nothing: its append expects no stream, and an existing instance fails it. An operator's action
            // reads the stream, not the cached fold, which another process may have moved on from: it is decided on
            // what is stored, as the operator last saw it.
            var (instance, exists) = create ? (new WorkflowInstance(), false) : await LoadStoredAsync(instanceId, cancellationToken).ConfigureAwait(false);

            if (!create && !exists)
            {
                throw new WorkflowInstanceNotFoundException(Model.Name, instanceId);
            }

            var decider = new WorkflowDecider(Model, _serializer, instance, instanceId, _time.GetUtcNow());
            decide(decider);
            var request = ToAppend(decider);
            if (request is null)
            {
                return decider.Instance;
            }

            var transaction = new MessageTransaction().Append(request);
            foreach (var effect in decider.Effects)
            {
                _ = effect.Kind == StepActionKind.Send
                    ? transaction.Send(new QueueName(effect.Target), effect.Message)
                    : transaction.Publish(new TopicName(effect.Target), effect.Message);
            }

            CommitResult committed;
            try
            {
                committed = await _sender.CommitAsync(transaction, cancellationToken).ConfigureAwait(false);
            }
            catch (WrongExpectedVersionException) when (attempt < MaxConflictRetries)
            {
                if (create)
                {
                    throw new WorkflowAlreadyStartedException(Model.Name, instanceId);
                }

                continue;
            }
            catch (StreamDeletedException) when (create)
            {
                throw new WorkflowStateException($"Workflow '{Model.Name}' cannot start an instance '{instanceId}': the history of an earlier instance with that id was deleted for good (tombstoned), and its stream takes no events again. Use another id.");
            }
            catch (StreamDeletedException)
            {
                // Deleted for good since it was read: there is no instance any more.
                throw new WorkflowInstanceNotFoundException(Model.Name, instanceId);
            }

            var instanceNow = decider.Instance;
            if (committed.Appends is [{ } appended, ..] && appended.NextExpectedVersion != instanceNow.StreamVersion)
            {
                // An id used again after its history was deleted: the stream's versions go on after the old last one,
                // which the start did not read. The stored history gives the versions the next decision must expect.
                instanceNow = await LoadAsync(instanceId, null, cancellationToken).ConfigureAwait(false) ?? instanceNow;
            }

            // The caller gets a copy: the cached fold goes on changing with the instance's next messages.
            var result = instanceNow.Copy();
            Remember(instanceNow);
            WorkflowMetrics.Record(Model.Name, decider);
            return result;
        }
    }

    /// <summary>
    /// The instance as its history shows it now, or at <paramref name="asOf"/>; null when it does not exist (or had not
    /// started by then), also when its history was deleted for good (tombstoned).
    /// </summary>
    public async Task<WorkflowInstance?> LoadAsync(string instanceId, DateTimeOffset? asOf, CancellationToken cancellationToken) =>
        (await LoadHistoryAsync(instanceId, asOf, cancellationToken).ConfigureAwait(false)).Instance;

    /// <summary>The instance as <see cref="LoadAsync"/> gives it, and whether its history was deleted for good.</summary>
    private async Task<(WorkflowInstance? Instance, bool Tombstoned)> LoadHistoryAsync(string instanceId, DateTimeOffset? asOf, CancellationToken cancellationToken)
    {
        var instance = new WorkflowInstance();
        var any = false;
        try
        {
            await foreach (var entry in ReadHistoryAsync(instanceId, cancellationToken).ConfigureAwait(false))
            {
                if (asOf is { } limit && entry.Time > limit)
                {
                    break;
                }

                instance.Apply(entry.Event, entry.Time, entry.Version);
                any = true;
            }
        }
        catch (StreamDeletedException)
        {
            return (null, true);
        }

        return (any ? instance : null, false);
    }

    /// <summary>The instance's history, oldest first.</summary>
    public async IAsyncEnumerable<WorkflowHistoryEntry> ReadHistoryAsync(string instanceId, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var stream = Model.StreamOf(ValidateInstanceId(instanceId));
        await foreach (var recorded in _store.ReadStreamAsync(stream, cancellationToken).ConfigureAwait(false))
        {
            var e = _serializer.Deserialize<WorkflowEvent>(recorded);
            yield return new WorkflowHistoryEntry(recorded.Version, recorded.Position, recorded.Time, recorded.Type, e, recorded.CausationId);
        }
    }

    /// <summary>
    /// The instance to decide on. A cached fold is taken out of the cache, so only this decision uses (and changes) it;
    /// it goes back when the decision commits. A fold made stale by another process fails its append on the expected
    /// version, and the retry reads the stream.
    /// </summary>
    private async Task<(WorkflowInstance Instance, bool Exists, bool Tombstoned)> LoadOrNewAsync(string instanceId, CancellationToken cancellationToken)
    {
        if (_cache.TryRemove(instanceId, out var cached))
        {
            return (cached, true, false);
        }

        var (loaded, tombstoned) = await LoadHistoryAsync(instanceId, null, cancellationToken).ConfigureAwait(false);
        return loaded is null ? (new WorkflowInstance(), false, tombstoned) : (loaded, true, false);
    }

    /// <summary>The instance as its stream holds it, dropping any cached fold of it.</summary>
    private async Task<(WorkflowInstance Instance, bool Exists)> LoadStoredAsync(string instanceId, CancellationToken cancellationToken)
    {
        _cache.TryRemove(instanceId, out _);
        var (instance, exists, _) = await LoadOrNewAsync(instanceId, cancellationToken).ConfigureAwait(false);
        return (instance, exists);
    }

    /// <summary>
    /// Keeps a committed fold of a running or compensating instance for its next message; a finished or suspended one
    /// is forgotten (it waits for an operator, who can wait for a read). When full, an arbitrary entry makes room.
    /// </summary>
    private void Remember(WorkflowInstance instance)
    {
        if (instance.Status is not (WorkflowStatus.Running or WorkflowStatus.Compensating))
        {
            return;
        }

        if (_cache.Count >= MaxCachedInstances)
        {
            foreach (var entry in _cache)
            {
                _cache.TryRemove(entry.Key, out _);
                break;
            }
        }

        _cache[instance.InstanceId] = instance;
    }

    private AppendRequest? ToAppend(WorkflowDecider decider)
    {
        if (decider.Events.Count == 0)
        {
            return null;
        }

        var expected = decider.ExpectedVersion < 0 ? ExpectedVersion.NoStream : ExpectedVersion.Exactly(decider.ExpectedVersion);
        // The history carries the instance's id as its correlation id, whoever wrote it: a reply found by CorrelateBy, a
        // start message with an id of its own, or an operator's call outside any message.
        var events = decider.Events.Select(e => _serializer.ToEventData(e) with { CorrelationId = decider.InstanceId }).ToList();
        if (Envelopes.MessageContext.Current?.CausationId is null)
        {
            // A decision no message caused (a client's start, an operator's action): its first event is the cause of
            // the rest and of the messages it sends, so a trace of the instance is one tree.
            var cause = events[0].Id.ToString();
            for (var i = 1; i < events.Count; i++)
            {
                events[i] = events[i] with { CausationId = cause };
            }

            for (var i = 0; i < decider.Effects.Count; i++)
            {
                decider.Effects[i] = decider.Effects[i] with { Message = decider.Effects[i].Message with { CausationId = cause } };
            }
        }

        return new AppendRequest(Model.StreamOf(decider.InstanceId), expected, events);
    }

    /// <summary>Checks an instance id: it becomes part of a stream name.</summary>
    /// <exception cref="ArgumentException">The id breaks the rules.</exception>
    internal string ValidateInstanceId(string? instanceId) =>
        InstanceIdFault(instanceId) is { } fault ? throw new ArgumentException(fault, nameof(instanceId)) : instanceId!;

    private string InstanceIdOf(Message message, string? instanceId) =>
        InstanceIdFault(instanceId) is { } fault
            ? throw new UndeliverableWorkflowMessageException($"Message {message.Id} ({message.Type}) names no instance of workflow '{Model.Name}': {fault}")
            : instanceId!;

    private string? InstanceIdFault(string? instanceId) =>
        string.IsNullOrEmpty(instanceId) || instanceId.Length > MaxInstanceIdLength || StoredText.Refuses(instanceId) || instanceId.Trim().Length != instanceId.Length
            ? $"'{instanceId}' is not a valid instance id for workflow '{Model.Name}': use 1 to {MaxInstanceIdLength} characters, no {StoredText.Refused}, no leading or trailing white space."
            : null;

    /// <summary>
    /// The longest instance id: 200 characters, fewer for a workflow whose name leaves less room in the instance's
    /// stream name (<c>wf:&lt;workflow&gt;-&lt;id&gt;</c>, at most <see cref="EventStore.StreamName.MaxLength"/>).
    /// </summary>
    internal int MaxInstanceIdLength => Math.Min(200, EventStore.StreamName.MaxLength - "wf:".Length - "-".Length - Model.Name.Length);
}
