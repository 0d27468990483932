using Cairn.DependencyInjection;
using Cairn.EventStore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Cairn.Postgres;

/// <summary>Registers the PostgreSQL backend.</summary>
public static class CairnPostgresExtensions
{
    /// <summary>
    /// Stores events, checkpoints, queues, topics, dead letters, the inbox, read models, snapshots and the schema registry
    /// in PostgreSQL, shared by every process that names the same database and schema:
    /// <c>services.AddCairn(o => o.UsePostgres("Host=db;Database=app;Username=app"))</c>. The schema is created and
    /// migrated on start (or by <c>storage migrate</c>). Each hosted projection runs in one process at a time and moves
    /// to another when that one dies.
    /// </summary>
    public static CairnOptions UsePostgres(this CairnOptions options, string connectionString, Func<PostgresEventStoreOptions, PostgresEventStoreOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var postgresOptions = new PostgresEventStoreOptions { ConnectionString = connectionString };
        postgresOptions = configure?.Invoke(postgresOptions) ?? postgresOptions;
        postgresOptions.Validate();
        PostgresEventStore? store = null;
        var gate = new object();
        PostgresEventStore Open(IServiceProvider services, EventStoreOptions storeOptions)
        {
            lock (gate)
            {
                return store ??= new PostgresEventStore(postgresOptions, storeOptions, services.GetService<ILogger<PostgresEventStore>>());
            }
        }

        return options.UseBackend(
            "postgres",
            Open,
            services => new PostgresCheckpointStore(Open(services, services.GetRequiredService<EventStoreOptions>())),
            services => new PostgresMessageBroker(Open(services, services.GetRequiredService<EventStoreOptions>()), services.GetService<ILogger<PostgresMessageBroker>>()))
            .UseBackendPart<Diagnostics.ICorrelationTraceReader>(services => new PostgresCorrelationTraceReader(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<Projections.IProjectionStore>(services => new PostgresProjectionStore(Open(services, services.GetRequiredService<EventStoreOptions>()), services.GetService<ILogger<PostgresProjectionStore>>()))
            .UseBackendPart<Domain.ISnapshotStore>(services => new PostgresSnapshotStore(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<Schemas.ISchemaStore>(services => new PostgresSchemaStore(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<IStorageMigrator>(_ => new PostgresStorageMigrator(postgresOptions));
    }
}
