using Cairn.DependencyInjection;
using Cairn.EventStore;
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
        SqliteEventStore? store = null;
        var gate = new object();
        SqliteEventStore Open(IServiceProvider services, EventStoreOptions storeOptions)
        {
            lock (gate)
            {
                return store ??= new SqliteEventStore(sqliteOptions, storeOptions, services.GetService<ILogger<SqliteEventStore>>());
            }
        }

        return options.UseBackend(
            "sqlite",
            Open,
            services => new SqliteCheckpointStore(Open(services, services.GetRequiredService<EventStoreOptions>())),
            services => new SqliteMessageBroker(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<Domain.ISnapshotStore>(services => new SqliteSnapshotStore(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<Schemas.ISchemaStore>(services => new SqliteSchemaStore(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<Projections.IProjectionStore>(services => new SqliteProjectionStore(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<Diagnostics.ICorrelationTraceReader>(services => new SqliteCorrelationTraceReader(Open(services, services.GetRequiredService<EventStoreOptions>())))
            .UseBackendPart<IStorageMigrator>(_ => new SqliteStorageMigrator(sqliteOptions));
    }
}
