using Cairn.DependencyInjection;
using Microsoft.Data.Sqlite;

namespace Cairn.Sqlite;

/// <summary>
/// The version of a SQLite file's tables, read without creating or changing the file, and its migration as a step of
/// its own. A store migrates its file when it opens it; this lets a tool (the <c>cairn</c> CLI's schema check, say)
/// refuse a file that is missing or not current rather than create or migrate it by reading it.
/// </summary>
public sealed class SqliteStorageMigrator(SqliteEventStoreOptions options) : IStorageMigrator
{
    private readonly SqliteEventStoreOptions _options = Validated(options);

    /// <inheritdoc />
    public Task<StorageSchemaStatus> GetStatusAsync(CancellationToken cancellationToken) =>
        Task.Run(() => Status(VersionOfFile()), cancellationToken);

    /// <inheritdoc />
    public Task<StorageMigrationResult> MigrateAsync(CancellationToken cancellationToken) =>
        Task.Run(
            () =>
            {
                // Read first for what it refuses (a directory); the version that counts is read under the write lock.
                _ = VersionOfFile();
                // Not pooled: the migration leaves the file closed when it returns (a pooled connection kept it open,
                // locked on some systems, for as long as the process ran).
                var builder = Builder();
                builder.Pooling = false;
                if (Path.GetDirectoryName(Path.GetFullPath(builder.DataSource)) is { Length: > 0 } directory)
                {
                    // As the store does when it opens the file: a fresh machine's data folder may not exist yet.
                    Directory.CreateDirectory(directory);
                }

                int before;
                using (var connection = Open(builder))
                {
                    before = SqliteSchema.Ensure(connection, cancellationToken);
                }

                return new StorageMigrationResult(before, Status(VersionOfFile()));
            },
            cancellationToken);

    /// <summary>The file's Cairn schema version: 0 when the file or its tables do not exist yet.</summary>
    private int VersionOfFile()
    {
        var builder = Builder();
        var path = Path.GetFullPath(builder.DataSource);
        if (Directory.Exists(path))
        {
            // Not a file that is missing (version 0, "needs migrating"): nothing can be migrated there.
            throw new IOException($"The SQLite Data Source '{path}' is a directory, not a database file.");
        }

        if (!File.Exists(path))
        {
            return 0;
        }

        // Read-write without creating: a read-only open of a file in WAL mode needs its shared-memory file to exist.
        builder.Mode = SqliteOpenMode.ReadWrite;
        builder.Pooling = false;
        using var connection = Open(builder);
        return SqliteSchema.VersionOf(connection);
    }

    /// <summary>The connection string, waiting for another process's lock as long as the store's <c>BusyTimeout</c>.</summary>
    private SqliteConnectionStringBuilder Builder() =>
        new(_options.ConnectionString) { DefaultTimeout = (int)Math.Ceiling(_options.BusyTimeout.TotalSeconds) };

    private SqliteConnection Open(SqliteConnectionStringBuilder builder)
    {
        var connection = new SqliteConnection(builder.ToString());
        try
        {
            connection.Open();
            using var wait = connection.CreateCommand();
            wait.CommandText = $"PRAGMA busy_timeout = {_options.BusyTimeoutMilliseconds}";
            wait.ExecuteNonQuery();
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private StorageSchemaStatus Status(int version) =>
        new("sqlite", new SqliteConnectionStringBuilder(_options.ConnectionString).DataSource, version, SqliteSchema.Version);

    private static SqliteEventStoreOptions Validated(SqliteEventStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }
}
