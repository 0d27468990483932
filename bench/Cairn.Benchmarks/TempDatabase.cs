using Microsoft.Data.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>A fresh SQLite file in a new temporary folder, deleted (with its -wal and -shm files) on dispose.</summary>
internal sealed class TempDatabase : IDisposable
{
    private readonly string _directory;

    public TempDatabase(string name)
    {
        _directory = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"cairn-bench-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_directory);
        Path = System.IO.Path.Combine(_directory, name + ".db");
    }

    public string Path { get; }

    public string ConnectionString => $"Data Source={Path}";

    /// <summary>The size of the file and its write-ahead log, in bytes.</summary>
    public long SizeOnDisk =>
        new DirectoryInfo(_directory).EnumerateFiles().Sum(f => f.Length);

    public void Dispose()
    {
        // Pooled connections keep the file open; let them go before deleting.
        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException ex)
        {
            Console.Error.WriteLine($"warning: could not delete {_directory}: {ex.Message}");
        }
    }
}
