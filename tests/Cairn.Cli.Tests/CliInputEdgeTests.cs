using System.CommandLine;
using Cairn.DependencyInjection;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>
/// The commands on inputs at the edges: a malformed connection string, an application without event types, a path that
/// is a directory, and the commands mounted in an application's own System.CommandLine root (docs/schemas.md).
/// </summary>
public sealed class CliInputEdgeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-edges-").FullName;
    private readonly List<IHost> _hosts = [];

    public void Dispose()
    {
        foreach (var host in _hosts)
        {
            host.Dispose();
        }

        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private string PathOf(string name) => Path.Combine(_directory, name);

    private IHost Build(Action<CairnOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(configure);
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    private IHost WithTypes(Action<CairnOptions> backend) => Build(o =>
    {
        backend(o);
        o.EventTypes.Register<Closed>("cli.closed");
    });

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error).WaitAsync(TimeSpan.FromSeconds(60));
        return (code, output.ToString(), error.ToString());
    }

    private static string Describe((int? Code, string Output, string Error) run) => $"exit code {run.Code}\n--- output:\n{run.Output}\n--- error:\n{run.Error}";

    // A connection string with a value of the wrong form (Pooling=maybe, Default Timeout=abc, Foreign Keys=abc) makes
    // Microsoft.Data.Sqlite throw a FormatException where a wrong keyword or enum value (Mode=Bogus) throws an
    // ArgumentException. The latter is said in one line ("This application's Cairn options are invalid: ..."); the former
    // falls through every filter (StorageActions.Migrator, SchemaActions.GuardAsync) and is printed as
    // "The command failed: System.FormatException ..." with the whole stack trace.
    [Theory]
    [InlineData("Pooling=maybe", "storage status")]
    [InlineData("Pooling=maybe", "storage migrate")]
    [InlineData("Pooling=maybe", "schemas check --registry")]
    [InlineData("Default Timeout=abc", "storage status")]
    public async Task a_malformed_value_in_the_sqlite_connection_string_is_said_in_one_line_without_a_stack_trace(string setting, string command)
    {
        var host = WithTypes(o => o.UseSqlite($"Data Source={PathOf("app.db")};{setting}"));

        var run = await RunAsync(host, command.Split(' '));

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.True(!run.Error.Contains("   at ", StringComparison.Ordinal), $"a stack trace for a malformed connection string; {Describe(run)}");
        Assert.DoesNotContain("System.FormatException", run.Error, StringComparison.Ordinal);
    }

    // `schemas check --snapshot <file> --update` "creates the file if missing" (help text and docs/schemas.md, step 1
    // of the workflow: "Create the snapshot once ... and commit it"). For an application with no event types yet it
    // prints "The snapshot <file> is up to date." and writes nothing, so the pipeline's next `schemas check --snapshot
    // <file>` fails with exit code 2 "does not exist".
    [Fact]
    public async Task update_on_an_application_without_event_types_creates_the_snapshot_it_calls_up_to_date()
    {
        var path = PathOf("schemas.json");
        var host = Build(o => o.UseInMemory());

        var update = await RunAsync(host, "schemas", "check", "--snapshot", path, "--update");

        Assert.Equal(CairnCli.Success, update.Code);
        Assert.True(File.Exists(path), $"--update said it was done but wrote no snapshot; {Describe(update)}");
        var check = await RunAsync(host, "schemas", "check", "--snapshot", path);
        Assert.True(check.Code == CairnCli.Success, Describe(check));
    }

    // A --snapshot that names a directory is reported as "The schema snapshot '<dir>' does not exist", with the advice
    // to create it with --update, which then prints the report and fails with a bare "Is a directory : '<dir>'".
    [Fact]
    public async Task a_snapshot_path_that_is_a_directory_is_not_reported_as_missing()
    {
        var directory = PathOf("schemas.json");
        Directory.CreateDirectory(directory);

        var run = await RunAsync(WithTypes(o => o.UseInMemory()), "schemas", "check", "--snapshot", directory);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.True(!run.Error.Contains("does not exist", StringComparison.Ordinal), Describe(run));
        Assert.Contains("directory", run.Error, StringComparison.OrdinalIgnoreCase);
    }

    private async Task<(int Code, string Output, string Error)> RunMountedAsync(IHost host, CancellationToken cancellationToken, params string[] args)
    {
        // "An application with its own System.CommandLine root mounts CairnCommands.Schemas(host.Services) as a
        // subcommand instead" (docs/schemas.md); CairnCommands.Schemas's exit codes are Success, CheckFailed and Error.
        var root = new RootCommand("an application's own command line")
        {
            CairnCommands.Schemas(host.Services),
            CairnCommands.Storage(host.Services),
        };
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await root.Parse(args).InvokeAsync(new InvocationConfiguration { Output = output, Error = error }, cancellationToken).WaitAsync(TimeSpan.FromSeconds(60));
        return (code, output.ToString(), error.ToString());
    }

    // Mounted as documented, a cancelled command (a deployment step's time-out) exits with 1, "the check failed" /
    // "needs migrating", and says nothing: GuardAsync and StorageActions let the OperationCanceledException through, and
    // only CairnCli.TryRunAsync turns it into 2.
    [Theory]
    [InlineData("schemas check --snapshot")]
    [InlineData("storage status")]
    public async Task a_cancelled_command_mounted_in_an_applications_own_root_exits_with_2_not_the_failed_check_code(string command)
    {
        var database = PathOf("app.db");
        var snapshot = PathOf("schemas.json");
        Assert.Equal(CairnCli.Success, (await RunAsync(WithTypes(o => o.UseSqlite($"Data Source={database}")), "storage", "migrate")).Code);
        Assert.Equal(CairnCli.Success, (await RunAsync(WithTypes(o => o.UseSqlite($"Data Source={database}")), "schemas", "check", "--snapshot", snapshot, "--update")).Code);
        var args = command.Split(' ');
        if (args[^1] == "--snapshot")
        {
            args = [.. args, snapshot];
        }

        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var run = await RunMountedAsync(WithTypes(o => o.UseSqlite($"Data Source={database}")), cancelled.Token, args);

        Assert.True(run.Code == CairnCli.Error, $"a cancelled `{command}` must not read as a verdict (1); {Describe(run)}");
    }

    // Mounted as documented, arguments Cairn's own validator refuses ("Give either --snapshot <file> or --registry.")
    // exit with System.CommandLine's 1, which a pipeline reads as "incompatible": only TryRunAsync maps parse errors to 2.
    [Fact]
    public async Task bad_arguments_to_a_command_mounted_in_an_applications_own_root_exit_with_2()
    {
        var run = await RunMountedAsync(WithTypes(o => o.UseInMemory()), CancellationToken.None, "schemas", "check");

        Assert.Contains("Give either --snapshot <file> or --registry.", run.Error, StringComparison.Ordinal);
        Assert.True(run.Code == CairnCli.Error, $"bad arguments must not read as a failed check (1); {Describe(run)}");
    }
}
