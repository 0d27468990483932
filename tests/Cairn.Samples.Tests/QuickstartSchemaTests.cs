using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Quickstart;
using Xunit.Sdk;

namespace Cairn.Samples.Tests;

/// <summary>
/// The quickstart's program with Cairn's commands mounted, run as a pipeline runs it: its event types against the
/// snapshot committed beside it.
/// </summary>
public sealed class QuickstartSchemaTests : IDisposable
{
    private const string Snapshot = "samples/Quickstart/schemas.json";

    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-quickstart-schemas-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task the_quickstarts_event_types_pass_the_check_against_its_committed_snapshot()
    {
        var run = await QuickstartAsync("schemas", "check", "--snapshot", Snapshot);

        Assert.True(run.Code == 0, $"exit code {run.Code}\n{run.Output}\n{run.Error}");
        foreach (var type in new[] { "account.deposited", "account.opened", "account.withdrawn", "customer.notify", "review.opened" })
        {
            Assert.Contains($"unchanged {type} v1", run.Output, StringComparison.Ordinal);
        }

        Assert.Contains("The event types are compatible with the registry.", run.Output, StringComparison.Ordinal);
        Assert.Contains($"The snapshot {Snapshot} is up to date.", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_snapshot_whose_schema_of_a_type_no_longer_fits_its_class_fails_the_check_naming_the_type()
    {
        // As if the class had changed since the snapshot was saved: the amount of a deposit was a string.
        var snapshot = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(RepositoryRoot, Snapshot)))!;
        var deposited = snapshot["eventTypes"]!["account.deposited"]!["versions"]![0]!["schema"]!;
        deposited["properties"]!["amount"] = new JsonObject { ["type"] = "string" };
        var altered = Path.Combine(_directory, "schemas.json");
        var text = snapshot.ToJsonString();
        await File.WriteAllTextAsync(altered, text);

        var run = await QuickstartAsync("schemas", "check", "--snapshot", altered);

        Assert.True(run.Code == 1, $"exit code {run.Code}\n{run.Output}\n{run.Error}");
        Assert.Contains("BREAKS    account.deposited v1", run.Output, StringComparison.Ordinal);
        Assert.Contains("'account.deposited' version 1 is registered with another document", run.Output, StringComparison.Ordinal);
        Assert.Contains("/properties/amount", run.Output, StringComparison.Ordinal);
        Assert.Contains("unchanged account.opened v1", run.Output, StringComparison.Ordinal);
        Assert.Contains("The schema check failed with 1 problem(s)", run.Error, StringComparison.Ordinal);
        Assert.Equal(text, await File.ReadAllTextAsync(altered));
    }

    private sealed record Run(int Code, string Output, string Error);

    /// <summary>Runs the quickstart's program, built beside the tests, from the repository's root.</summary>
    private static async Task<Run> QuickstartAsync(params string[] args)
    {
        var start = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = RepositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
        };
        start.ArgumentList.Add(typeof(QuickstartApp).Assembly.Location);
        foreach (var argument in args)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new XunitException("The quickstart did not start.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new XunitException("The quickstart's schema check did not end within 60 s.");
        }

        return new Run(process.ExitCode, await output, await error);
    }

    private static string DotnetHost() =>
        Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";

    internal static string RepositoryRoot { get; } = FindRepositoryRoot();

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Cairn.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new XunitException($"No Cairn.slnx above {AppContext.BaseDirectory}.");
    }
}
