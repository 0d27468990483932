using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Serialization;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Cairn.DependencyInjection;

/// <summary>Registers Cairn in a service collection.</summary>
public static partial class CairnServiceCollectionExtensions
{
    /// <summary>
    /// Adds Cairn: the event store of the chosen backend (instrumented), the checkpoint store, the event serializer,
    /// and the hosted subscriptions added through the returned builder.
    /// <code>services.AddCairn(o => o.UseSqlite("Data Source=cairn.db")).AddSubscription("audit", handler);</code>
    /// </summary>
    public static CairnBuilder AddCairn(this IServiceCollection services, Action<CairnOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);

        // A second AddCairn (a module adding its event types and queues) adds configuration; Cairn's own hosted
        // services are registered once, or the transport's relay would be started twice and never stopped.
        var first = !services.Any(d => d.ServiceType == typeof(CairnServicesAdded));
        services.TryAddSingleton<CairnServicesAdded>();
        services.AddOptions<CairnOptions>().Configure(configure).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<CairnOptions>, CairnOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<CairnOptions>>().Value;
            var storeOptions = options.ToEventStoreOptions(sp.GetRequiredService<TimeProvider>()) with { Schemas = sp.GetRequiredService<Schemas.PayloadSchemas>() };
            storeOptions.Validate();
            return storeOptions;
        });
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<CairnOptions>>().Value;
            return new BackendEventStore(options.StoreFactory!(sp, sp.GetRequiredService<EventStoreOptions>()));
        });

        // The container owns the backend's store through BackendEventStore, so this decorator leaves it open.
        services.TryAddSingleton<IEventStore>(sp => new InstrumentedEventStore(sp.GetRequiredService<BackendEventStore>().Store, ownsInner: false));
        services.TryAddSingleton<IEventReader>(sp => sp.GetRequiredService<IEventStore>());
        services.TryAddSingleton<IEventWriter>(sp => sp.GetRequiredService<IEventStore>());
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.CheckpointStoreFactory!(sp));
        services.TryAddSingleton<Domain.ISnapshotStore>(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.CreatePart<Domain.ISnapshotStore>(sp));
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.EventTypes);
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<CairnOptions>>().Value;
            var types = sp.GetRequiredService<EventTypeRegistry>();
            return new EventSerializer(types, options.JsonOptions, Schemas.UpcasterChains.Build(types, options.Schemas.Upcasters));
        });
        services.TryAddSingleton<Schemas.PayloadSchemas>();
        services.TryAddSingleton<Schemas.ISchemaStore>(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.CreatePart<Schemas.ISchemaStore>(sp));
        services.TryAddSingleton<Schemas.SchemaRegistry>();
        services.TryAddSingleton<IStorageMigrator>(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.CreatePart<IStorageMigrator>(sp));

        // Before messaging's set-up and anything that appends or sends: the registry is checked and loaded first.
        if (first)
        {
            AddSchemaRegistration(services);
        }

        services.TryAddSingleton<SubscriptionMonitor>();
        services.TryAddSingleton(sp => sp.GetRequiredService<IOptions<CairnOptions>>().Value.CreatePart<ICorrelationTraceReader>(sp));
        services.TryAddSingleton<CorrelationTracer>();
        services.TryAddSingleton<Schemas.AsyncApiDescriber>();
        AddMessaging(services, first);
        return new CairnBuilder(services);
    }

    private static void AddSchemaRegistration(IServiceCollection services) =>
        services.AddSingleton<IHostedService>(sp => new Schemas.SchemaRegistrationService(
            sp.GetRequiredService<IOptions<CairnOptions>>(),
            sp.GetRequiredService<EventSerializer>(),
            sp.GetRequiredService<IOptions<CairnOptions>>().Value.HasPart<Schemas.ISchemaStore>() ? sp.GetRequiredService<Schemas.SchemaRegistry>() : null,
            sp.GetRequiredService<Schemas.PayloadSchemas>(),
            sp.GetService<ILogger<Schemas.SchemaRegistrationService>>() ?? NullLogger<Schemas.SchemaRegistrationService>.Instance));

    /// <summary>Marks a service collection to which <see cref="AddCairn"/> has added Cairn's own hosted services.</summary>
    private sealed class CairnServicesAdded;
}

/// <summary>The optional parts of Cairn, added after <c>AddCairn</c>.</summary>
public sealed partial class CairnBuilder(IServiceCollection services)
{
    /// <summary>The service collection.</summary>
    public IServiceCollection Services { get; } = services;

    /// <summary>
    /// Hosts a catch-up subscription whose handler is a delegate; its checkpoint is stored under its name. The handler
    /// gets a service scope per handling, disposed after it (also when it throws), as a consumer's handler does.
    /// </summary>
    public CairnBuilder AddSubscription(string name, Func<IServiceProvider, RecordedEvent, CancellationToken, ValueTask> handler, Action<SubscriptionOptionsBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var builder = new SubscriptionOptionsBuilder(name);
        configure?.Invoke(builder);
        var options = builder.Build();
        options.Validate();
        ClaimCheckpoint(options.Name, $"The subscription '{options.Name}'");
        Services.AddSingleton<IHostedService>(sp => new SubscriptionHostedService(sp, options, async (e, ct) =>
        {
            // The handling's own scope: a scoped service resolved from the root would be one for the host's life.
            var scope = sp.GetRequiredService<IServiceScopeFactory>().CreateAsyncScope();
            await using (scope.ConfigureAwait(false))
            {
                await handler(scope.ServiceProvider, e, ct).ConfigureAwait(false);
            }
        }));
        return this;
    }

    /// <summary>
    /// Hosts a catch-up subscription whose handler is a <see cref="ISubscriptionHandler"/> made once from the container:
    /// the registered service when there is one, otherwise an instance made for the subscription, which is disposed
    /// with it.
    /// </summary>
    public CairnBuilder AddSubscription<THandler>(string name, Action<SubscriptionOptionsBuilder>? configure = null)
        where THandler : class, ISubscriptionHandler
    {
        var builder = new SubscriptionOptionsBuilder(name);
        configure?.Invoke(builder);
        var options = builder.Build();
        options.Validate();
        ClaimCheckpoint(options.Name, $"The subscription '{options.Name}'");
        Services.AddSingleton<IHostedService>(sp =>
        {
            // The container disposes what it made; an instance made here is the subscription's own to dispose.
            var registered = sp.GetService<THandler>();
            var handler = registered ?? ActivatorUtilities.CreateInstance<THandler>(sp);
            return new SubscriptionHostedService(sp, options, handler.HandleAsync, registered is null ? handler : null);
        });
        return this;
    }
}

/// <summary>Sets a hosted subscription's options.</summary>
public sealed class SubscriptionOptionsBuilder(string name)
{
    private SubscriptionOptions _options = new() { Name = name };

    /// <summary>Receive only what passes this filter (a category, a stream, event types).</summary>
    public SubscriptionOptionsBuilder Filter(EventFilter filter)
    {
        _options = _options with { Filter = filter };
        return this;
    }

    /// <summary>Changes any other setting.</summary>
    public SubscriptionOptionsBuilder Configure(Func<SubscriptionOptions, SubscriptionOptions> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        _options = change(_options) ?? throw new ArgumentException($"The subscription '{_options.Name}': Configure's change returned no options; return the options it was given, changed with 'with'.", nameof(change));
        return this;
    }

    internal SubscriptionOptions Build() => _options;
}

/// <summary>Handles the events of a hosted subscription.</summary>
public interface ISubscriptionHandler
{
    /// <summary>Handles one event. Throwing stops the subscription, which resumes from its checkpoint.</summary>
    ValueTask HandleAsync(RecordedEvent recorded, CancellationToken cancellationToken);
}

/// <summary>Lists the status of every hosted subscription in the process.</summary>
public sealed class SubscriptionMonitor
{
    private readonly NamedList<CatchUpSubscription> _subscriptions = new(s => s.Options.Name, "subscriptions", "its checkpoint key");

    /// <summary>The status of each subscription.</summary>
    public IReadOnlyList<SubscriptionStatus> Statuses => _subscriptions.Select(s => s.Status);

    /// <summary>Finds a hosted subscription by name.</summary>
    public CatchUpSubscription? Find(string name) => _subscriptions.Find(name);

    internal void Add(CatchUpSubscription subscription) => _subscriptions.Add(subscription);
}

internal sealed class SubscriptionHostedService : IHostedService, IAsyncDisposable, IDisposable
{
    private readonly CatchUpSubscription _subscription;

    /// <summary>A handler made for this subscription alone, disposed with it; null when the container owns it.</summary>
    private readonly object? _ownedHandler;

    public SubscriptionHostedService(IServiceProvider services, SubscriptionOptions options, Func<RecordedEvent, CancellationToken, ValueTask> handler, object? ownedHandler = null)
    {
        _ownedHandler = ownedHandler;
        _subscription = new CatchUpSubscription(
            services.GetRequiredService<IEventStore>(),
            services.GetRequiredService<ICheckpointStore>(),
            options,
            handler,
            services.GetService<ILogger<CatchUpSubscription>>(),
            services.GetService<TimeProvider>());
        services.GetRequiredService<SubscriptionMonitor>().Add(_subscription);
    }

    public Task StartAsync(CancellationToken cancellationToken) => _subscription.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => _subscription.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _subscription.DisposeAsync().ConfigureAwait(false);
        if (_subscription.Completion.IsCompleted)
        {
            await Disposal.DisposeAsync(_ownedHandler).ConfigureAwait(false);
        }
        else
        {
            // Its handler still runs (it ignored its cancellation): disposed once it returns, not under it.
            _ = _subscription.Completion.ContinueWith(_ => Disposal.DisposeAsync(_ownedHandler).AsTask(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).Unwrap();
        }
    }

    /// <summary>For a container disposed synchronously: waits for <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}

internal sealed class CairnOptionsValidator : IValidateOptions<CairnOptions>
{
    public ValidateOptionsResult Validate(string? name, CairnOptions options)
    {
        var failures = new List<string>();
        if (options.StoreFactory is null)
        {
            failures.Add("No backend is configured: call UseSqlite(...), UseInMemory() or another backend's Use… method in AddCairn.");
        }

        if (options.Source is not null && !EventStoreOptions.IsValidSource(options.Source))
        {
            failures.Add("Source " + EventStoreOptions.SourceRule);
        }

        if (options.MaxEventSize is < 1 or > 256 * 1024 * 1024)
        {
            failures.Add($"MaxEventSize is {options.MaxEventSize}; it must be between 1 byte and 256 MiB.");
        }

        // An undefined mode (a bad cast or configuration value) would be taken as another: Warn for Reject, say.
        if (!Enum.IsDefined(options.Schemas.DefaultValidation))
        {
            failures.Add($"Schemas.DefaultValidation is {(int)options.Schemas.DefaultValidation}; it must be one of {string.Join(", ", Enum.GetNames<Schemas.SchemaValidationMode>())}.");
        }

        if (!Enum.IsDefined(options.Schemas.DefaultCompatibility))
        {
            failures.Add($"Schemas.DefaultCompatibility is {(int)options.Schemas.DefaultCompatibility}; it must be one of {string.Join(", ", Enum.GetNames<Schemas.CompatibilityMode>())}.");
        }

        try
        {
            Schemas.UpcasterChains.Build(options.EventTypes, options.Schemas.Upcasters);
        }
        catch (Schemas.InvalidUpcasterException ex)
        {
            failures.Add(ex.Message);
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
