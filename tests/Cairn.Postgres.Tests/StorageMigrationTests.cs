using Cairn.Cli;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Npgsql;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Postgres.Tests;

/// <summary>
/// The explicit migration step: an application that does not migrate on start runs <c>storage migrate</c> (Cairn's
/// command line mounted in its program) before it is deployed; <c>storage status</c> tells a pipeline whether it must.
/// </summary>
public sealed class StorageMigrationTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => PostgresServer.DropSchemaAsync(_schema);

    private IHost Build(bool migrateOnStart)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = _schema, MigrateOnStart = migrateOnStart }));
        return builder.Build();
    }

    private static async Task<(int? Code, string Output, string Error)> RunAsync(IHost host, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CairnCli.TryRunAsync(args, host.Services, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public async Task status_fails_until_migrate_creates_the_tables_and_then_a_store_that_does_not_migrate_opens()
    {
        using var host = Build(migrateOnStart: false);

        var before = await RunAsync(host, "storage", "status");
        Assert.Equal(CairnCli.CheckFailed, before.Code);
        Assert.Contains("version 0", before.Output, StringComparison.Ordinal);
        Assert.Contains("needs migrating", before.Output, StringComparison.Ordinal);

        // The application cannot open its store before the step runs.
        Assert.Throws<InvalidOperationException>(() => host.Services.GetRequiredService<Cairn.EventStore.IEventStore>());

        var migrate = await RunAsync(host, "storage", "migrate");
        Assert.Equal(CairnCli.Success, migrate.Code);
        Assert.Contains($"migrated from version 0 to {PostgresSchema.CurrentVersion}", migrate.Output, StringComparison.Ordinal);

        var again = await RunAsync(host, "storage", "migrate");
        Assert.Equal(CairnCli.Success, again.Code);
        Assert.Contains("nothing to do", again.Output, StringComparison.Ordinal);

        var after = await RunAsync(host, "storage", "status");
        Assert.Equal(CairnCli.Success, after.Code);
        Assert.Contains("current", after.Output, StringComparison.Ordinal);

        using var deployed = Build(migrateOnStart: false);
        await deployed.StartAsync();
        await deployed.StopAsync();
    }

    [Fact]
    public async Task migrations_run_at_once_from_several_processes_migrate_once()
    {
        var migrators = Enumerable.Range(0, 4).Select(_ => new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema })).ToList();
        var results = await Task.WhenAll(migrators.Select(m => Task.Run(() => m.MigrateAsync(CancellationToken.None))));
        Assert.Single(results, r => r.Migrated);
        Assert.All(results, r => Assert.True(r.After.IsCurrent));
    }

    [Fact]
    public async Task a_migrated_log_has_no_foreign_key_from_events_to_streams_and_still_refuses_a_second_version()
    {
        var migrator = new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        await migrator.MigrateAsync(CancellationToken.None);

        await using var dataSource = NpgsqlDataSource.Create(PostgresServer.ConnectionString);
        await using var keys = dataSource.CreateCommand("SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f'");
        keys.Parameters.Add(new NpgsqlParameter { Value = $"\"{_schema}\".events" });
        Assert.Equal(0L, (long)(await keys.ExecuteScalarAsync())!);

        // What the key never had to check, the store still keeps: one event per version of a stream.
        await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        var first = await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("test.appended", "{}"u8.ToArray())]);
        await using var duplicate = dataSource.CreateCommand(
            $"INSERT INTO \"{_schema}\".events (position, id, stream_id, stream, category, is_system, version, type, time_ticks, source, content_type, tags, data) " +
            $"SELECT 2, gen_random_uuid(), stream_id, stream, category, is_system, version, type, time_ticks, source, content_type, tags, data FROM \"{_schema}\".events WHERE position = $1");
        duplicate.Parameters.Add(new NpgsqlParameter { Value = first.FirstPosition.Value });
        var refused = await Assert.ThrowsAsync<PostgresException>(() => duplicate.ExecuteNonQueryAsync());
        Assert.Equal(PostgresErrorCodes.UniqueViolation, refused.SqlState);
    }

    [Fact]
    public async Task an_unreachable_server_is_an_error_not_a_failed_check()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UsePostgres("Host=127.0.0.1;Port=1;Timeout=2", p => p with { Schema = _schema, MigrateOnStart = false }));
        using var host = builder.Build();
        var status = await RunAsync(host, "storage", "status");
        Assert.Equal(CairnCli.Error, status.Code);
        Assert.Contains("could not be read", status.Error, StringComparison.Ordinal);
    }
}
