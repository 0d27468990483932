using Cairn.EventStore;
using Cairn.Projections;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Cairn.DependencyInjection;

public sealed partial class CairnBuilder
{
    /// <summary>
    /// Hosts a projection made once from the container: its runner starts with the host, brings its read model up to
    /// the head and keeps it there (inline projections in each append's transaction). Query it through
    /// <see cref="ReadModels"/>; follow it through <see cref="ProjectionMonitor"/>.
    /// </summary>
    public CairnBuilder AddProjection<TProjection>()
        where TProjection : Projection
    {
        AddProjectionServices(Services);
        Services.TryAddSingleton<TProjection>(sp => ActivatorUtilities.CreateInstance<TProjection>(sp));
        Services.AddSingleton<Projection>(sp => sp.GetRequiredService<TProjection>());
        Services.AddSingleton<IHostedService>(sp => new ProjectionHostedService(sp, sp.GetRequiredService<TProjection>()));
        return this;
    }

    /// <summary>Hosts a projection instance.</summary>
    public CairnBuilder AddProjection(Projection projection)
    {
        ArgumentNullException.ThrowIfNull(projection);
        projection.Validate();
        AddProjectionServices(Services);
        Services.AddSingleton(projection);
        Services.AddSingleton<IHostedService>(sp => new ProjectionHostedService(sp, projection));
        return this;
    }

    private static void AddProjectionServices(IServiceCollection services)
    {
        services.TryAddSingleton<IProjectionStore>(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.CreatePart<IProjectionStore>(sp));
        services.TryAddSingleton<ProjectionMonitor>();
        services.TryAddSingleton(sp => new ReadModels(sp.GetRequiredService<IProjectionStore>(), sp.GetRequiredService<EventSerializer>(), sp.GetServices<Projection>()));
    }
}

/// <summary>Lists the hosted projections, waits for them (read-your-writes) and starts their rebuilds.</summary>
public sealed class ProjectionMonitor
{
    private readonly NamedList<ProjectionRunner> _runners = new(r => r.Projection.Name, "projections", "its read model and position");

    /// <summary>The status of each hosted projection.</summary>
    public IReadOnlyList<ProjectionStatus> Statuses => _runners.Select(r => r.Status);

    /// <summary>Finds a hosted projection's runner by name.</summary>
    public ProjectionRunner? Find(string name) => _runners.Find(name);

    /// <summary>
    /// Read-your-writes: waits until the named projection's read model includes <paramref name="position"/> (an
    /// append's <see cref="AppendResult.LastPosition"/>), or throws <see cref="ProjectionWaitTimeoutException"/>.
    /// </summary>
    public Task WaitForAsync(string projection, GlobalPosition position, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        Find(projection) is { } runner ? runner.WaitForPositionAsync(position, timeout, cancellationToken) : Refusal.Of(NotHosted(projection));

    /// <summary>
    /// Waits until every hosted projection includes <paramref name="position"/>, within one timeout; throws as soon
    /// as one wait fails (a projection failed or stopped, or its time ran out), calling off the others.
    /// </summary>
    public async Task WaitForAllAsync(GlobalPosition position, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var others = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var waits = _runners.Select(r => r.WaitForPositionAsync(position, timeout, others.Token)).ToList();
        try
        {
            while (waits.Count > 0)
            {
                var done = await Task.WhenAny(waits).ConfigureAwait(false);
                waits.Remove(done);
                await done.ConfigureAwait(false);
            }
        }
        catch
        {
            // The first failure is the answer: the waits left are called off, and their cancellations observed.
            await others.CancelAsync().ConfigureAwait(false);
            foreach (var wait in waits)
            {
                _ = wait.ContinueWith(static t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }

            throw;
        }
    }

    /// <summary>Rebuilds the named projection into a shadow without downtime; completes at the switch.</summary>
    public Task RebuildAsync(string projection, CancellationToken cancellationToken = default) =>
        Find(projection) is { } runner ? runner.RebuildAsync(cancellationToken) : Refusal.Of(NotHosted(projection));

    internal void Add(ProjectionRunner runner) => _runners.Add(runner);

    private ProjectionNotFoundException NotHosted(string projection) =>
        new($"No projection named '{projection}' is hosted; the hosted ones are: {string.Join(", ", _runners.Select(r => r.Projection.Name))}.");
}

internal sealed class ProjectionHostedService : IHostedService, IAsyncDisposable, IDisposable
{
    private readonly ProjectionRunner _runner;

    public ProjectionHostedService(IServiceProvider services, Projection projection)
    {
        _runner = new ProjectionRunner(
            projection,
            services.GetRequiredService<IEventStore>(),
            services.GetRequiredService<IProjectionStore>(),
            services.GetRequiredService<EventSerializer>(),
            services.GetService<ILogger<ProjectionRunner>>(),
            services.GetService<TimeProvider>());
        services.GetRequiredService<ProjectionMonitor>().Add(_runner);
    }

    public Task StartAsync(CancellationToken cancellationToken) => _runner.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => _runner.StopAsync(cancellationToken);

    public ValueTask DisposeAsync() => _runner.DisposeAsync();

    /// <summary>For a container disposed synchronously: waits for <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
