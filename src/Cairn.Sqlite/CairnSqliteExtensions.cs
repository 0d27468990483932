using Cairn.DependencyInjection;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Cairn.Sqlite;

/// <summary>Registers the embedded SQLite backend.</summary>
public static class CairnSqliteExtensions
{
    /// <summary>
    /// Stores events, checkpoints, queues, topics and the inbox in one SQLite file: <c>services.AddCairn(o => o.UseSqlite("Data Source=cairn.db"))</c>.
    /// </summary>
    public static CairnOptions UseSqlite(this CairnOptions options, string connectionString, Func<SqliteEventStoreOptions, SqliteEventStoreOptions>? configure = null)
    {
        var sqliteOptions = new SqliteEventStoreOptions { ConnectionString = connectionString };
        sqliteOptions = configure?.Invoke(sqliteOptions) ?? sqliteOptions;
        sqliteOptions.Validate();

        // Every part resolves the one store the container owns (and disposes after them), whichever part opens it.
        static SqliteEventStore Store(IServiceProvider services) => services.GetBackendStore<SqliteEventStore>();
        return options.UseBackend(
            "sqlite",
            (services, storeOptions) => new SqliteEventStore(sqliteOptions, storeOptions, services.GetService<ILogger<SqliteEventStore>>()),
            services => new SqliteCheckpointStore(Store(services)),
            services => new SqliteMessageBroker(Store(services)),
            Settings(sqliteOptions))
            .UseBackendPart<Domain.ISnapshotStore>(services => new SqliteSnapshotStore(Store(services)))
            .UseBackendPart<Schemas.ISchemaStore>(services => new SqliteSchemaStore(Store(services)))
            .UseBackendPart<Projections.IProjectionStore>(services => new SqliteProjectionStore(Store(services)))
            .UseBackendPart<Diagnostics.ICorrelationTraceReader>(services => new SqliteCorrelationTraceReader(Store(services)))
            .UseBackendPart<IStorageMigrator>(_ => new SqliteStorageMigrator(sqliteOptions));
    }

    /// <summary>The file and settings, without a password, that a second <c>UseSqlite</c> must repeat to be accepted.</summary>
    private static string Settings(SqliteEventStoreOptions options)
    {
        var connection = new SqliteConnectionStringBuilder(options.ConnectionString);
        connection.Remove("Password");
        return (options with { ConnectionString = connection.ConnectionString }).ToString();
    }
}
