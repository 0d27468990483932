using Cairn.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>
/// Output paths through symbolic links the CLI's checks resolve differently from the file system: a snapshot read
/// through a link to the output file, and a relative link ("../") inside a folder reached through a link.
/// </summary>
public sealed class CliSymlinkOutputTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-links-").FullName;
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

    private IHost InMemory()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory();
            o.EventTypes.Register<Linked>("cli.linked");
        });
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error).WaitAsync(TimeSpan.FromSeconds(60));
        return (code, output.ToString(), error.ToString());
    }

    private static string Describe((int? Code, string Output, string Error) run) => $"exit code {run.Code}\n--- output:\n{run.Output}\n--- error:\n{run.Error}";

    // SchemaActions.AsyncApiAsync compares OutputPath(--out), which resolves a symbolic link, with FullPath(--snapshot),
    // which does not. With --snapshot naming a link to the file --out names, the two differ as strings though they are
    // one file: the check passes and the AsyncAPI document replaces the snapshot it was made from (exit 0).
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

    // OutputPath resolves a link with FileInfo.ResolveLinkTarget, which joins a relative target to the link's folder as
    // written and then drops ".." lexically. When that folder is itself reached through a link, "../" names another
    // folder than the one the file system goes to: the command writes (and creates folders for) a file nobody named,
    // and the file the link points at keeps its old text.
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

    private sealed record Linked(string Id);
}
