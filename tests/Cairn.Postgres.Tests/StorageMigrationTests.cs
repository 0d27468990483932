using Cairn.Cli;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;
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

    [Fact]
    public async Task a_process_finding_another_migrating_waits_for_it_past_its_command_timeout()
    {
        // Another session holds the migration lock, as a process running a long migration does.
        await using var holder = new NpgsqlConnection(PostgresServer.ConnectionString);
        await holder.OpenAsync();
        await ExecuteAsync(holder, $"SELECT pg_advisory_lock({PostgresSchema.MigrationLockClass}, {PostgresSchema.SchemaKey(_schema)})");

        var oneSecond = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { CommandTimeout = 1, ApplicationName = "cairn-waiting-migrator" }.ConnectionString;
        var migrator = new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = oneSecond, Schema = _schema });
        var migrating = Task.Run(() => migrator.MigrateAsync(CancellationToken.None));

        // Still waiting for the lock well past its one-second command timeout.
        await Wait.UntilAsync(
            async () => migrating.IsCompleted || await ScalarAsync<bool>(holder,
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'cairn-waiting-migrator' AND wait_event_type = 'Lock' AND query_start < now() - interval '3 seconds')"),
            "the migrator waits for the lock for three seconds");
        Assert.False(migrating.IsCompleted, migrating.Exception?.ToString());

        await ExecuteAsync(holder, "SELECT pg_advisory_unlock_all()");
        var result = await migrating.WaitAsync(Wait.Timeout);
        Assert.True(result.After.IsCurrent);
    }

    [Fact]
    public async Task a_role_that_owns_the_schema_made_for_it_migrates_it_without_create_on_the_database()
    {
        var role = "cairn_owner_" + Guid.NewGuid().ToString("N")[..12];
        await AdminAsync($"CREATE ROLE {role} LOGIN PASSWORD 'pw'", $"CREATE SCHEMA \"{_schema}\" AUTHORIZATION {role}");
        try
        {
            var asRole = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { Username = role, Password = "pw", Pooling = false }.ConnectionString;
            var migrated = await new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = asRole, Schema = _schema }).MigrateAsync(default);
            Assert.True(migrated.After.IsCurrent);

            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = asRole, Schema = _schema });
            await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("test.appended", "{}"u8.ToArray())]);
            Assert.Single(await store.ReadStreamAsync("order-1").ToListAsync());
        }
        finally
        {
            await AdminAsync($"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE", $"DROP ROLE {role}");
        }
    }

    [Fact]
    public async Task a_role_allowed_only_to_use_a_current_schema_opens_its_store_with_migrate_on_start()
    {
        await new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema }).MigrateAsync(default);
        var role = "cairn_user_" + Guid.NewGuid().ToString("N")[..12];
        await AdminAsync(
            $"CREATE ROLE {role} LOGIN PASSWORD 'pw'",
            $"GRANT USAGE ON SCHEMA \"{_schema}\" TO {role}",
            $"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{_schema}\" TO {role}",
            $"GRANT USAGE ON ALL SEQUENCES IN SCHEMA \"{_schema}\" TO {role}");
        try
        {
            var asRole = new NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString) { Username = role, Password = "pw", Pooling = false }.ConnectionString;
            await using var store = new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = asRole, Schema = _schema, MigrateOnStart = true });
            await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("test.appended", "{}"u8.ToArray())]);
            Assert.Single(await store.ReadStreamAsync("order-1").ToListAsync());
        }
        finally
        {
            await AdminAsync($"DROP SCHEMA IF EXISTS \"{_schema}\" CASCADE", $"DROP OWNED BY {role}", $"DROP ROLE {role}");
        }
    }

    [Fact]
    public async Task a_store_that_does_not_migrate_refuses_a_newer_schema_saying_to_upgrade_the_application()
    {
        await new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema }).MigrateAsync(default);
        await AdminAsync($"INSERT INTO \"{_schema}\".migrations (version, description) VALUES ({PostgresSchema.CurrentVersion + 1}, 'a newer Cairn')");

        var refused = Assert.Throws<InvalidOperationException>(() => new PostgresEventStore(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema, MigrateOnStart = false }));

        Assert.Contains("newer than this Cairn", refused.Message, StringComparison.Ordinal);
        Assert.Contains("upgrade the application", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_version_7_schema_gives_its_projection_dead_letters_to_the_serving_build_and_drops_those_of_projections_without_one()
    {
        var projection = new OrderSummaries();
        var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema };
        long serving;
        await using (var store = new PostgresEventStore(options))
        {
            var appended = await store.AppendToStreamAsync(Orders.Stream("poison"), ExpectedVersion.Any, [Orders.Placed("poison", "c-1", 10m)]);
            var projections = new PostgresProjectionStore(store);
            serving = (await projections.OpenAsync(projection, default)).Serving.Id;
            var failure = new FailureInfo("System.InvalidOperationException", "Refusing order poison", null);
            var poison = new ProjectionDeadLetter(projection.Name, serving, appended.FirstPosition, MessageId.New(), Orders.Stream("poison"), 0, "order.placed", failure, 3, DateTimeOffset.UnixEpoch);
            await projections.ApplyAsync(new ProjectionBatch(projection.Name, serving, GlobalPosition.Start, appended.FirstPosition, [], (_, _) => { }) { DeadLetters = [poison] }, default);
        }

        // What version 7 wrote: no build column, one dead letter per projection and position; and one of a projection
        // whose builds are gone.
        var s = $"\"{_schema}\"";
        await AdminAsync(
            $"ALTER TABLE {s}.projection_dead_letters DROP CONSTRAINT projection_dead_letters_pkey, ADD PRIMARY KEY (projection, position)",
            $"ALTER TABLE {s}.projection_dead_letters DROP COLUMN build",
            $"INSERT INTO {s}.projection_dead_letters SELECT 'gone', position, event_id, stream, version, event_type, failure, attempts, dead_ticks FROM {s}.projection_dead_letters",
            $"DELETE FROM {s}.migrations WHERE version = 8");

        await using (var store = new PostgresEventStore(options))
        {
            var projections = new PostgresProjectionStore(store);
            var kept = Assert.Single(await projections.ListDeadLettersAsync(projection.Name, 10, default));
            Assert.Equal(serving, kept.Build);
            Assert.Equal(3, kept.Attempts);
            Assert.Contains("Refusing order poison", kept.Failure.Message, StringComparison.Ordinal);
            Assert.Empty(await projections.ListDeadLettersAsync("gone", 10, default));

            // The migrated dead letter goes with its build, as a new one would.
            var shadow = await projections.StartShadowAsync(projection, default);
            var head = (await store.ReadAllAsync(GlobalPosition.Start).ToListAsync())[^1].Position;
            await projections.ApplyAsync(new ProjectionBatch(projection.Name, shadow.Id, GlobalPosition.Start, head, [], (_, _) => { }) { GoLive = true }, default);
            Assert.Empty(await projections.ListDeadLettersAsync(projection.Name, 10, default));
        }
    }

    [Fact]
    public async Task a_registry_check_before_a_deployment_refuses_a_database_at_an_older_version_and_leaves_it_there()
    {
        // The database as the deployed, previous Cairn left it: one version short of this one's.
        var migrator = new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = _schema });
        await migrator.MigrateAsync(default);
        var latest = PostgresSchema.CurrentVersion;
        await AdminAsync($"DELETE FROM \"{_schema}\".migrations WHERE version = {latest}");

        // The new build's pipeline checks its schemas against that database, with the application's own options
        // (MigrateOnStart on): the check writes nothing, so it cannot open the store.
        using var host = Build(migrateOnStart: true);
        foreach (var command in new[] { new[] { "schemas", "check", "--registry" }, ["schemas", "export", "--out", Path.Combine(Path.GetTempPath(), $"cairn-never-written-{Guid.NewGuid():N}.json")], ["schemas", "asyncapi"] })
        {
            var refused = await RunAsync(host, command);
            Assert.Equal(CairnCli.Error, refused.Code);
            Assert.Contains($"at version {latest - 1}, not this Cairn's {latest}", refused.Error, StringComparison.Ordinal);
            Assert.Contains("would migrate it", refused.Error, StringComparison.Ordinal);
            Assert.Equal(latest - 1, (await migrator.GetStatusAsync(default)).Version);
        }

        // Once the deployment migrated it, the check reads the registry.
        await AdminAsync($"INSERT INTO \"{_schema}\".migrations (version, description) VALUES ({latest}, 'migrated')");
        var check = await RunAsync(host, "schemas", "check", "--registry");
        Assert.Equal(CairnCli.Success, check.Code);
    }

    // A server that takes the connection and never answers (a hung host, a firewall that swallows packets): a status
    // asked with a cancellation stops waiting when cancelled, where it ran on until the connect timed out.
    [Fact]
    public async Task A_status_of_a_server_that_never_answers_stops_when_cancelled()
    {
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var migrator = new PostgresStorageMigrator(new PostgresEventStoreOptions { ConnectionString = $"Host=127.0.0.1;Port={port};Username=nobody;Database=none;Timeout=300", Schema = _schema });
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => migrator.GetStatusAsync(cancel.Token)).Bounded();
    }

    private static async Task AdminAsync(params string[] statements)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        foreach (var sql in statements)
        {
            await ExecuteAsync(connection, sql);
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
