using Cairn.DependencyInjection;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>The <c>storage</c> and <c>schemas</c> commands against SQLite configurations the store refuses or cannot open.</summary>
public sealed class SqliteConfigurationTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-config-").FullName;
    private readonly List<IHost> _hosts = [];

    public void Dispose()
    {
        DisposeHosts();
        Directory.Delete(_directory, recursive: true);
    }

    private void DisposeHosts()
    {
        foreach (var host in _hosts)
        {
            host.Dispose();
        }

        _hosts.Clear();

        // The migrator's and the store's connections are pooled: close them before the files are read or deleted.
        SqliteConnection.ClearAllPools();
    }

    private string PathOf(string name) => Path.Combine(_directory, name);

    private IHost Build(string connectionString)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UseSqlite(connectionString);
            o.EventTypes.Register<Closed>("cli.closed");
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

    // A Data Source that is a directory is no missing file ("version 0 … needs migrating", exit 1, and then a migrate
    // that fails with "unable to open database file"): nothing can be migrated there, an error (2).
    [Fact]
    public async Task storage_status_of_a_data_source_that_is_a_directory_is_an_error_not_needs_migrating()
    {
        var directory = PathOf("data.db");
        Directory.CreateDirectory(directory);

        var run = await RunAsync(Build($"Data Source={directory}"), "storage", "status");

        Assert.True(run.Code == CairnCli.Error, Describe(run));
        Assert.DoesNotContain("needs migrating", run.Output, StringComparison.Ordinal);
    }

    // A configuration the SQLite store refuses as it opens (Mode=ReadOnly, an in-memory database) is, as any backend that
    // cannot be read (docs/schemas.md), exit code 2 "said in one line, without a stack trace".
    [Theory]
    [InlineData("Mode=ReadOnly", "schemas check --registry")]
    [InlineData("Mode=ReadOnly", "schemas export --out out.json")]
    [InlineData("Mode=ReadOnly", "schemas asyncapi")]
    [InlineData(":memory:", "schemas check --registry")]
    public async Task a_schemas_command_on_a_sqlite_configuration_the_store_refuses_says_why_without_a_stack_trace(string kind, string command)
    {
        var database = PathOf("app.db");
        Assert.Equal(CairnCli.Success, (await RunAsync(Build($"Data Source={database}"), "storage", "migrate")).Code);
        var connectionString = kind == ":memory:" ? "Data Source=:memory:" : $"Data Source={database};{kind}";
        var args = command.Split(' ').Select(a => a == "out.json" ? PathOf(a) : a).ToArray();

        var run = await RunAsync(Build(connectionString), args);

        Assert.True(run.Code == CairnCli.Error, Describe(run));
        Assert.DoesNotContain("   at ", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("System.ArgumentException", run.Error, StringComparison.Ordinal);
    }

    // An in-memory SQLite database is a configuration the store refuses ("needs a file"): `storage status` and
    // `storage migrate` refuse it too (exit 2), where they said "current" and "already at version 7", letting a
    // deployment gate pass for an application that cannot start.
    [Theory]
    [InlineData("status")]
    [InlineData("migrate")]
    public async Task storage_commands_on_an_in_memory_sqlite_database_the_store_refuses_are_an_error(string command)
    {
        var run = await RunAsync(Build("Data Source=:memory:"), "storage", command);

        Assert.True(run.Code == CairnCli.Error, Describe(run));
    }
}
