using System.Diagnostics;
using System.Globalization;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.Sqlite.CrashChild;
using Xunit.Sdk;

namespace Cairn.Sqlite.Tests;

/// <summary>Starts the crash child program on a file and reads its report lines, for the crash tests.</summary>
internal static class CrashChildProcess
{
    /// <summary>Starts the child in a mode; its standard error is gathered into <paramref name="errors"/>.</summary>
    public static Process Start(string path, string mode, string durability, int seed, StringBuilder errors)
    {
        var start = ChildProcess.StartInfo(typeof(CrashProtocol).Assembly.Location, path, mode, durability, seed.ToString(CultureInfo.InvariantCulture));
        start.RedirectStandardInput = true;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.StandardOutputEncoding = new UTF8Encoding(false);

        var child = Process.Start(start) ?? throw new XunitException("The crash child did not start.");
        child.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
            {
                errors.AppendLine(e.Data);
            }
        };
        child.BeginErrorReadLine();
        return child;
    }

    /// <summary>The exit code of a process ended by SIGKILL.</summary>
    public const int SigKillExitCode = 128 + 9;

    /// <summary>
    /// Starts the child on a file and reads its lines until <paramref name="killNow"/> says so, then kills it with
    /// SIGKILL and reads what it had already written to the pipe. Returns every line (a last one cut short included:
    /// the protocol's parsers ignore it) and how many came before the kill.
    /// </summary>
    public static async Task<(List<string> Lines, int BeforeKill)> RunUntilKilledAsync(string path, string mode, string durability, int seed, Func<string, bool> killNow, TimeSpan guard, string context)
    {
        var errors = new StringBuilder();
        using var child = Start(path, mode, durability, seed, errors);
        var lines = new List<string>();
        try
        {
            while (true)
            {
                var line = await ReadLineAsync(child, guard, context, lines, errors);
                if (line is null)
                {
                    if (child.WaitForExit(guard))
                    {
                        child.WaitForExit(); // and for the last of stderr
                    }

                    lock (errors)
                    {
                        throw new XunitException($"{context}: the crash child exited by itself with code {child.ExitCode}:\n{errors}");
                    }
                }

                lines.Add(line);
                if (killNow(line))
                {
                    break;
                }
            }

            // Process.Kill sends SIGKILL on Linux, and `dotnet app.dll` runs the app in this very process.
            var beforeKill = lines.Count;
            child.Kill();
            if (!child.WaitForExit(guard))
            {
                throw new XunitException($"{context}: the crash child did not die within {guard} of SIGKILL");
            }

            if (child.ExitCode != SigKillExitCode)
            {
                throw new XunitException($"{context}: the crash child ended with code {child.ExitCode}, not by SIGKILL.");
            }

            // Lines the child wrote before it died report acknowledged work too.
            while (await ReadLineAsync(child, guard, context, lines, errors) is { } line)
            {
                lines.Add(line);
            }

            return (lines, beforeKill);
        }
        finally
        {
            if (!child.HasExited)
            {
                child.Kill(entireProcessTree: true);
                child.WaitForExit();
            }
        }
    }

    /// <summary>
    /// The child's next line, null at its end; failing the test when it prints nothing for <paramref name="guard"/>, with
    /// how far the child had got (<paramref name="lines"/>) and what it wrote to standard error (<paramref name="errors"/>).
    /// </summary>
    public static async Task<string?> ReadLineAsync(Process child, TimeSpan guard, string context, List<string>? lines = null, StringBuilder? errors = null)
    {
        try
        {
            return await child.StandardOutput.ReadLineAsync().WaitAsync(guard);
        }
        catch (TimeoutException)
        {
            var progress = lines is null ? "" : $" after {lines.Count} lines (the last: {(lines.Count == 0 ? "none" : lines[^1])})";
            var stderr = "";
            if (errors is not null)
            {
                lock (errors)
                {
                    stderr = errors.Length == 0 ? "; nothing on standard error" : $"; standard error:\n{errors}";
                }
            }

            throw new XunitException($"{context}: the crash child printed nothing for {guard}{progress}{stderr}");
        }
    }
}
