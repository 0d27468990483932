using Cairn.DependencyInjection;
using Cairn.Sqlite;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Hosting;

namespace Cairn.Cli.Tests;

/// <summary>
/// The commands when what they run against fails them: a cancellation, a missing folder, a locked or unreadable file,
/// options that cannot be made, an empty path. Each ends with exit code 2 and one line saying why, never with 1 (a
/// verdict) or a stack trace.
/// </summary>
public sealed class CommandFaultTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("cairn-cli-faults-").FullName;
    private readonly List<IHost> _hosts = [];

    public void Dispose()
    {
        foreach (var host in _hosts)
        {
            host.Dispose();
        }

        // The migrator's connections are pooled: close them before the files go.
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    private string PathOf(string name) => Path.Combine(_directory, name);

    /// <summary>A host as an application's program builds it, not started.</summary>
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

    private IHost Sqlite(string path, Func<SqliteEventStoreOptions, SqliteEventStoreOptions>? configure = null) =>
        Build(o => o.UseSqlite($"Data Source={path}", configure));

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, CancellationToken cancellationToken, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error, cancellationToken);
        return (code, output.ToString(), error.ToString());
    }

    private static Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args) => RunAsync(host, CancellationToken.None, args);

    private static string Describe((int? Code, string Output, string Error) run) => $"exit code {run.Code}\n--- output:\n{run.Output}\n--- error:\n{run.Error}";

    // A command that is cancelled (the caller's token: a deployment step's time-out, Ctrl+C handled by the
    // application) exits with 1, which the docs define as "the check failed" / "the tables need migrating", and says
    // nothing. GuardAsync and StorageActions let the OperationCanceledException through to System.CommandLine, whose
    // default exception handler answers 1. A command that did not run to the end is a "broken step" (2).
    [Theory]
    [InlineData("schemas check --snapshot")]
    [InlineData("storage status")]
    [InlineData("storage migrate")]
    public async Task a_cancelled_command_exits_with_2_not_with_the_failed_check_code_1(string command)
    {
        var database = PathOf("app.db");
        Assert.Equal(CairnCli.Success, (await RunAsync(Sqlite(database), "storage", "migrate")).Code);
        var snapshot = PathOf("schemas.json");
        Assert.Equal(CairnCli.Success, (await RunAsync(Sqlite(database), "schemas", "check", "--snapshot", snapshot, "--update")).Code);
        var args = command.Split(' ');
        if (args[^1] == "--snapshot")
        {
            args = [.. args, snapshot];
        }

        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var run = await RunAsync(Sqlite(database), cancelled.Token, args);

        Assert.True(run.Code == CairnCli.Error, $"a cancelled `{command}` must not read as a verdict (1); {Describe(run)}");
    }

    // `storage migrate` "creates or migrates" the tables (docs/postgres.md, CairnCommands.Storage), and the
    // SQLite store itself creates the file's directory when it opens it (SqliteEventStore's constructor). The migrator
    // does not: on a fresh machine whose data directory does not exist yet, the deployment step fails with
    // "SQLite Error 14: 'unable to open database file'", while starting the application would have worked.
    [Fact]
    public async Task storage_migrate_creates_a_new_sqlite_file_in_a_directory_that_does_not_exist_yet_as_the_store_does()
    {
        var database = PathOf(Path.Combine("data", "app.db"));

        var run = await RunAsync(Sqlite(database), "storage", "migrate");

        Assert.True(run.Code == CairnCli.Success, Describe(run));
        Assert.True(File.Exists(database));
        var status = await RunAsync(Sqlite(database), "storage", "status");
        Assert.True(status.Code == CairnCli.Success, Describe(status));
    }

    // SqliteEventStoreOptions.BusyTimeout is "how long a statement waits for a lock held by another process
    // before failing"; the store applies it, the storage migrator does not (it opens the raw connection string, so
    // Microsoft.Data.Sqlite's default of 30 s applies). `storage migrate` on a file another process is writing to waits
    // 30 s, whatever the application configured (200 ms here; a longer setting is cut to 30 s the same way).
    [Fact]
    public async Task storage_migrate_on_a_locked_sqlite_file_gives_up_after_the_configured_busy_timeout()
    {
        var database = PathOf("locked.db");
        Assert.Equal(CairnCli.Success, (await RunAsync(Sqlite(database), "storage", "migrate")).Code);
        SqliteConnection.ClearAllPools();

        // Another process holds the write lock.
        using var writer = new SqliteConnection($"Data Source={database};Pooling=false");
        writer.Open();
        using (var begin = writer.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            begin.ExecuteNonQuery();
        }

        var started = System.Diagnostics.Stopwatch.StartNew();
        var migrate = RunAsync(Sqlite(database, s => s with { BusyTimeout = TimeSpan.FromMilliseconds(200) }), "storage", "migrate");
        var finished = await Task.WhenAny(migrate, Task.Delay(TimeSpan.FromSeconds(10))) == migrate;
        var elapsed = started.Elapsed;

        // Let it go, then look at what it said.
        using (var rollback = writer.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK";
            rollback.ExecuteNonQuery();
        }

        var run = await migrate.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(finished, $"`storage migrate` with BusyTimeout 200 ms was still waiting for the lock after {elapsed}; it ended after {started.Elapsed} with {Describe(run)}");
        Assert.Equal(CairnCli.Error, run.Code);
    }

    // "Exit code 2 means the command could not run: ... a backend that cannot be reached" with a message
    // (docs/schemas.md). `storage status` says so in one line ("The backend's tables could not be read: SQLite Error
    // 26: 'file is not a database'"); the schemas commands against the same database print "The command failed:"
    // followed by the whole exception with its stack trace, since GuardAsync takes a DbException for an unexpected bug.
    [Theory]
    [InlineData("schemas check --registry")]
    [InlineData("schemas export --out")]
    [InlineData("schemas asyncapi")]
    public async Task a_schemas_command_against_a_database_it_cannot_read_says_why_in_one_line_without_a_stack_trace(string command)
    {
        var database = PathOf("not-a-database.db");
        await File.WriteAllTextAsync(database, new string('x', 4096));
        var args = command.Split(' ');
        if (args[^1] == "--out")
        {
            args = [.. args, PathOf("schemas.json")];
        }

        var status = await RunAsync(Sqlite(database), "storage", "status");
        Assert.Equal(CairnCli.Error, status.Code);
        Assert.DoesNotContain("   at ", status.Error, StringComparison.Ordinal);

        var run = await RunAsync(Sqlite(database), args);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains("file is not a database", run.Error, StringComparison.Ordinal);
        Assert.True(!run.Error.Contains("   at ", StringComparison.Ordinal), $"a stack trace for an unreadable database; {Describe(run)}");
    }

    // An application whose Cairn options cannot be made (here two backends; any InvalidOperationException an
    // options callback throws) is told by the storage commands that "This application's backend has no explicit
    // migration", the message meant for the in-memory backend: StorageActions.Migrator takes every
    // InvalidOperationException out of GetRequiredService for "no migrator registered". The schemas commands, for the
    // same application, report it as a failure of the options.
    [Theory]
    [InlineData("status")]
    [InlineData("migrate")]
    public async Task storage_commands_of_an_application_whose_options_throw_do_not_claim_the_backend_has_no_migration(string command)
    {
        var host = Build(o =>
        {
            o.UseInMemory();
            o.UseSqlite($"Data Source={PathOf("app.db")}");
        });

        var run = await RunAsync(host, "storage", command);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.Contains("already configured with the in-memory backend", run.Error, StringComparison.Ordinal);
        Assert.True(!run.Error.Contains("has no explicit migration", StringComparison.Ordinal), Describe(run));
    }

    // A bad path argument is "bad arguments" (exit 2 with a message), but an empty or invalid
    // --out/--snapshot reaches Path.GetFullPath, whose ArgumentException GuardAsync prints whole, stack trace included.
    [Theory]
    [InlineData("schemas export --out")]
    [InlineData("schemas check --snapshot")]
    [InlineData("schemas asyncapi --out")]
    public async Task an_empty_path_argument_is_refused_with_a_message_not_a_stack_trace(string command)
    {
        var run = await RunAsync(InMemory(), [.. command.Split(' '), ""]);

        Assert.Equal(CairnCli.Error, run.Code);
        Assert.True(!run.Error.Contains("   at ", StringComparison.Ordinal), Describe(run));
    }
}
