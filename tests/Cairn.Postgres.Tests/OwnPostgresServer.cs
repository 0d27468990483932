using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Cairn.Postgres.Tests;

/// <summary>
/// A PostgreSQL of a test's own, started with <c>tests/postgres.sh</c>, for tests that restart or crash the server
/// and must not disturb the shared one. Its commits are synchronous, so every acknowledged commit survives a crash.
/// </summary>
internal sealed partial class OwnPostgresServer : IAsyncDisposable
{
    private readonly string _directory;

    private OwnPostgresServer(string connectionString, string directory)
    {
        ConnectionString = connectionString;
        _directory = directory;
    }

    public string ConnectionString { get; }

    public static Task<OwnPostgresServer> StartAsync() => FromExportsAsync(["start"]);

    /// <summary>Starts a streaming standby of this server on a port of its own; <see cref="PromoteAsync"/> makes it the primary.</summary>
    public Task<OwnPostgresServer> StartStandbyAsync() => FromExportsAsync(["standby", _directory]);

    /// <summary>Promotes this standby to primary, and returns once it accepts writes.</summary>
    public Task PromoteAsync() => ScriptAsync(["promote", _directory], sync: true);

    private static async Task<OwnPostgresServer> FromExportsAsync(string[] arguments)
    {
        var output = await ScriptAsync(arguments, sync: true);
        var connectionString = Export().Matches(output).Single(m => m.Groups[1].Value == "CAIRN_POSTGRES").Groups[2].Value;
        var directory = Export().Matches(output).Single(m => m.Groups[1].Value == "CAIRN_POSTGRES_DIR").Groups[2].Value;
        return new OwnPostgresServer(connectionString, directory);
    }

    /// <summary>Restarts the server on the same port: <c>fast</c> shuts it down cleanly, <c>immediate</c> kills it like a crash.</summary>
    public Task RestartAsync(string mode) => ScriptAsync(["restart", _directory, mode], sync: true);

    /// <summary>Kills the server (as a crash would) and leaves it down, keeping its data and port.</summary>
    public Task HaltAsync() => ScriptAsync(["halt", _directory], sync: true);

    /// <summary>Starts a halted server again on the same port.</summary>
    public Task ResumeAsync() => ScriptAsync(["resume", _directory], sync: true);

    public async ValueTask DisposeAsync() => await ScriptAsync(["stop", _directory], sync: false);

    private static async Task<string> ScriptAsync(string[] arguments, bool sync)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Script);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (sync)
        {
            start.Environment["CAIRN_POSTGRES_SYNC_COMMIT"] = "on";
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"tests/postgres.sh {string.Join(' ', arguments)} failed ({process.ExitCode}): {await error}");
        }

        return await output;
    }

    /// <summary>tests/postgres.sh, found by walking up from the test assembly to the repository.</summary>
    private static string Script
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var script = Path.Combine(dir.FullName, "tests", "postgres.sh");
                if (File.Exists(script))
                {
                    return script;
                }
            }

            throw new FileNotFoundException("tests/postgres.sh was not found above " + AppContext.BaseDirectory);
        }
    }

    [GeneratedRegex("export (CAIRN_POSTGRES(?:_DIR)?)='([^']*)'")]
    private static partial Regex Export();
}
