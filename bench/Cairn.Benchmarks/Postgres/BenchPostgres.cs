using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Npgsql;

namespace Cairn.Benchmarks.Postgres;

/// <summary>
/// The PostgreSQL server every side of the PostgreSQL workloads runs on: the one <c>CAIRN_POSTGRES</c> names when it is
/// set, otherwise a throwaway one started with <c>tests/postgres.sh</c> on first use and stopped on dispose, on exit and
/// on SIGINT/SIGTERM. A server the bench starts keeps PostgreSQL's durable defaults (<c>fsync</c>,
/// <c>synchronous_commit</c> and <c>full_page_writes</c> on, through <c>CAIRN_POSTGRES_DURABLE=1</c>; the script turns
/// them off for tests) unless <c>--pg-no-fsync</c> asks for the script's settings; a server named by
/// <c>CAIRN_POSTGRES</c> is used as it is, and the run prints its settings.
/// </summary>
internal sealed class BenchPostgres : IAsyncDisposable
{
    private readonly bool _durable;
    private readonly SemaphoreSlim _starting = new(1, 1);
    private string? _connectionString;
    private string? _directory;
    private string? _script;
    private PosixSignalRegistration? _sigint;
    private PosixSignalRegistration? _sigterm;
    private int _stopped;

    public BenchPostgres(bool durable) => _durable = durable;

    /// <summary>The connection string of the server, starting it first if this is the first use.</summary>
    public async Task<string> ConnectionStringAsync()
    {
        await _starting.WaitAsync();
        try
        {
            if (_connectionString is null)
            {
                _connectionString = Environment.GetEnvironmentVariable("CAIRN_POSTGRES") is { Length: > 0 } given ? given : Start();
                foreach (var line in await DescribeAsync(_connectionString))
                {
                    Log.Line("  " + line);
                }
            }

            return _connectionString;
        }
        finally
        {
            _starting.Release();
        }
    }

    /// <summary>A new schema name, unique in the database, for one measurement's tables.</summary>
    public static string NewSchema(string prefix) =>
        string.Create(CultureInfo.InvariantCulture, $"bench_{prefix}_{Guid.NewGuid().ToString("N")[..10]}");

    /// <summary>Drops a measurement's schema and everything in it.</summary>
    public async Task DropSchemaAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(await ConnectionStringAsync());
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP SCHEMA IF EXISTS {schema} CASCADE", connection);
        await drop.ExecuteNonQueryAsync();
    }

    private string Start()
    {
        _script = FindScript();
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, UseShellExecute = false };
        start.Environment["CAIRN_POSTGRES_DURABLE"] = _durable ? "1" : "0";
        start.ArgumentList.Add(_script);
        start.ArgumentList.Add("start");
        Log.Line($"  starting PostgreSQL with {_script} start");
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not run tests/postgres.sh.");
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        string? Export(string name) => output.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.StartsWith($"export {name}='", StringComparison.Ordinal) && l.EndsWith('\''))
            .Select(l => l[$"export {name}='".Length..^1])
            .FirstOrDefault();
        _directory = Export("CAIRN_POSTGRES_DIR");
        if (_directory is not null)
        {
            // Stop it whatever ends the run: an exception (DisposeAsync), a normal exit, Ctrl+C or a kill.
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Stop();
            _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => Stop());
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => Stop());
        }

        if (process.ExitCode != 0 || Export("CAIRN_POSTGRES") is not { } connectionString)
        {
            Stop();
            throw new InvalidOperationException($"tests/postgres.sh start failed (exit code {process.ExitCode}); set CAIRN_POSTGRES to use a running server instead.");
        }

        return connectionString;
    }

    private static string FindScript()
    {
        foreach (var origin in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(origin); dir is not null; dir = dir.Parent)
            {
                var script = Path.Combine(dir.FullName, "tests", "postgres.sh");
                if (File.Exists(script))
                {
                    return script;
                }
            }
        }

        throw new InvalidOperationException("tests/postgres.sh was not found above the current directory or the program; run from the repository, or set CAIRN_POSTGRES.");
    }

    private async Task<List<string>> DescribeAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes'), current_setting('wal_sync_method'), current_setting('shared_buffers'), current_setting('max_connections')",
            connection);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return
        [
            $"PostgreSQL {reader.GetString(0)} at {builder.Host}:{builder.Port} ({(_directory is null ? "CAIRN_POSTGRES, used as it is" : "started by the bench with tests/postgres.sh")}); fsync {reader.GetString(1)}, synchronous_commit {reader.GetString(2)}, full_page_writes {reader.GetString(3)}, wal_sync_method {reader.GetString(4)}, shared_buffers {reader.GetString(5)}, max_connections {reader.GetString(6)}; Npgsql {typeof(NpgsqlConnection).Assembly.GetName().Version}, Marten {typeof(Marten.DocumentStore).Assembly.GetName().Version}",
        ];
    }

    /// <summary>Stops the server this bench started (once; safe from any thread).</summary>
    private void Stop()
    {
        if (_directory is null || _script is null || Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        NpgsqlConnection.ClearAllPools();
        var stop = new ProcessStartInfo("bash") { UseShellExecute = false };
        stop.ArgumentList.Add(_script);
        stop.ArgumentList.Add("stop");
        stop.ArgumentList.Add(_directory);
        using var process = Process.Start(stop);
        process?.WaitForExit();
        Console.Error.WriteLine($"PostgreSQL stopped ({_directory} removed).");
    }

    public ValueTask DisposeAsync()
    {
        Stop();
        _sigint?.Dispose();
        _sigterm?.Dispose();
        _starting.Dispose();
        return ValueTask.CompletedTask;
    }
}
