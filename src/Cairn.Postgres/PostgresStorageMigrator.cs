using Cairn.DependencyInjection;
using Npgsql;

namespace Cairn.Postgres;

/// <summary>
/// Creates and migrates the PostgreSQL schema of a store without opening the store: the explicit step for
/// deployments that run with <see cref="PostgresEventStoreOptions.MigrateOnStart"/> off. Migrations take the same
/// advisory lock as a store opening, so this may run beside starting processes.
/// </summary>
public sealed class PostgresStorageMigrator(PostgresEventStoreOptions options) : IStorageMigrator
{
    private readonly PostgresEventStoreOptions _options = Validated(options);

    /// <inheritdoc />
    public async Task<StorageSchemaStatus> GetStatusAsync(CancellationToken cancellationToken)
    {
        // Npgsql stops a connect on cancel only until the socket is open: a server that takes the connection and never
        // answers its start-up holds the open until its timeout. The caller stops waiting when cancelled; the read
        // ends by itself at that timeout, closing its own data source.
        var read = ReadVersionAsync(cancellationToken);
        _ = read.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        return Status(await read.WaitAsync(cancellationToken).ConfigureAwait(false));
    }

    private async Task<int> ReadVersionAsync(CancellationToken cancellationToken)
    {
        await using var dataSource = _options.BuildDataSource();
        return await PostgresSchema.VersionOfAsync(dataSource, _options.Schema, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<StorageMigrationResult> MigrateAsync(CancellationToken cancellationToken)
    {
        await using var dataSource = _options.BuildDataSource();
        return await Task.Run(
            () =>
            {
                var before = PostgresSchema.Migrate(dataSource, _options.Schema, cancellationToken);
                return new StorageMigrationResult(before, Status(PostgresSchema.VersionOf(dataSource, _options.Schema)));
            },
            cancellationToken).ConfigureAwait(false);
    }

    private StorageSchemaStatus Status(int version)
    {
        var server = new NpgsqlConnectionStringBuilder(_options.ConnectionString);
        return new StorageSchemaStatus("postgres", $"{server.Host}:{server.Port}/{server.Database} schema {_options.Schema}", version, PostgresSchema.CurrentVersion);
    }

    private static PostgresEventStoreOptions Validated(PostgresEventStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }
}
