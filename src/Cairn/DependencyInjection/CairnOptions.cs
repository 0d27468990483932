using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Serialization;
using Cairn.Subscriptions;

namespace Cairn.DependencyInjection;

/// <summary>
/// What <c>services.AddCairn(o => ...)</c> configures: the backend, the event types, and the event store's limits.
/// Validated when the host starts; a missing backend or an impossible limit stops the start with a clear message.
/// </summary>
public sealed class CairnOptions
{
    /// <summary>The CloudEvents <c>source</c> of the events this service writes; <c>urn:cairn:&lt;entry assembly&gt;</c> by default.</summary>
    public string? Source { get; set; }

    /// <summary>The largest event accepted, in bytes of data and metadata (1 MiB by default).</summary>
    public int MaxEventSize { get; set; } = EventStoreOptions.DefaultMaxEventSize;

    /// <summary>The map of event classes to stable type names.</summary>
    public EventTypeRegistry EventTypes { get; } = new();

    /// <summary>Versions, compatibility, validation and upcasting of the event types: the schema registry's settings.</summary>
    public Schemas.SchemaOptions Schemas { get; } = new();

    /// <summary>JSON options for event data; web defaults when null. Set a source-generated resolver here.</summary>
    public JsonSerializerOptions? JsonOptions { get; set; }

    /// <summary>The name of the configured backend, or null when none is.</summary>
    public string? BackendName { get; private set; }

    internal Func<IServiceProvider, EventStoreOptions, IEventStore>? StoreFactory { get; private set; }

    internal Func<IServiceProvider, ICheckpointStore>? CheckpointStoreFactory { get; private set; }

    internal Func<IServiceProvider, Messaging.IMessageBroker>? BrokerFactory { get; private set; }

    /// <summary>The name of the configured transport to an external broker, or null when messages stay in the backend.</summary>
    public string? TransportName { get; private set; }

    /// <summary>The settings the configured transport was given (secrets left out), or null when it gave none.</summary>
    public string? TransportSettings { get; private set; }

    internal Func<IServiceProvider, Messaging.IMessageBroker, Messaging.IMessageBroker>? TransportFactory { get; private set; }

    internal Func<IServiceProvider, Microsoft.Extensions.Hosting.IHostedService>? TransportService { get; private set; }

    /// <summary>The backend's implementations of optional parts (projection store, snapshot store), by contract type.</summary>
    private Dictionary<Type, Func<IServiceProvider, object>> BackendParts { get; } = [];

    /// <summary>
    /// Supplies the backend's implementation of an optional part, such as <c>IProjectionStore</c> or
    /// <c>ISnapshotStore</c>. Backend packages call this from their own <c>Use…</c> method.
    /// </summary>
    public CairnOptions UseBackendPart<T>(Func<IServiceProvider, T> factory)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(factory);
        BackendParts[typeof(T)] = factory;
        return this;
    }

    /// <summary>Whether the backend supplies a part of type <typeparamref name="T"/>.</summary>
    internal bool HasPart<T>()
        where T : class => BackendParts.ContainsKey(typeof(T));

    /// <summary>Makes the backend's part of type <typeparamref name="T"/>, or fails naming the backend that lacks it.</summary>
    internal T CreatePart<T>(IServiceProvider services)
        where T : class =>
        BackendParts.TryGetValue(typeof(T), out var factory)
            ? (T)factory(services)
            : throw new InvalidOperationException($"The {BackendName ?? "configured"} backend has no {typeof(T).Name}; {BackendsWith(typeof(T))}.");

    /// <summary>Which backends supply a part, for the error of one that does not.</summary>
    private static string BackendsWith(Type part) => part == typeof(IStorageMigrator)
        ? "UsePostgres(...) and UseSqlite(...) migrate their tables as a separate step; memory has no tables"
        : "choose a backend that has one (UseSqlite(...), UsePostgres(...) or UseInMemory())";

    /// <summary>Keeps everything in memory: for tests and tools, not for data that must survive the process.</summary>
    public CairnOptions UseInMemory() =>
        UseBackend(
            "in-memory",
            (_, options) => new InMemoryEventStore(options),
            _ => new InMemoryCheckpointStore(),
            services => new Messaging.InMemory.InMemoryMessageBroker(
                services.GetBackendStore<InMemoryEventStore>(),
                services.GetRequiredService<ICheckpointStore>()),
            settings: "memory")
        .UseBackendPart<Projections.IProjectionStore>(services => new Projections.InMemory.InMemoryProjectionStore(services.GetBackendStore<InMemoryEventStore>()))
        .UseBackendPart<Domain.ISnapshotStore>(_ => new Domain.InMemorySnapshotStore())
        .UseBackendPart<Schemas.ISchemaStore>(_ => new Schemas.InMemorySchemaStore())

        // The broker the backend made, not the registered one, which a transport and the instrumentation wrap.
        .UseBackendPart<Diagnostics.ICorrelationTraceReader>(services => services.GetBackendBroker<Messaging.InMemory.InMemoryMessageBroker>());

    /// <summary>The settings the configured backend was given (secrets left out), or null when it gave none.</summary>
    public string? BackendSettings { get; private set; }

    /// <summary>
    /// Plugs in a backend. Backend packages call this from their own <c>Use…</c> method. The store the factory opens is
    /// opened once and owned by the container, which disposes it after the parts that use it. A second backend is
    /// refused, and so is the same backend again with other <paramref name="settings"/> (a key of what it stores where,
    /// such as its connection string without secrets; null when it has none), with a
    /// <see cref="BackendConflictException"/>: the later would silently replace the earlier.
    /// </summary>
    public CairnOptions UseBackend(string name, Func<IServiceProvider, EventStoreOptions, IEventStore> store, Func<IServiceProvider, ICheckpointStore> checkpoints, string? settings = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(checkpoints);
        if (BackendName is not null && (BackendName != name || (BackendSettings is not null && settings is not null && BackendSettings != settings)))
        {
            throw new BackendConflictException(BackendName, BackendSettings, name, settings);
        }

        BackendName = name;
        BackendSettings = settings ?? BackendSettings;
        StoreFactory = store;
        CheckpointStoreFactory = checkpoints;
        return this;
    }

    /// <summary>Plugs in a backend with messaging: its event store, checkpoint store and message broker.</summary>
    public CairnOptions UseBackend(string name, Func<IServiceProvider, EventStoreOptions, IEventStore> store, Func<IServiceProvider, ICheckpointStore> checkpoints, Func<IServiceProvider, Messaging.IMessageBroker> broker, string? settings = null)
    {
        ArgumentNullException.ThrowIfNull(broker);
        UseBackend(name, store, checkpoints, settings);
        BrokerFactory = broker;
        return this;
    }

    /// <summary>
    /// Plugs in a transport to an external broker: <paramref name="wrap"/> receives the backend's broker and returns the
    /// broker the application uses, and <paramref name="service"/> (its relay, say) runs while the host runs, started
    /// after the queues are declared. Transport packages call this from their own <c>Use…</c> method. A second transport
    /// is refused, and so is the same transport again with other <paramref name="settings"/> (where it connects, without
    /// secrets; null when it has none): the later would silently replace the earlier.
    /// </summary>
    public CairnOptions UseTransport(string name, Func<IServiceProvider, Messaging.IMessageBroker, Messaging.IMessageBroker> wrap, Func<IServiceProvider, Microsoft.Extensions.Hosting.IHostedService>? service = null, string? settings = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(wrap);
        if (TransportName is not null && TransportName != name)
        {
            throw new InvalidOperationException($"Cairn is already configured with the {TransportName} transport; choose one.");
        }

        if (TransportName is not null && TransportSettings is not null && settings is not null && TransportSettings != settings)
        {
            throw new InvalidOperationException($"Cairn is already configured with the {TransportName} transport ({TransportSettings}), and it is configured again with other settings ({settings}); configure it once, or with the same settings.");
        }

        TransportName = name;
        TransportSettings = settings ?? TransportSettings;
        TransportFactory = wrap;
        TransportService = service;
        return this;
    }

    /// <summary>The event store settings these options describe.</summary>
    public EventStoreOptions ToEventStoreOptions(TimeProvider timeProvider)
    {
        var options = new EventStoreOptions { MaxEventSize = MaxEventSize, TimeProvider = timeProvider };
        return Source is null ? options : options with { Source = Source };
    }
}
