using System.Diagnostics;

namespace Cairn.Conformance.Support;

/// <summary>How the tests start a child program: its assembly, run by the dotnet host that runs the tests.</summary>
public static class ChildProcess
{
    /// <summary>The dotnet host running the tests (<c>DOTNET_HOST_PATH</c> under <c>dotnet test</c>), else the one on the path.</summary>
    public static string DotnetHost
    {
        get
        {
            if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
            {
                return host;
            }

            return Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        }
    }

    /// <summary>
    /// A start of <paramref name="assembly"/> with <paramref name="arguments"/>; the caller sets what it redirects. The
    /// runtime's diagnostics are off in the child: a process killed with SIGKILL, as the crash and takeover tests do on
    /// purpose, cannot remove its diagnostic socket and debugger pipes, and would leave three files in the temporary
    /// directory each time.
    /// </summary>
    public static ProcessStartInfo StartInfo(string assembly, params IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(DotnetHost) { UseShellExecute = false };
        start.Environment["DOTNET_EnableDiagnostics"] = "0";
        start.ArgumentList.Add(assembly);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }
}
