using Cairn.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>The storage commands of an application whose Cairn options are invalid: exit code 2, as every command that cannot run.</summary>
public sealed class StorageOptionsTests : IDisposable
{
    private readonly List<IHost> _hosts = [];

    public void Dispose()
    {
        foreach (var host in _hosts)
        {
            host.Dispose();
        }
    }

    private IHost Build(Action<CairnOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(configure);
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

    /// <summary>
    /// Exit code 1 means "the check failed" (for <c>storage status</c>: the tables need migrating); 2 means the command
    /// could not run. An application whose Cairn options are invalid makes the <c>schemas</c> commands exit with 2 and a
    /// one-line message, but the <c>storage</c> commands let the <c>OptionsValidationException</c> escape
    /// (StorageActions.Migrator catches only InvalidOperationException), and System.CommandLine's default handler turns
    /// it into a stack trace and exit code 1: a pipeline reads "needs migrating".
    /// </summary>
    [Theory]
    [InlineData("status")]
    [InlineData("migrate")]
    public async Task storage_commands_of_an_application_with_invalid_options_exit_with_2_not_1(string command)
    {
        var host = Build(o =>
        {
            o.UseInMemory();
            o.MaxEventSize = 0;
        });

        // The schemas commands say so with exit code 2.
        var schemas = await RunAsync(host, "schemas", "check", "--registry");
        Assert.Equal(CairnCli.Error, schemas.Code);

        var storage = await RunAsync(host, "storage", command);

        Assert.True(storage.Code == CairnCli.Error, $"exit code {storage.Code}; error output:\n{storage.Error}");
        Assert.Contains("Cairn options are invalid", storage.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", storage.Error, StringComparison.Ordinal);
    }
}
