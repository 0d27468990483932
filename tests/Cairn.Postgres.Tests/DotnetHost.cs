namespace Cairn.Postgres.Tests;

/// <summary>The dotnet host that runs the child programs' assemblies: the one running the tests.</summary>
internal static class DotnetHost
{
    public static string Path
    {
        get
        {
            if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
            {
                return host;
            }

            return Environment.ProcessPath is { } path && System.IO.Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
        }
    }
}
