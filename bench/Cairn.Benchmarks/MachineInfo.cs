using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace Cairn.Benchmarks;

/// <summary>What the figures were measured on, printed at the top of every run.</summary>
internal static class MachineInfo
{
    public static IEnumerable<string> Describe()
    {
        yield return $"date: {DateTimeOffset.Now.ToString("yyyy-MM-dd HH:mm:ss zzz", CultureInfo.InvariantCulture)}";
        yield return $"machine: {Environment.ProcessorCount} cores, {CpuModel()}, {MemoryTotal()} memory, {RuntimeInformation.OSDescription}";
        yield return $"runtime: {RuntimeInformation.FrameworkDescription}, {(GCSettings.IsServerGC ? "server" : "workstation")} GC; SQLite {SqliteVersion()} (Microsoft.Data.Sqlite {typeof(SqliteConnection).Assembly.GetName().Version})";
    }

    /// <summary>The 1, 5 and 15 minute load averages: how busy the (shared) machine was.</summary>
    public static string LoadAverage()
    {
        var load = File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
        return $"{load}; CPU pressure {Pressure("cpu")}, I/O pressure {Pressure("io")}";
    }

    /// <summary>The share of the last minute in which some task waited for the resource (Linux PSI, <c>some avg60</c>).</summary>
    private static string Pressure(string resource)
    {
        var path = $"/proc/pressure/{resource}";
        if (!File.Exists(path))
        {
            return "unknown";
        }

        var some = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("some", StringComparison.Ordinal)) ?? "";
        var avg60 = some.Split(' ').FirstOrDefault(f => f.StartsWith("avg60=", StringComparison.Ordinal));
        return avg60 is null ? "unknown" : avg60["avg60=".Length..] + "%";
    }

    private static string CpuModel()
    {
        const string Path = "/proc/cpuinfo";
        if (File.Exists(Path))
        {
            foreach (var line in File.ReadLines(Path))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    return line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                }
            }
        }

        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static string MemoryTotal()
    {
        var bytes = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024):0.0} GiB");
    }

    private static string SqliteVersion()
    {
        using var connection = new SqliteConnection("Data Source=:memory:");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT sqlite_version()";
        return (string)command.ExecuteScalar()!;
    }
}
