using Cairn.DependencyInjection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

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

        // Every part resolves the one store the container owns (and disposes after them), whichever part opens it.
        static PostgresEventStore Store(IServiceProvider services) => services.GetBackendStore<PostgresEventStore>();
        return options.UseBackend(
            "postgres",
            // Opened as the host makes its services, which takes no start token: its stopping token (Ctrl+C, SIGTERM) ends
            // a wait for another process's migration instead.
            (services, storeOptions) => new PostgresEventStore(
                postgresOptions,
                storeOptions,
                services.GetService<ILogger<PostgresEventStore>>(),
                services.GetService<Microsoft.Extensions.Hosting.IHostApplicationLifetime>()?.ApplicationStopping ?? default),
            services => new PostgresCheckpointStore(Store(services)),
            services => new PostgresMessageBroker(Store(services), services.GetService<ILogger<PostgresMessageBroker>>()),
            Settings(postgresOptions))
            .UseBackendPart<Diagnostics.ICorrelationTraceReader>(services => new PostgresCorrelationTraceReader(Store(services)))
            .UseBackendPart<Projections.IProjectionStore>(services => new PostgresProjectionStore(Store(services), services.GetService<ILogger<PostgresProjectionStore>>()))
            .UseBackendPart<Domain.ISnapshotStore>(services => new PostgresSnapshotStore(Store(services)))
            .UseBackendPart<Schemas.ISchemaStore>(services => new PostgresSchemaStore(Store(services)))
            .UseBackendPart<IStorageMigrator>(_ => new PostgresStorageMigrator(postgresOptions));
    }

    /// <summary>The database, schema and settings, without its passwords, that a second <c>UsePostgres</c> must repeat to be accepted.</summary>
    private static string Settings(PostgresEventStoreOptions options)
    {
        // Both secrets a connection string may hold: the user's password and the client certificate key's.
        var connection = new NpgsqlConnectionStringBuilder(options.ConnectionString) { Password = null, SslPassword = null };
        return (options with { ConnectionString = connection.ConnectionString }).ToString();
    }
}
