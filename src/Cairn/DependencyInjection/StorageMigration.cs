namespace Cairn.DependencyInjection;

/// <summary>
/// A backend whose tables can be created and migrated by an explicit step (<c>storage migrate</c> of the Cairn
/// command line), for deployments where the application itself may not change the database's schema.
/// </summary>
public interface IStorageMigrator
{
    /// <summary>The version of the backend's tables, and the version this Cairn expects; changes nothing.</summary>
    Task<StorageSchemaStatus> GetStatusAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Creates or migrates the tables to the version this Cairn expects, safe to run from several processes at once,
    /// and returns the status after it. Tables written by a newer Cairn are refused, naming both versions.
    /// </summary>
    Task<StorageMigrationResult> MigrateAsync(CancellationToken cancellationToken);
}

/// <summary>Where a backend's tables stand.</summary>
/// <param name="Backend">The backend's name, such as <c>postgres</c>.</param>
/// <param name="Location">Where its tables are, without credentials (a schema, a file).</param>
/// <param name="Version">The version of the tables now; 0 when there are none.</param>
/// <param name="ExpectedVersion">The version this Cairn reads and writes.</param>
public sealed record StorageSchemaStatus(string Backend, string Location, int Version, int ExpectedVersion)
{
    /// <summary>Whether the tables are at the version this Cairn expects.</summary>
    public bool IsCurrent => Version == ExpectedVersion;

    /// <summary>Whether the tables were written by a newer Cairn than this one.</summary>
    public bool IsNewer => Version > ExpectedVersion;
}

/// <summary>What a migration did.</summary>
/// <param name="Before">The tables' version before it.</param>
/// <param name="After">The status after it.</param>
public sealed record StorageMigrationResult(int Before, StorageSchemaStatus After)
{
    /// <summary>Whether it changed anything.</summary>
    public bool Migrated => After.Version != Before;
}
