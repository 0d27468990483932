using System.Diagnostics;
using System.Globalization;
using System.Text;
using Cairn.Sqlite.CrashChild;
using Xunit.Sdk;

namespace Cairn.Sqlite.Tests;

/// <summary>Starts the crash child program on a file and reads its report lines, for the crash tests.</summary>
internal static class CrashChildProcess
{
    /// <summary>Starts the child in a mode; its standard error is gathered into <paramref name="errors"/>.</summary>
    public static Process Start(string path, string mode, string durability, int seed, StringBuilder errors)
    {
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = new UTF8Encoding(false),
        };
        foreach (var argument in new[] { typeof(CrashProtocol).Assembly.Location, path, mode, durability, seed.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(argument);
        }

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

    /// <summary>The child's next line, null at its end; failing the test when it prints nothing for <paramref name="guard"/>.</summary>
    public static async Task<string?> ReadLineAsync(Process child, TimeSpan guard, string context)
    {
        try
        {
            return await child.StandardOutput.ReadLineAsync().WaitAsync(guard);
        }
        catch (TimeoutException)
        {
            throw new XunitException($"{context}: the crash child printed nothing for {guard}.");
        }
    }

    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
        {
            return host;
        }

        return Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
    }
}
