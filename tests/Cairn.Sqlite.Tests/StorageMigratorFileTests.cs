namespace Cairn.Sqlite.Tests;

/// <summary><c>storage migrate</c> and <c>storage status</c> on a SQLite file leave it closed behind them.</summary>
public sealed class StorageMigratorFileTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    /// <summary>How many of this process's file descriptors are open on the database file (Linux's /proc, where the suite runs).</summary>
    private int OpenHandles() =>
        new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos()
            .Count(fd => fd.LinkTarget is { } target && target == _database.Path);

    // The migration opened the file through the connection pool, so the process held it open (locked, on some
    // systems) after the migration returned, for as long as it ran.
    [Fact]
    public async Task a_migration_leaves_the_file_closed_when_it_returns()
    {
        var migrator = new SqliteStorageMigrator(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });

        var result = await migrator.MigrateAsync(default);

        Assert.True(result.Migrated);
        Assert.Equal(0, OpenHandles());
    }
}
