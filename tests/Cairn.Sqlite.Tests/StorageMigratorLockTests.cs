using Cairn.Sqlite;
using Cairn.Conformance.Support;
using Cairn.Sqlite.Tests;
using Microsoft.Data.Sqlite;

namespace Cairn.Tests;

/// <summary>
/// A migration waits for another process's write lock: it stops waiting when cancelled, as PostgreSQL's migrator stops
/// waiting for its migration lock, and of two that waited only the one that migrated says so.
/// </summary>
public sealed class StorageMigratorLockTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    [Fact]
    public async Task a_migration_waiting_for_another_writer_stops_when_cancelled()
    {
        using var other = HoldWriteLock();

        var migrator = new SqliteStorageMigrator(new SqliteEventStoreOptions
        {
            ConnectionString = _database.ConnectionString,
            BusyTimeout = TimeSpan.FromMinutes(2),
        });
        using var cancel = new CancellationTokenSource();
        var migration = migrator.MigrateAsync(cancel.Token);
        cancel.CancelAfter(TimeSpan.FromMilliseconds(200));

        var ended = await Task.WhenAny(migration, Task.Delay(TimeSpan.FromSeconds(10)));

        try
        {
            Assert.True(ended == migration, "MigrateAsync still waited for the write lock 10 s after its token was cancelled");
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => migration);
        }
        finally
        {
            using var rollback = other.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
            await Task.WhenAny(migration, Task.Delay(TimeSpan.FromSeconds(30)));
        }
    }

    [Fact]
    public async Task of_two_migrations_waiting_for_the_lock_only_the_one_that_migrated_says_so()
    {
        var migrations = new List<Task<Cairn.DependencyInjection.StorageMigrationResult>>();
        using (var other = HoldWriteLock())
        {
            for (var i = 0; i < 2; i++)
            {
                var migrator = new SqliteStorageMigrator(new SqliteEventStoreOptions { ConnectionString = _database.ConnectionString });
                migrations.Add(migrator.MigrateAsync(CancellationToken.None));
            }

            using var rollback = other.CreateCommand();
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
        }

        var results = await Task.WhenAll(migrations).Bounded();

        Assert.Single(results, r => r.Migrated);
        Assert.All(results, r => Assert.True(r.After.IsCurrent));
    }

    /// <summary>Another process's connection, holding the file's write lock until it rolls back.</summary>
    private SqliteConnection HoldWriteLock()
    {
        var other = new SqliteConnection($"Data Source={_database.Path};Pooling=False");
        other.Open();
        using var begin = other.CreateCommand();
        begin.CommandText = "CREATE TABLE app_data (x INTEGER); BEGIN IMMEDIATE; INSERT INTO app_data VALUES (1);";
        begin.ExecuteNonQuery();
        return other;
    }
}
