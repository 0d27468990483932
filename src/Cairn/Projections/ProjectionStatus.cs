using Cairn.EventStore;

namespace Cairn.Projections;

/// <summary>What a projection runner is doing.</summary>
public enum ProjectionState
{
    /// <summary>Not started, or stopped by its owner.</summary>
    Stopped,

    /// <summary>Applying history to reach the head of the log.</summary>
    CatchingUp,

    /// <summary>Caught up: applying events as they are committed (or, inline, in the append's transaction).</summary>
    Live,

    /// <summary>Failed on the store and waiting to retry from its stored position.</summary>
    Faulted,

    /// <summary>Stopped at an event it fails on (policy <see cref="ProjectionFailurePolicy.Stop"/>), or refused to start; see <see cref="ProjectionStatus.LastError"/>.</summary>
    Failed,

    /// <summary>
    /// Another process holds the projection's lease and runs it (see <see cref="IProjectionLeases"/>); this one follows
    /// the stored position, for read-your-writes waits, and takes over when the holder dies.
    /// </summary>
    Standby,
}

/// <summary>How far a rebuild into a shadow has come.</summary>
/// <param name="Build">The shadow build.</param>
/// <param name="Version">The projection version it is built with.</param>
/// <param name="Position">The position it has reached.</param>
/// <param name="Head">The head of the log when last looked at.</param>
/// <param name="EventsApplied">Events applied so far.</param>
/// <param name="EventsPerSecond">Positions covered per second since it started.</param>
/// <param name="EstimatedRemaining">The time left at that pace, or null before there is a pace.</param>
/// <param name="StartedAt">When it started.</param>
public sealed record RebuildProgress(long Build, int Version, GlobalPosition Position, GlobalPosition Head, long EventsApplied, double EventsPerSecond, TimeSpan? EstimatedRemaining, DateTimeOffset StartedAt)
{
    /// <summary>
    /// The event the rebuild stopped at under <see cref="ProjectionFailurePolicy.Stop"/>, or null while it runs: the
    /// shadow keeps what it built and the serving build goes on; <see cref="ProjectionRunner.RebuildAsync"/> or a restart
    /// tries the event again. <see cref="ProjectionStatus.LastError"/> says why it failed.
    /// </summary>
    public GlobalPosition? StoppedAt { get; init; }

    /// <summary>The share of the log covered, from 0 to 1.</summary>
    public double Fraction => Head.Value == 0 ? 1 : Math.Min(1, (double)Position.Value / Head.Value);
}

/// <summary>A snapshot of a projection's state.</summary>
/// <param name="Name">The projection.</param>
/// <param name="Lifecycle">Inline or async.</param>
/// <param name="State">What it is doing.</param>
/// <param name="Version">The version of its code.</param>
/// <param name="ServingVersion">The version that built the read model queries read (differs from <paramref name="Version"/> until a rebuild switches); null before the runner has opened it.</param>
/// <param name="Position">The position the serving read model has reached.</param>
/// <param name="Head">The head of the log when last looked at.</param>
/// <param name="LagSeconds">How long the oldest event not yet applied has waited; 0 when caught up.</param>
/// <param name="EventsPerSecond">Events applied per second over the last few seconds.</param>
/// <param name="Failures">Failed attempts so far.</param>
/// <param name="DeadLetters">Events skipped into dead letters so far by this runner.</param>
/// <param name="LastError">The last failure, if any.</param>
/// <param name="FailedEvent">The event it stopped at, when <see cref="ProjectionState.Failed"/> on an event.</param>
/// <param name="Rebuild">The rebuild in progress, if any.</param>
public sealed record ProjectionStatus(
    string Name,
    ProjectionLifecycle Lifecycle,
    ProjectionState State,
    int Version,
    int? ServingVersion,
    GlobalPosition Position,
    GlobalPosition Head,
    double LagSeconds,
    double EventsPerSecond,
    long Failures,
    long DeadLetters,
    string? LastError,
    GlobalPosition? FailedEvent,
    RebuildProgress? Rebuild)
{
    /// <summary>Events in the log not yet applied.</summary>
    public long LagEvents => Math.Max(0, Head.Value - Position.Value);
}
