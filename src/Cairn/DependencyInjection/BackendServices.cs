using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.DependencyInjection;

/// <summary>
/// The event store the backend's factory opened, as a singleton the container owns: every part of the backend (event
/// store, broker, checkpoints, schema store, trace reader) resolves this one, so the store is opened once, disposed
/// once whichever part opened it, and disposed after those parts, which were made after it.
/// </summary>
internal sealed class BackendEventStore(IEventStore store) : IAsyncDisposable, IDisposable
{
    private int _disposed;

    public IEventStore Store { get; } = store;

    public ValueTask DisposeAsync() =>
        Interlocked.Exchange(ref _disposed, 1) == 0 ? Disposal.DisposeAsync(Store) : ValueTask.CompletedTask;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Disposal.Dispose(Store);
        }
    }
}

/// <summary>
/// The message broker the backend's factory made, before a transport or the instrumentation wraps it. It is not
/// disposed here: the registered <see cref="IMessageBroker"/> that wraps it owns it.
/// </summary>
internal sealed class BackendMessageBroker(IMessageBroker broker)
{
    public IMessageBroker Broker { get; } = broker;
}

/// <summary>How a backend's parts reach the store and broker the backend itself made.</summary>
internal static class BackendServices
{
    /// <summary>The backend's own event store, opened once and owned by the container.</summary>
    public static TStore GetBackendStore<TStore>(this IServiceProvider services)
        where TStore : class, IEventStore =>
        services.GetRequiredService<BackendEventStore>().Store as TStore
            ?? throw new InvalidOperationException($"The backend's parts need its {typeof(TStore).Name}, not a {services.GetRequiredService<BackendEventStore>().Store.GetType().Name}.");

    /// <summary>
    /// The backend's own message broker, whatever transport wraps it. The wrapped <see cref="IMessageBroker"/> is
    /// resolved first, so the container owns (and disposes) the broker even when only this part uses it.
    /// </summary>
    public static TBroker GetBackendBroker<TBroker>(this IServiceProvider services)
        where TBroker : class, IMessageBroker
    {
        services.GetRequiredService<IMessageBroker>();
        var broker = services.GetRequiredService<BackendMessageBroker>().Broker;
        return broker as TBroker
            ?? throw new InvalidOperationException($"The backend's parts need its {typeof(TBroker).Name}, not a {broker.GetType().Name}.");
    }
}
