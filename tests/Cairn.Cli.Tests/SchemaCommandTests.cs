using System.Text.Json.Nodes;
using Cairn.DependencyInjection;
using Cairn.Schemas;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

// "cli.opened" as three builds of a service compile it.
public sealed record OpenedV1(string Id, decimal Amount);

public sealed record OpenedV2(string Id, decimal Amount, string? Note = null);

public sealed record OpenedV2WithCustomer(string Id, decimal Amount, string Customer);

public sealed record Closed(string Id);

public sealed class SchemaCommandTests : IDisposable
{
    private const string Type = "cli.opened";

    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-").FullName;
    private readonly InMemorySchemaStore _registry = new();
    private readonly List<IHost> _hosts = [];

    public void Dispose()
    {
        foreach (var host in _hosts)
        {
            host.Dispose();
        }

        Directory.Delete(_directory, recursive: true);
    }

    private string PathOf(string name) => Path.Combine(_directory, name);

    /// <summary>A host as an application's program builds it, not started, on the in-memory backend with a shared registry.</summary>
    private IHost Build(Action<CairnOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services
            .AddCairn(o =>
            {
                o.UseInMemory();
                o.UseBackendPart<ISchemaStore>(_ => _registry);
                o.EventTypes.Register<Closed>("cli.closed");
                configure(o);
            })
            .AddQueue("openings")
            .AddConsumer("openings", (_, _) => ValueTask.CompletedTask);
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    private IHost Build<TOpened>(int version = 1) => Build(o => o.EventTypes.Register<TOpened>(Type, version));

    private static async Task<Run> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error);
        return new Run(code, output.ToString(), error.ToString());
    }

    /// <summary>The snapshot a first build saves with <c>--update</c>.</summary>
    private async Task<string> SavedAsync<TOpened>(string name = "schemas.json")
    {
        var path = PathOf(name);
        var run = await RunAsync(Build<TOpened>(), "schemas", "check", "--snapshot", path, "--update");
        Assert.Equal(CairnCli.Success, run.Code);
        return path;
    }

    private sealed record Run(int? Code, string Output, string Error);

    // --- check --snapshot ---

    [Fact]
    public async Task storage_commands_on_a_backend_without_explicit_migration_are_an_error_naming_the_backend()
    {
        foreach (var command in new[] { "status", "migrate" })
        {
            var run = await RunAsync(Build(_ => { }), "storage", command);
            Assert.Equal(CairnCli.Error, run.Code);
            Assert.Contains("no explicit migration", run.Error, StringComparison.Ordinal);
            Assert.Contains("in-memory", run.Error, StringComparison.Ordinal);
        }
    }

    // A snapshot whose schema is no JSON Schema gave "Schema check of 0 event type(s)" for an application of two.
    [Fact]
    public async Task a_check_against_a_snapshot_holding_an_invalid_schema_counts_every_type_it_checked()
    {
        var path = await SavedAsync<OpenedV1>();
        var snapshot = JsonNode.Parse(await File.ReadAllTextAsync(path))!;
        foreach (var version in snapshot["eventTypes"]!.AsObject().Select(p => p.Value!).SelectMany(t => t["versions"]!.AsArray()))
        {
            version!["schema"]!["type"] = "bogus";
        }

        await File.WriteAllTextAsync(path, snapshot.ToJsonString());

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path);

        Assert.Equal(CairnCli.CheckFailed, run.Code);
        Assert.Contains($"Schema check of 2 event type(s) against the snapshot {path}:", run.Output, StringComparison.Ordinal);
    }

    // The document was written with the invalid schema as a payload, exit 0.
    [Fact]
    public async Task an_asyncapi_document_from_a_snapshot_holding_an_invalid_schema_is_refused_naming_it()
    {
        var path = await SavedAsync<OpenedV1>();
        var snapshot = JsonNode.Parse(await File.ReadAllTextAsync(path))!;
        snapshot["eventTypes"]![Type]!["versions"]![0]!["schema"]!["type"] = "bogus";
        await File.WriteAllTextAsync(path, snapshot.ToJsonString());
        var output = PathOf("asyncapi.json");

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "asyncapi", "--snapshot", path, "--out", output);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains(path, run.Error, StringComparison.Ordinal);
        Assert.Contains("cli.opened", run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public async Task a_check_against_the_applications_own_snapshot_passes_with_the_report()
    {
        var path = await SavedAsync<OpenedV1>();

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path);

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Contains($"Schema check of 2 event type(s) against the snapshot {path}:", run.Output, StringComparison.Ordinal);
        Assert.Contains("unchanged cli.closed v1", run.Output, StringComparison.Ordinal);
        Assert.Contains("unchanged cli.opened v1", run.Output, StringComparison.Ordinal);
        Assert.Contains("The event types are compatible with the registry.", run.Output, StringComparison.Ordinal);
        Assert.Contains("is up to date", run.Output, StringComparison.Ordinal);
        Assert.Equal("", run.Error);
    }

    [Fact]
    public async Task a_breaking_change_fails_with_exit_code_1_names_the_change_and_leaves_the_file_untouched()
    {
        var path = await SavedAsync<OpenedV1>();
        var before = await File.ReadAllBytesAsync(path);

        var run = await RunAsync(Build<OpenedV2WithCustomer>(2), "schemas", "check", "--snapshot", path, "--update");

        Assert.Equal(CairnCli.CheckFailed, run.Code);
        Assert.Contains("BREAKS    cli.opened v2", run.Output, StringComparison.Ordinal);
        Assert.Contains("'cli.opened' version 2 breaks the Backward compatibility of the type", run.Output, StringComparison.Ordinal);
        Assert.Contains("RequiredPropertyAddedToUnopenContentModel at /properties/customer", run.Output, StringComparison.Ordinal);
        Assert.Contains($"The schema check failed with 1 problem(s); {path} is unchanged.", run.Error, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllBytesAsync(path));
        Assert.Single(Directory.GetFiles(_directory));
    }

    [Fact]
    public async Task a_new_compatible_version_passes_and_update_writes_it_to_the_snapshot()
    {
        var path = await SavedAsync<OpenedV1>();
        var before = await File.ReadAllTextAsync(path);

        var check = await RunAsync(Build<OpenedV2>(2), "schemas", "check", "--snapshot", path);
        Assert.Equal(CairnCli.Success, check.Code);
        Assert.Contains("new       cli.opened v2", check.Output, StringComparison.Ordinal);
        Assert.Contains("1 new version(s) not in the snapshot yet (cli.opened v2); run with --update to add them.", check.Output, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllTextAsync(path));

        var update = await RunAsync(Build<OpenedV2>(2), "schemas", "check", "--snapshot", path, "--update");

        Assert.Equal(CairnCli.Success, update.Code);
        Assert.Contains($"Added 1 new version(s) to {path}: cli.opened v2.", update.Output, StringComparison.Ordinal);
        var snapshot = SchemaSnapshot.Parse(await File.ReadAllTextAsync(path));
        Assert.Equal([1, 2], snapshot.VersionsOf(Type).Select(v => v.Version));
        Assert.Contains("note", snapshot.VersionsOf(Type)[1].Schema["properties"]!.AsObject().Select(p => p.Key));
        Assert.Equal(snapshot.ToJson(), await File.ReadAllTextAsync(path));
        Assert.Single(Directory.GetFiles(_directory));

        var again = await RunAsync(Build<OpenedV2>(2), "schemas", "check", "--snapshot", path);
        Assert.Equal(CairnCli.Success, again.Code);
        Assert.Contains("unchanged cli.opened v2", again.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task update_creates_a_missing_snapshot_with_every_type()
    {
        var path = PathOf("new/schemas.json");

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path, "--update");

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Contains($"Created {path} with 2 version(s): cli.closed v1, cli.opened v1.", run.Output, StringComparison.Ordinal);
        Assert.Equal(["cli.closed", "cli.opened"], SchemaSnapshot.Parse(await File.ReadAllTextAsync(path)).Types.Select(t => t.EventType));
    }

    [Fact]
    public async Task a_missing_snapshot_is_an_error_with_exit_code_2_naming_the_path_and_how_to_create_it()
    {
        var path = PathOf("missing.json");

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains($"The schema snapshot '{path}' does not exist", run.Error, StringComparison.Ordinal);
        Assert.Contains($"`schemas check --snapshot {path} --update`", run.Error, StringComparison.Ordinal);
        Assert.Contains($"`schemas export --out {path}`", run.Error, StringComparison.Ordinal);
        Assert.Equal("", run.Output);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task an_unreadable_snapshot_is_an_error_with_exit_code_2_saying_why_and_is_not_overwritten()
    {
        var path = PathOf("schemas.json");
        await File.WriteAllTextAsync(path, """{"cairnSchemaSnapshot": 2, "eventTypes": {}}""");

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path, "--update");

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains($"{path}: The schema snapshot cannot be read: 'cairnSchemaSnapshot' must be 1.", run.Error, StringComparison.Ordinal);
        Assert.Equal("""{"cairnSchemaSnapshot": 2, "eventTypes": {}}""", await File.ReadAllTextAsync(path));

        await File.WriteAllTextAsync(path, "not json");
        var notJson = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path);
        Assert.Equal(CairnCli.Error, notJson.Code);
        Assert.Contains("The schema snapshot cannot be read: the document is not valid JSON", notJson.Error, StringComparison.Ordinal);
    }

    // --- check --registry ---

    [Fact]
    public async Task a_check_against_the_registry_reads_what_a_started_host_registered_and_writes_nothing()
    {
        var first = Build<OpenedV1>();
        await first.StartAsync();
        await first.StopAsync();

        var same = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--registry");
        Assert.Equal(CairnCli.Success, same.Code);
        Assert.Contains("Schema check of 2 event type(s) against the registry of the in-memory backend:", same.Output, StringComparison.Ordinal);
        Assert.Contains("unchanged cli.opened v1", same.Output, StringComparison.Ordinal);

        var compatible = await RunAsync(Build<OpenedV2>(2), "schemas", "check", "--registry");
        Assert.Equal(CairnCli.Success, compatible.Code);
        Assert.Contains("1 new version(s) will be registered when the host starts: cli.opened v2.", compatible.Output, StringComparison.Ordinal);

        var breaking = await RunAsync(Build<OpenedV2WithCustomer>(2), "schemas", "check", "--registry");
        Assert.Equal(CairnCli.CheckFailed, breaking.Code);
        Assert.Contains("'cli.opened' version 2 breaks the Backward compatibility of the type", breaking.Output, StringComparison.Ordinal);
        Assert.Contains("/properties/customer", breaking.Output, StringComparison.Ordinal);
        Assert.Contains("the host would not start", breaking.Error, StringComparison.Ordinal);

        Assert.Equal([1], (await _registry.GetVersionsAsync(Type)).Select(v => v.Version));
        Assert.Empty(Directory.GetFiles(_directory));
    }

    [Fact]
    public async Task the_registry_check_names_old_versions_that_could_not_be_read_any_more()
    {
        var first = Build<OpenedV1>();
        await first.StartAsync();
        await first.StopAsync();

        var run = await RunAsync(Build(o =>
        {
            o.EventTypes.Register<OpenedV2WithCustomer>(Type, 2);
            o.Schemas.Compatibility(Type, CompatibilityMode.None);
        }), "schemas", "check", "--registry");

        Assert.Equal(CairnCli.CheckFailed, run.Code);
        Assert.Contains("'cli.opened' events of version 1 could not be read as version 2: there is no upcaster from 1 to 2", run.Output, StringComparison.Ordinal);
    }

    // --- export ---

    [Fact]
    public async Task an_export_of_the_registry_is_a_snapshot_the_check_then_passes_against()
    {
        var first = Build<OpenedV1>();
        await first.StartAsync();
        await first.StopAsync();
        var path = PathOf("exported.json");

        var export = await RunAsync(Build<OpenedV1>(), "schemas", "export", "--out", path);

        Assert.Equal(CairnCli.Success, export.Code);
        Assert.Contains($"Wrote the registry of the in-memory backend to {path}: 2 event type(s), 2 version(s).", export.Output, StringComparison.Ordinal);
        var check = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", path);
        Assert.Equal(CairnCli.Success, check.Code);
        Assert.Contains("unchanged cli.opened v1", check.Output, StringComparison.Ordinal);

        // The export is what --update would have saved: the same bytes.
        var saved = await SavedAsync<OpenedV1>("saved.json");
        Assert.Equal(await File.ReadAllBytesAsync(saved), await File.ReadAllBytesAsync(path));
    }

    [Fact]
    public async Task an_export_of_an_empty_registry_says_so()
    {
        var path = PathOf("exported.json");

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "export", "--out", path);

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Contains("The registry is empty", run.Error, StringComparison.Ordinal);
        Assert.Empty(SchemaSnapshot.Parse(await File.ReadAllTextAsync(path)).Types);
    }

    // --- asyncapi ---

    [Fact]
    public async Task asyncapi_writes_the_applications_document_with_every_registered_version()
    {
        var first = Build<OpenedV1>();
        await first.StartAsync();
        await first.StopAsync();
        var second = Build<OpenedV2>(2);
        await second.StartAsync();
        await second.StopAsync();
        var path = PathOf("asyncapi.json");

        var run = await RunAsync(Build<OpenedV2>(2), "schemas", "asyncapi", "--out", path);

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Contains($"Wrote the AsyncAPI document to {path}: 3 schema version(s) from the registry of the in-memory backend.", run.Output, StringComparison.Ordinal);
        var document = JsonNode.Parse(await File.ReadAllTextAsync(path))!.AsObject();
        Assert.Equal("3.0.0", document["asyncapi"]!.GetValue<string>());
        var messages = document["components"]!["messages"]!.AsObject().Select(m => m.Key).ToList();
        Assert.Equal(["cli.closed.v1", "cli.opened.v1", "cli.opened.v2"], messages.Where(m => m.StartsWith("cli.", StringComparison.Ordinal)));
        Assert.NotNull(document["channels"]!["queue.openings"]);
        Assert.Equal("", run.Error);
    }

    // Cairn's own types (a workflow's history) are versioned with Cairn and never in the registry: no warning of them.
    [Fact]
    public async Task asyncapi_does_not_warn_that_cairns_own_workflow_events_have_no_schema()
    {
        var snapshot = PathOf("schemas.json");
        Assert.Equal(CairnCli.Success, (await RunAsync(Build<OpenedV1>(), "schemas", "check", "--snapshot", snapshot, "--update")).Code);

        var run = await RunAsync(Build(o => { o.EventTypes.Register<OpenedV1>(Type); Cairn.Workflows.WorkflowEventTypes.Register(o.EventTypes); }), "schemas", "asyncapi", "--snapshot", snapshot, "--out", PathOf("asyncapi.json"));

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Equal("", run.Error);
    }

    [Fact]
    public async Task asyncapi_prints_the_document_without_out_and_takes_the_schemas_from_a_snapshot_when_given_one()
    {
        var path = await SavedAsync<OpenedV1>();

        var run = await RunAsync(Build<OpenedV1>(), "schemas", "asyncapi", "--snapshot", path);

        Assert.Equal(CairnCli.Success, run.Code);
        var document = JsonNode.Parse(run.Output)!.AsObject();
        Assert.Equal("3.0.0", document["asyncapi"]!.GetValue<string>());
        Assert.NotNull(document["components"]!["schemas"]!["cli.opened.v1"]);
        Assert.Equal("", run.Error);

        // From the registry, which no host has filled yet: the types have no schema, and the command says so.
        var empty = await RunAsync(Build<OpenedV1>(), "schemas", "asyncapi");
        Assert.Equal(CairnCli.Success, empty.Code);
        Assert.Equal("3.0.0", JsonNode.Parse(empty.Output)!["asyncapi"]!.GetValue<string>());
        Assert.Contains("2 event type(s) have no schema in the registry of the in-memory backend", empty.Error, StringComparison.Ordinal);
    }

    // --- arguments ---

    [Theory]
    [InlineData(new[] { "schemas", "check" }, "Give either --snapshot <file> or --registry.")]
    [InlineData(new[] { "schemas", "check", "--snapshot", "a.json", "--registry" }, "Give either --snapshot <file> or --registry.")]
    [InlineData(new[] { "schemas", "check", "--registry", "--update" }, "--update writes a snapshot file")]
    [InlineData(new[] { "schemas", "check", "--snapshot" }, "--snapshot")]
    [InlineData(new[] { "schemas", "export" }, "Option '--out' is required.")]
    [InlineData(new[] { "schemas", "chek" }, "'chek'")]
    [InlineData(new[] { "schemas" }, "Required command was not provided.")]
    public async Task bad_arguments_are_refused_by_the_parser_with_exit_code_2(string[] args, string message)
    {
        var run = await RunAsync(Build<OpenedV1>(), args);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains(message, run.Error, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_directory));
    }

    [Fact]
    public async Task help_is_printed_with_exit_code_0()
    {
        var run = await RunAsync(Build<OpenedV1>(), "schemas", "check", "--help");

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Contains("--snapshot <file>", run.Output, StringComparison.Ordinal);
        Assert.Contains("--registry", run.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("--urls http://localhost:5000")]
    [InlineData("--help")]
    [InlineData("serve schemas")]
    public async Task arguments_that_name_no_cairn_command_are_left_to_the_application(string line)
    {
        var run = await RunAsync(Build<OpenedV1>(), line.Split(' ', StringSplitOptions.RemoveEmptyEntries));

        Assert.Null(run.Code);
        Assert.Equal("", run.Output);
        Assert.Equal("", run.Error);
    }

    [Fact]
    public void the_schemas_command_can_be_mounted_in_an_applications_own_command_line()
    {
        var command = CairnCommands.Schemas(Build<OpenedV1>().Services);

        Assert.Equal("schemas", command.Name);
        Assert.Equal(["check", "export", "asyncapi"], command.Subcommands.Select(c => c.Name));
    }

    // A broken upcaster chain (1 to 3, skipping a version), which the host's start refuses, is a failed check (exit 1,
    // "incompatible"), not a command that could not run (2, "broken step"): a pipeline tells the two apart.
    [Fact]
    public async Task a_broken_upcaster_chain_is_a_failed_check()
    {
        var path = await SavedAsync<OpenedV1>();

        var run = await RunAsync(Build(o =>
        {
            o.EventTypes.Register<OpenedV2>(Type, 2);
            o.Schemas.Upcast(Type, 1, 3, json => json);
        }), "schemas", "check", "--snapshot", path);

        Assert.True(run.Code == CairnCli.CheckFailed, $"exit code {run.Code}, expected {CairnCli.CheckFailed}\n{run.Output}\n{run.Error}");
        Assert.Contains("The upcaster of 'cli.opened' from version 1 to 3 is refused", run.Output, StringComparison.Ordinal);
    }

    // The same against the registry: the chain is the check's finding there too, not a configuration the command
    // could not open the registry with.
    [Fact]
    public async Task a_broken_upcaster_chain_is_a_failed_check_against_the_registry_too()
    {
        var first = Build<OpenedV1>();
        await first.StartAsync();
        await first.StopAsync();

        var run = await RunAsync(Build(o =>
        {
            o.EventTypes.Register<OpenedV2>(Type, 2);
            o.Schemas.Upcast(Type, 1, 3, json => json);
        }), "schemas", "check", "--registry");

        Assert.True(run.Code == CairnCli.CheckFailed, $"exit code {run.Code}, expected {CairnCli.CheckFailed}\n{run.Output}\n{run.Error}");
        Assert.Contains("The upcaster of 'cli.opened' from version 1 to 3 is refused", run.Output, StringComparison.Ordinal);
        Assert.Equal([1], (await _registry.GetVersionsAsync(Type)).Select(v => v.Version));
    }
}
