namespace Cairn.Projections;

/// <summary>
/// Offered by a projection store whose read models several processes share (as an optional second interface of the
/// <see cref="IProjectionStore"/>): a projection's runner holds the projection's lease while it applies, so one
/// process at a time does the work and another takes over when the holder dies. On a store without it (one process,
/// or in memory) every runner runs at once; the position each batch expects still keeps two runners from applying an
/// event twice, and the lease only saves the work they would repeat. Runners of one store share its lease. An inline
/// projection is applied by the appends of every process that attaches it, once the holder has made it live.
/// </summary>
public interface IProjectionLeases
{
    /// <summary>
    /// Waits until this process holds the projection's lease and returns it; throws
    /// <see cref="OperationCanceledException"/> when cancelled first.
    /// </summary>
    Task<IProjectionLease> AcquireAsync(string projection, CancellationToken cancellationToken);
}

/// <summary>A held lease on a projection; disposing it releases it for another process.</summary>
public interface IProjectionLease : IAsyncDisposable
{
    /// <summary>Cancelled when the lease is lost (its holder's connection to the backend broke): stop applying at once.</summary>
    CancellationToken Lost { get; }
}
