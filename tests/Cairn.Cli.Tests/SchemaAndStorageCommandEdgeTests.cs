using System.CommandLine;
using Cairn.DependencyInjection;
using Cairn.Schemas;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>
/// The commands held to docs/schemas.md and docs/postgres.md at their edges: a snapshot kept level with the registry's
/// compatibility modes, a missing snapshot named with the way to create it, and a mounted storage command that never
/// turns an application's own fault into the "needs migrating" code.
/// </summary>
public sealed class SchemaAndStorageCommandEdgeTests : IDisposable
{
    private const string Type = "cli.opened";

    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-gaps-").FullName;
    private readonly InMemorySchemaStore _registry = new();
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

    /// <summary>A host as an application's program builds it, not started.</summary>
    private IHost Build(Action<CairnOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.EventTypes.Register<Closed>("cli.closed");
            configure(o);
        });
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    /// <summary>The in-memory backend with a registry shared by every host of the test, as a database would be.</summary>
    private IHost InMemory(Action<CairnOptions> configure) => Build(o =>
    {
        o.UseInMemory();
        o.UseBackendPart<ISchemaStore>(_ => _registry);
        configure(o);
    });

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error).WaitAsync(TimeSpan.FromSeconds(60));
        return (code, output.ToString(), error.ToString());
    }

    private static string Describe((int? Code, string Output, string Error) run) => $"exit code {run.Code}\n--- output:\n{run.Output}\n--- error:\n{run.Error}";

    // "`schemas export` and `--update` write the same file for the same versions" (docs/schemas.md): a host's start
    // records a type's changed compatibility mode even when no version is new, and so does `--update`.
    [Fact]
    public async Task update_records_a_changed_compatibility_mode_as_an_export_of_the_started_registry_does()
    {
        var snapshot = PathOf("schemas.json");
        var backward = InMemory(o => o.EventTypes.Register<OpenedV1>(Type));
        await backward.StartAsync();
        await backward.StopAsync();
        Assert.Equal(CairnCli.Success, (await RunAsync(InMemory(o => o.EventTypes.Register<OpenedV1>(Type)), "schemas", "check", "--snapshot", snapshot, "--update")).Code);

        void Full(CairnOptions o)
        {
            o.EventTypes.Register<OpenedV1>(Type);
            o.Schemas.Compatibility(Type, CompatibilityMode.Full);
        }

        var full = InMemory(Full);
        await full.StartAsync();
        await full.StopAsync();
        var exported = PathOf("exported.json");
        Assert.Equal(CairnCli.Success, (await RunAsync(InMemory(Full), "schemas", "export", "--out", exported)).Code);
        Assert.Equal(CompatibilityMode.Full, SchemaSnapshot.Parse(await File.ReadAllTextAsync(exported)).CompatibilityOf(Type));

        var update = await RunAsync(InMemory(Full), "schemas", "check", "--snapshot", snapshot, "--update");

        Assert.Equal(CairnCli.Success, update.Code);
        Assert.True(
            SchemaSnapshot.Parse(await File.ReadAllTextAsync(snapshot)).CompatibilityOf(Type) == CompatibilityMode.Full,
            $"--update left the snapshot's mode behind the application's and the registry's (Full); {Describe(update)}");
        Assert.Equal(await File.ReadAllTextAsync(exported), await File.ReadAllTextAsync(snapshot));
    }

    // "Exit code 2 means the command could not run: ... a missing snapshot (the message names the path and how to
    // create one)" (docs/schemas.md), for `schemas asyncapi --snapshot` as for `schemas check --snapshot`.
    [Fact]
    public async Task asyncapi_with_a_missing_snapshot_says_how_to_create_it()
    {
        var path = PathOf("missing.json");

        var run = await RunAsync(InMemory(o => o.EventTypes.Register<OpenedV1>(Type)), "schemas", "asyncapi", "--snapshot", path);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains($"The schema snapshot '{path}' does not exist", run.Error, StringComparison.Ordinal);
        Assert.True(run.Error.Contains("--update", StringComparison.Ordinal) || run.Error.Contains("schemas export", StringComparison.Ordinal), Describe(run));
    }

    // Mounted in an application's own root, "the commands still answer a cancellation, a backend that cannot be read and
    // their own misuse ... with 2" (docs/schemas.md); `storage status` exits 1 only when the tables "need migrating or
    // were written by a newer Cairn" (docs/postgres.md). An options callback that throws what the application's own code
    // throws (a FormatException, as `int.Parse(configuration[...])` does) is answered with 2, as the schemas commands do.
    [Theory]
    [InlineData("storage status")]
    [InlineData("storage migrate")]
    public async Task a_mounted_storage_command_of_an_application_whose_options_throw_exits_with_2_not_needs_migrating(string command)
    {
        var host = Build(o =>
        {
            o.UseSqlite($"Data Source={PathOf("app.db")}");
            _ = int.Parse("thirty", System.Globalization.CultureInfo.InvariantCulture);
        });
        var root = new RootCommand("an application's own command line")
        {
            CairnCommands.Schemas(host.Services),
            CairnCommands.Storage(host.Services),
        };
        var output = new StringWriter();
        var error = new StringWriter();

        var code = await root.Parse(command.Split(' ')).InvokeAsync(new InvocationConfiguration { Output = output, Error = error }).WaitAsync(TimeSpan.FromSeconds(60));

        var schemas = await root.Parse(["schemas", "check", "--registry"]).InvokeAsync(new InvocationConfiguration { Output = new StringWriter(), Error = new StringWriter() }).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(CairnCli.Error, schemas);
        Assert.True(code == CairnCli.Error, $"`{command}` mounted: exit code {code}, read as \"needs migrating\"\n--- output:\n{output}\n--- error:\n{error}");
    }
}
