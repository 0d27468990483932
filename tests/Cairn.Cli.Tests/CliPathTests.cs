using Cairn.DependencyInjection;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>
/// The commands on bad and unusual input: an output path that is the file the command reads, a path under a file, a
/// path starting with '@'. Each should end with exit code 2 and a message naming what was wrong, losing nothing.
/// </summary>
public sealed class CliPathTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-paths-").FullName;
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

    private IHost Build(Action<CairnOptions> backend)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            backend(o);
            o.EventTypes.Register<Closed>("cli.closed");
        });
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    private IHost InMemory() => Build(o => o.UseInMemory());

    private IHost Sqlite(string path) => Build(o => o.UseSqlite($"Data Source={path}"));

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error).WaitAsync(TimeSpan.FromSeconds(60));
        return (code, output.ToString(), error.ToString());
    }

    private static string Describe((int? Code, string Output, string Error) run) => $"exit code {run.Code}\n--- output:\n{run.Output}\n--- error:\n{run.Error}";

    // `schemas asyncapi --snapshot schemas.json --out schemas.json` reads the committed snapshot and then replaces it
    // with the AsyncAPI document, exit 0 ("Wrote the AsyncAPI document to schemas.json: 1 schema version(s) from the
    // snapshot schemas.json."). The snapshot is lost; the pipeline's next `schemas check --snapshot` fails with
    // "'cairnSchemaSnapshot' must be 1". Giving one file as both input and output is bad arguments (2), nothing written.
    [Fact]
    public async Task asyncapi_with_out_naming_the_snapshot_it_reads_is_refused_and_the_snapshot_is_kept()
    {
        var snapshot = PathOf("schemas.json");
        Assert.Equal(CairnCli.Success, (await RunAsync(InMemory(), "schemas", "check", "--snapshot", snapshot, "--update")).Code);
        var before = await File.ReadAllBytesAsync(snapshot);

        var run = await RunAsync(InMemory(), "schemas", "asyncapi", "--snapshot", snapshot, "--out", snapshot);

        Assert.True(run.Code == CairnCli.Error, $"the snapshot was overwritten by the AsyncAPI document; {Describe(run)}");
        Assert.Equal(before, await File.ReadAllBytesAsync(snapshot));
    }

    // `schemas export --out app.db`, where app.db is the SQLite file the application's backend is (a slip between two
    // paths of a deployment script), reads the registry from the database and then moves the JSON snapshot over the
    // database file, exit 0. Every event is gone; `storage status` then says "SQLite Error 26: 'file is not a database'".
    // A file the command reads from (the backend's own database) is no place to write its output: exit 2, nothing written.
    [Fact]
    public async Task export_with_out_naming_the_sqlite_database_of_the_backend_is_refused_and_the_database_is_kept()
    {
        var database = PathOf("app.db");
        Assert.Equal(CairnCli.Success, (await RunAsync(Sqlite(database), "storage", "migrate")).Code);
        SqliteConnection.ClearAllPools();

        var run = await RunAsync(Sqlite(database), "schemas", "export", "--out", database);
        SqliteConnection.ClearAllPools();

        Assert.True(run.Code == CairnCli.Error, $"the export was written over the backend's database; {Describe(run)}");
        var status = await RunAsync(Sqlite(database), "storage", "status");
        Assert.True(status.Code == CairnCli.Success, $"the database is no longer readable after the export; {Describe(status)}");
    }

    // An --out or --snapshot path under an existing file (`--out schemas.json/asyncapi.json`) is refused with
    // "The file '<dir>/schemas.json' already exists." (Directory.CreateDirectory's IOException): it names the parent, not
    // the path given, and says something that is no fault (a file existing). The message should name the path given and
    // say that its folder is a file.
    [Theory]
    [InlineData("schemas asyncapi --out")]
    [InlineData("schemas check --update --snapshot")]
    public async Task a_path_under_an_existing_file_is_refused_naming_the_path_not_saying_a_file_already_exists(string command)
    {
        var file = PathOf("schemas.json");
        await File.WriteAllTextAsync(file, "not a folder");
        var path = Path.Combine(file, "out.json");

        var run = await RunAsync(InMemory(), [.. command.Split(' '), path]);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.True(!run.Error.Contains("already exists", StringComparison.Ordinal), $"a misleading message for a path under a file; {Describe(run)}");
        Assert.Contains(path, run.Error, StringComparison.Ordinal);
        Assert.Equal("not a folder", await File.ReadAllTextAsync(file));
    }

    // System.CommandLine's response files are left on: a path argument starting with '@' is read as a file of further
    // arguments. `schemas check --snapshot @<file>` of a missing file says "Response file not found", not the command's own
    // "The schema snapshot '@…' does not exist" with how to create it; of an existing snapshot it splits the JSON into
    // hundreds of "Unrecognized command or argument" lines (and a help text per token on standard output). A path is a path.
    [Fact]
    public async Task a_snapshot_path_starting_with_an_at_sign_is_a_path_not_a_response_file()
    {
        var path = "@" + PathOf("missing.json");

        var run = await RunAsync(InMemory(), "schemas", "check", "--snapshot", path);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.True(run.Error.Contains("does not exist", StringComparison.Ordinal) && run.Error.Contains(path, StringComparison.Ordinal),
            $"'@' read as a response file; {Describe(run)}");
    }

    // The in-memory backend's registry is always empty at a command's start; the hint said its host "has not started yet".
    [Fact]
    public async Task an_export_of_the_in_memory_backend_says_it_keeps_no_registry()
    {
        var run = await RunAsync(InMemory(), "schemas", "export", "--out", PathOf("empty.json"));

        Assert.Equal(CairnCli.Success, run.Code);
        Assert.Contains("in-memory backend keeps none", run.Error, StringComparison.Ordinal);
    }

    // A file of JSON (a snapshot exported before) is replaced as asked.
    [Fact]
    public async Task an_export_over_an_earlier_json_snapshot_replaces_it()
    {
        var path = PathOf("schemas.json");
        await File.WriteAllTextAsync(path, "\uFEFF  \n{ \"old\": true }");

        var run = await RunAsync(InMemory(), "schemas", "export", "--out", path);

        Assert.True(run.Code == CairnCli.Success, Describe(run));
        Assert.Contains("cairnSchemaSnapshot", await File.ReadAllTextAsync(path), StringComparison.Ordinal);
    }

    // The file was written beside the link and moved over it: the link became a file, its target kept the old text.
    [Fact]
    public async Task an_export_through_a_symbolic_link_writes_the_file_it_points_at_and_keeps_the_link()
    {
        var target = PathOf("target.json");
        await File.WriteAllTextAsync(target, "{}");
        var link = PathOf("link.json");
        File.CreateSymbolicLink(link, target);

        var run = await RunAsync(InMemory(), "schemas", "export", "--out", link);

        Assert.True(run.Code == CairnCli.Success, Describe(run));
        Assert.NotNull(new FileInfo(link).LinkTarget);
        Assert.Contains("cairnSchemaSnapshot", await File.ReadAllTextAsync(target), StringComparison.Ordinal);
    }

    // A file moved over a read-only one in a writable folder replaces it: its mode said not to.
    [Fact]
    public async Task an_export_over_a_read_only_file_is_refused_and_the_file_is_kept()
    {
        var path = PathOf("locked.json");
        await File.WriteAllTextAsync(path, "{}");
        new FileInfo(path).IsReadOnly = true;

        var run = await RunAsync(InMemory(), "schemas", "export", "--out", path);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains("read-only", run.Error, StringComparison.Ordinal);
        Assert.Equal("{}", await File.ReadAllTextAsync(path));
        new FileInfo(path).IsReadOnly = false;
    }

    // The output's path was resolved through its link and the snapshot's was not: a snapshot given through a link to
    // the output file passed for another file, and the AsyncAPI document replaced it (exit 0).
    [Fact]
    public async Task asyncapi_with_the_snapshot_given_through_a_link_to_the_out_file_is_refused_and_the_snapshot_is_kept()
    {
        var snapshot = PathOf("schemas.json");
        Assert.Equal(CairnCli.Success, (await RunAsync(InMemory(), "schemas", "check", "--snapshot", snapshot, "--update")).Code);
        var before = await File.ReadAllBytesAsync(snapshot);
        var link = PathOf("committed.json");
        File.CreateSymbolicLink(link, snapshot);

        var run = await RunAsync(InMemory(), "schemas", "asyncapi", "--snapshot", link, "--out", snapshot);

        Assert.True(run.Code == CairnCli.Error, $"the snapshot was overwritten by the AsyncAPI document; {Describe(run)}");
        Assert.Equal(before, await File.ReadAllBytesAsync(snapshot));
    }

    // A relative link's target was joined to the link's folder as written, with ".." dropped from the text: in a folder
    // reached through a link, "../" named another folder than the file system goes to, and the command wrote (and made
    // folders for) a file nobody named, leaving the one the link points at as it was.
    [Fact]
    public async Task an_update_through_a_relative_link_in_a_linked_folder_writes_the_file_the_link_points_at()
    {
        var real = Directory.CreateDirectory(PathOf("real/app")).FullName;
        var shared = Directory.CreateDirectory(PathOf("real/shared")).FullName;
        var target = Path.Combine(shared, "schemas.json");
        const string empty = "{ \"cairnSchemaSnapshot\": 1, \"eventTypes\": {} }";
        await File.WriteAllTextAsync(target, empty);
        File.CreateSymbolicLink(Path.Combine(real, "schemas.json"), "../shared/schemas.json");
        Directory.CreateSymbolicLink(PathOf("app"), real);
        var viaLinkedFolder = Path.Combine(PathOf("app"), "schemas.json");
        Assert.Equal(empty, await File.ReadAllTextAsync(viaLinkedFolder)); // the file system resolves it to `target`

        var run = await RunAsync(InMemory(), "schemas", "check", "--snapshot", viaLinkedFolder, "--update");

        Assert.True(run.Code == CairnCli.Success, Describe(run));
        Assert.False(File.Exists(PathOf("shared/schemas.json")), $"a file nobody named was written beside the linked folder; {Describe(run)}");
        Assert.Contains("cairnSchemaSnapshot", await File.ReadAllTextAsync(target), StringComparison.Ordinal);
    }
}
