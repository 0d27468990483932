using Cairn.DependencyInjection;
using Cairn.Schemas;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>What the `schemas check` command makes of a broken upcaster chain.</summary>
public sealed class UpcasterCheckTests : IDisposable
{
    private const string Type = "cli.opened";

    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-upcasters-").FullName;
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

    private IHost Build(Action<CairnOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory();
            o.UseBackendPart<ISchemaStore>(_ => _registry);
            configure(o);
        });
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error);
        return (code, output.ToString(), error.ToString());
    }

    // A broken upcaster chain (1 to 3, skipping a version), which the host's start refuses, is a failed check (exit 1,
    // "incompatible"), not a command that could not run (2, "broken step"): a pipeline tells the two apart.
    [Fact]
    public async Task a_broken_upcaster_chain_is_a_failed_check()
    {
        var path = Path.Combine(_directory, "schemas.json");
        var first = await RunAsync(Build(o => o.EventTypes.Register<OpenedV1>(Type)), "schemas", "check", "--snapshot", path, "--update");
        Assert.Equal(CairnCli.Success, first.Code);

        var run = await RunAsync(Build(o =>
        {
            o.EventTypes.Register<OpenedV2>(Type, 2);
            o.Schemas.Upcast(Type, 1, 3, json => json);
        }), "schemas", "check", "--snapshot", path);

        Assert.True(run.Code == CairnCli.CheckFailed, $"exit code {run.Code}, expected {CairnCli.CheckFailed}\n{run.Output}\n{run.Error}");
        Assert.Contains("The upcaster of 'cli.opened' from version 1 to 3 is refused", run.Output, StringComparison.Ordinal);
    }
}
