using Cairn.Cli;
using Quickstart;

namespace Cairn.Samples.Tests;

/// <summary>The `cairn` schema commands against a SQLite database that does not exist, through the quickstart's host.</summary>
public sealed class MissingDatabaseCliTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-missing-db-cli-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static async Task<(int? Code, string Output, string Error)> RunAsync(string databasePath, params string[] args)
    {
        using var host = QuickstartApp.Build(databasePath, TextWriter.Null);
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error);
        return (code, output.ToString(), error.ToString());
    }

    // `schemas check --registry` in a pipeline, against a mistyped database path: exit code 2 naming the database, and
    // no file created, rather than a new, empty database whose empty registry passes every type (a green build that
    // checked nothing).
    [Fact]
    public async Task check_registry_against_a_database_that_does_not_exist_fails_and_creates_nothing()
    {
        var missing = Path.Combine(_directory, "staging-typo.db");

        var run = await RunAsync(missing, "schemas", "check", "--registry");

        Assert.False(File.Exists(missing), $"the check created the database {missing}; exit code {run.Code}\n{run.Output}\n{run.Error}");
        Assert.True(run.Code == CairnCli.Error, $"exit code {run.Code}, expected {CairnCli.Error}\n{run.Output}\n{run.Error}");
    }

    // The same for `schemas export --out`: an error (2), rather than an empty snapshot overwriting the committed one.
    [Fact]
    public async Task export_of_a_database_that_does_not_exist_fails_and_writes_nothing()
    {
        var missing = Path.Combine(_directory, "prod-typo.db");
        var snapshot = Path.Combine(_directory, "schemas.json");

        var run = await RunAsync(missing, "schemas", "export", "--out", snapshot);

        Assert.False(File.Exists(missing), $"the export created the database {missing}; exit code {run.Code}\n{run.Output}\n{run.Error}");
        Assert.True(run.Code == CairnCli.Error, $"exit code {run.Code}, expected {CairnCli.Error}\n{run.Output}\n{run.Error}");
        Assert.False(File.Exists(snapshot));
    }
}
