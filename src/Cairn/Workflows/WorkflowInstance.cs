using System.Globalization;
using System.Text.Json;

namespace Cairn.Workflows;

/// <summary>Where a workflow instance stands.</summary>
public enum WorkflowStatus
{
    /// <summary>Running its steps.</summary>
    Running,

    /// <summary>Undoing its completed steps, after a failure or a cancellation.</summary>
    Compensating,

    /// <summary>Stopped at a step or a compensation, waiting for an operator to retry, skip or cancel.</summary>
    Suspended,

    /// <summary>Finished: every step done.</summary>
    Completed,

    /// <summary>Finished: a step failed, and the completed steps were compensated.</summary>
    Failed,

    /// <summary>Finished: cancelled by an operator, and the completed steps were compensated.</summary>
    Cancelled,
}

/// <summary>
/// A workflow instance as its history shows it at one point: the fold of its events, up to the latest or to a time.
/// </summary>
public sealed class WorkflowInstance
{
    private readonly List<string> _completed = [];
    private readonly List<string> _compensated = [];
    private readonly List<string> _pendingCompensations = [];
    private readonly HashSet<string> _seenReplies = new(StringComparer.Ordinal);

    /// <summary>
    /// What each command and compensation message the instance sent was for: a reply is refused by its causation when it
    /// answers another compensation, or an earlier visit of the step now running (<see cref="SentFor.Excludes"/>).
    /// </summary>
    private readonly Dictionary<string, SentFor> _sentFor = new(StringComparer.Ordinal);

    /// <summary>The reply type that completed each visit of a step (by the version the visit began at).</summary>
    private readonly Dictionary<(string Step, long Visit), string> _settledBy = [];

    internal WorkflowInstance()
    {
    }

    private WorkflowInstance(WorkflowInstance other)
    {
        _completed = [.. other._completed];
        _compensated = [.. other._compensated];
        _pendingCompensations = [.. other._pendingCompensations];
        _seenReplies = new HashSet<string>(other._seenReplies, StringComparer.Ordinal);
        _sentFor = new Dictionary<string, SentFor>(other._sentFor, StringComparer.Ordinal);
        _settledBy = new Dictionary<(string Step, long Visit), string>(other._settledBy);
        Workflow = other.Workflow;
        InstanceId = other.InstanceId;
        DefinitionVersion = other.DefinitionVersion;
        Status = other.Status;
        CurrentStep = other.CurrentStep;
        Attempt = other.Attempt;
        CurrentCompensation = other.CurrentCompensation;
        CompensationAttempt = other.CompensationAttempt;
        Reason = other.Reason;
        CompensationReason = other.CompensationReason;
        CancelRequested = other.CancelRequested;
        StartedAt = other.StartedAt;
        IdTime = other.IdTime;
        UpdatedAt = other.UpdatedAt;
        EndedAt = other.EndedAt;
        TimerDueAt = other.TimerDueAt;
        StreamVersion = other.StreamVersion;
        VersionOffset = other.VersionOffset;
        State = other.State;
        ArmedTimer = other.ArmedTimer;
        StepVisit = other.StepVisit;
        StepStartedAt = other.StepStartedAt;
        CurrentMessageId = other.CurrentMessageId;
        LastSendAt = other.LastSendAt;
        CompensationsCarriedOut = other.CompensationsCarriedOut;
        CancelledPath = other.CancelledPath;
        UncertainStep = other.UncertainStep;
    }

    /// <summary>A copy that later folds of this one do not change.</summary>
    internal WorkflowInstance Copy() => new(this);

    /// <summary>The workflow's name.</summary>
    public string Workflow { get; private set; } = "";

    /// <summary>The instance's id, which is its correlation id.</summary>
    public string InstanceId { get; private set; } = "";

    /// <summary>The version of the definition that started it.</summary>
    public int DefinitionVersion { get; private set; }

    /// <summary>Where it stands.</summary>
    public WorkflowStatus Status { get; private set; }

    /// <summary>True once it completed, failed or was cancelled.</summary>
    public bool IsFinished => Status is WorkflowStatus.Completed or WorkflowStatus.Failed or WorkflowStatus.Cancelled;

    /// <summary>The step running (or suspended), if any.</summary>
    public string? CurrentStep { get; private set; }

    /// <summary>The current step's attempt, from 1.</summary>
    public int Attempt { get; private set; }

    /// <summary>The compensation running (or suspended), if any.</summary>
    public string? CurrentCompensation { get; private set; }

    /// <summary>The current compensation's attempt, from 1.</summary>
    public int CompensationAttempt { get; private set; }

    /// <summary>The steps completed (or skipped), in order.</summary>
    public IReadOnlyList<string> CompletedSteps => _completed;

    /// <summary>The steps compensated (or whose compensation was skipped), in order.</summary>
    public IReadOnlyList<string> CompensatedSteps => _compensated;

    /// <summary>The compensations still to run, in order.</summary>
    public IReadOnlyList<string> PendingCompensations => _pendingCompensations;

    /// <summary>Why it is compensating, suspended, failed or cancelled.</summary>
    public string? Reason { get; private set; }

    /// <summary>
    /// Why it compensates: the step's failure or the operator's cancel, which it ends with once the compensations are
    /// done, whatever suspended one of them on the way.
    /// </summary>
    internal string? CompensationReason { get; private set; }

    /// <summary>True when an operator cancelled it.</summary>
    public bool CancelRequested { get; private set; }

    /// <summary>When it started.</summary>
    public DateTimeOffset StartedAt { get; private set; }

    /// <summary>
    /// The time its derived message ids begin with: the start decision's, recorded in <see cref="WorkflowStarted"/>, so
    /// the same from its history as in memory (the start event's time for histories written before it was recorded).
    /// </summary>
    internal DateTimeOffset IdTime { get; private set; }

    /// <summary>
    /// Which run of the instance id this is, from <see cref="IdTime"/>: an id used again after its history was deleted
    /// starts a run of its own, whose idempotency keys and timers are not the earlier run's. The start decision knows it,
    /// as a read of the stream does (unlike the stream version the history begins at).
    /// </summary>
    internal string Run => IdTime.UtcDateTime.ToString("yyyyMMdd'T'HHmmssfffffff'Z'", CultureInfo.InvariantCulture);

    /// <summary>When it last made progress (ignored replies and timers do not count).</summary>
    public DateTimeOffset UpdatedAt { get; private set; }

    /// <summary>When it finished, if it has.</summary>
    public DateTimeOffset? EndedAt { get; private set; }

    /// <summary>When the armed timer fires (a timeout, a wait, a compensation's timeout), if one is armed.</summary>
    public DateTimeOffset? TimerDueAt { get; private set; }

    /// <summary>The version of the instance's stream this view includes.</summary>
    public long StreamVersion { get; private set; } = -1;

    /// <summary>The workflow's state, as JSON.</summary>
    public JsonElement State { get; private set; }

    /// <summary>The token of the armed timer; a timer message with another token is stale.</summary>
    internal string? ArmedTimer { get; private set; }

    /// <summary>The stream version of the current step's first attempt: the key its messages share across attempts.</summary>
    internal long StepVisit { get; private set; }

    /// <summary>When the current step's first attempt started.</summary>
    internal DateTimeOffset StepStartedAt { get; private set; }

    /// <summary>The message id of the current step's attempt, or of the current compensation's.</summary>
    internal string? CurrentMessageId { get; private set; }

    /// <summary>
    /// When the last of the current visit's attempts sent for later (a retry's backoff) is delivered, if any was: an
    /// operator's retry during a backoff sends a new attempt now, and the delayed one still goes out when due.
    /// </summary>
    internal DateTimeOffset? LastSendAt { get; private set; }

    /// <summary>The compensations carried out (sent, and confirmed where asked), not counting those an operator skipped.</summary>
    internal int CompensationsCarriedOut { get; private set; }

    internal bool CancelledPath { get; private set; }

    /// <summary>The step whose failure left its effect uncertain (a timeout), compensated with the completed ones.</summary>
    internal string? UncertainStep { get; private set; }

    /// <summary>The workflow's state, deserialized.</summary>
    public T GetState<T>(JsonSerializerOptions? options = null) =>
        State.Deserialize<T>(options ?? JsonSerializerOptions.Web) ?? throw new WorkflowStateException($"The state of workflow instance {Workflow}/{InstanceId} is null.");

    internal bool HasSeen(string replyId) => _seenReplies.Contains(replyId);

    /// <summary>
    /// What the instance is doing now that a reply can answer: the current visit of a step, or the current
    /// compensation; null when neither.
    /// </summary>
    /// <summary>The reply type that completed a visit of a step, or null when none did (yet, or by a skip or a timer).</summary>
    internal string? SettledBy(SentFor visit) => visit.Compensation ? null : _settledBy.GetValueOrDefault((visit.Step, visit.Visit));

    internal SentFor? Answerable => CurrentStep is { } step ? new SentFor(step, StepVisit, false) : CurrentCompensation is { } compensation ? new SentFor(compensation, CompensationOccurrence(compensation), true) : null;

    /// <summary>
    /// Which compensation of <paramref name="step"/> this is, counting from 1: a step completed on several visits (a
    /// loop) is compensated once per visit, and each compensation is a request of its own.
    /// </summary>
    internal int CompensationOccurrence(string step)
    {
        var ended = 0;
        foreach (var compensated in _compensated)
        {
            if (compensated == step)
            {
                ended++;
            }
        }

        return ended + 1;
    }

    /// <summary>What the message <paramref name="messageId"/> the instance sent was for, or null when it sent none of that id.</summary>
    internal SentFor? SentForMessage(string messageId) => _sentFor.TryGetValue(messageId, out var sent) ? sent : null;

    /// <summary>
    /// The stream version of the instance's <see cref="WorkflowStarted"/>: 0, unless the id was used again after its
    /// history was deleted (soft), when the stream's versions go on after the old last one. Timer tokens and step visits
    /// count from it, so they are the same whether the start decision (which cannot know the old last version) or a
    /// read of the stream made them.
    /// </summary>
    internal long VersionOffset { get; private set; }

    /// <summary>Folds one event of the instance's history, recorded at <paramref name="time"/> as stream version <paramref name="streamVersion"/>.</summary>
    internal void Apply(WorkflowEvent e, DateTimeOffset time, long streamVersion)
    {
        StreamVersion = streamVersion;
        if (e is WorkflowStarted)
        {
            VersionOffset = streamVersion;
        }

        var version = streamVersion - VersionOffset;
        if (e is not (ReplyIgnored or TimerIgnored))
        {
            UpdatedAt = time;
        }

        switch (e)
        {
            case WorkflowStarted s:
                Workflow = s.Workflow;
                InstanceId = s.InstanceId;
                DefinitionVersion = s.Version;
                State = s.State.Clone();
                Status = WorkflowStatus.Running;
                StartedAt = time;
                IdTime = s.StartedAt ?? time;
                break;
            case StepStarted s:
                if (Status == WorkflowStatus.Suspended && !CancelRequested)
                {
                    // Retried or skipped past by an operator: the suspension's reason no longer says anything.
                    Reason = null;
                }

                Status = WorkflowStatus.Running;
                if (CurrentStep != s.Step || s.Attempt == 1)
                {
                    StepVisit = version;
                    StepStartedAt = time;
                    LastSendAt = null;
                }

                CurrentStep = s.Step;
                Attempt = s.Attempt;
                CurrentMessageId = s.MessageId;
                if (s.MessageId is not null)
                {
                    _sentFor[s.MessageId] = new SentFor(s.Step, StepVisit, false);
                    if (s.SendAt is { } sendAt && (LastSendAt is not { } last || sendAt > last))
                    {
                        LastSendAt = sendAt;
                    }
                }

                Arm(s.TimeoutAt is { } due ? ("step", s.Step, due) : null, version);
                break;
            case StepCompleted s:
                _completed.Add(s.Step);
                See(s.ReplyId);
                if (s.ReplyType is { } settledBy)
                {
                    _settledBy[(s.Step, StepVisit)] = settledBy;
                }

                if (s.State is { } state)
                {
                    State = state.Clone();
                }

                CurrentStep = null;
                Arm(null, version);
                break;
            case StepTimedOut:
                Arm(null, version);
                break;
            case StepAttemptFailed s:
                See(s.ReplyId);
                Arm(null, version);
                break;
            case StepFailed s:
                See(s.ReplyId);
                Reason = s.Reason;
                UncertainStep = s.EffectUncertain ? s.Step : null;
                Arm(null, version);
                break;
            case StepSkipped s:
                _completed.Add(s.Step);
                CurrentStep = null;
                Arm(null, version);
                break;
            case WorkflowSuspended s:
                Status = WorkflowStatus.Suspended;
                Reason = s.Reason;
                Arm(null, version);
                break;
            case WorkflowCancelRequested s:
                CancelRequested = true;
                Reason = s.Reason;
                break;
            case CompensationBegan s:
                Status = WorkflowStatus.Compensating;
                Reason = s.Reason;
                CompensationReason = s.Reason;
                CancelledPath = s.Cancelled;
                _pendingCompensations.Clear();
                _pendingCompensations.AddRange(s.Steps);
                CurrentStep = null;
                Arm(null, version);
                break;
            case CompensationStarted s:
                // A compensation retried from its suspension keeps the suspension's reason, as the summaries do, until
                // the instance ends with the one it compensates for (CompensationReason).
                Status = WorkflowStatus.Compensating;
                CurrentCompensation = s.Step;
                CompensationAttempt = s.Attempt;
                CurrentMessageId = s.MessageId;
                _sentFor[s.MessageId] = new SentFor(s.Step, CompensationOccurrence(s.Step), true);
                Arm(s.TimeoutAt is { } compensationDue ? ("compensation", s.Step, compensationDue) : null, version);
                break;
            case CompensationTimedOut:
                Arm(null, version);
                break;
            case CompensationCompleted s:
                See(s.ReplyId);
                CompensationsCarriedOut++;
                EndCompensation(s.Step, version);
                break;
            case CompensationSkipped s:
                EndCompensation(s.Step, version);
                break;
            case WorkflowCompleted:
                Reason = null;
                Finish(WorkflowStatus.Completed, time, version);
                break;
            case WorkflowFailed s:
                Reason = s.Reason;
                Finish(WorkflowStatus.Failed, time, version);
                break;
            case WorkflowCancelled s:
                Reason = s.Reason;
                Finish(WorkflowStatus.Cancelled, time, version);
                break;
            case ReplyIgnored s:
                See(s.ReplyId);
                break;
        }
    }

    private void See(string? replyId)
    {
        if (replyId is not null)
        {
            _seenReplies.Add(replyId);
        }
    }

    private void EndCompensation(string step, long version)
    {
        _pendingCompensations.Remove(step);
        _compensated.Add(step);
        CurrentCompensation = null;
        Arm(null, version);
    }

    private void Finish(WorkflowStatus status, DateTimeOffset time, long version)
    {
        Status = status;
        EndedAt = time;
        CurrentStep = null;
        CurrentCompensation = null;
        Arm(null, version);
    }

    private void Arm((string Kind, string Step, DateTimeOffset Due)? timer, long version)
    {
        ArmedTimer = timer is { } t ? TimerToken(t.Kind, t.Step, version) : null;
        TimerDueAt = timer?.Due;
    }

    /// <summary>The token of a timer armed by the event at <paramref name="version"/>: unique in the instance's history.</summary>
    internal static string TimerToken(string kind, string step, long version) => $"{kind}:{step}@{version}";

    /// <inheritdoc />
    public override string ToString() => $"{Workflow}/{InstanceId} {Status}{(CurrentStep is null ? "" : " at " + CurrentStep)}";
}

/// <summary>
/// What a message an instance sent was for: a visit of a step (<see cref="Visit"/> is the version it began at), or a
/// step's compensation (<see cref="Visit"/> is which of the step's compensations, from 1).
/// </summary>
internal readonly record struct SentFor(string Step, long Visit, bool Compensation)
{
    /// <summary>
    /// Whether a reply answering this cannot settle <paramref name="now"/>: one compensation's answer never confirms
    /// another's, also another of the same step, and an answer to a step's command never confirms a compensation (a
    /// late second answer to the command a compensation undoes, of the type its confirmation has, would confirm an undo
    /// that never happened); an answer to one visit of a step never settles a later visit of it (a loop), each visit
    /// being a request of its own: a late answer to an earlier attempt would otherwise complete the new visit before its
    /// own command was answered. Other replies to steps' commands are taken by their type: one command often has several
    /// consequences that later steps wait for.
    /// </summary>
    public bool Excludes(SentFor now) => Compensation != now.Compensation
        || (Compensation ? Step != now.Step || Visit != now.Visit : Step == now.Step && Visit != now.Visit);

    /// <inheritdoc />
    public override string ToString() => Compensation
        ? Visit > 1 ? $"compensation {Visit} of '{Step}'" : $"the compensation of '{Step}'"
        : $"the visit of step '{Step}' that began at version {Visit}";
}
