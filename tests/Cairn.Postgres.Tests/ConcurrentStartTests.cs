using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Projections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary>Several hosts starting at the same moment on one PostgreSQL database.</summary>
public sealed class ConcurrentStartTests : IAsyncLifetime
{
    private readonly List<string> _schemas = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var schema in _schemas)
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    private string NewSchema()
    {
        var schema = PostgresServer.NewSchema();
        _schemas.Add(schema);
        return schema;
    }

    private static IHost Build(string schema)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o => o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = schema }));
        return builder.Build();
    }

    // A replica waits for another's migration as it starts; an orchestrator giving up on it (SIGTERM, which stops the
    // host) ends that wait, rather than leave the process waiting for a migration that may never end.
    [Fact]
    public async Task A_host_stopped_while_it_waits_for_another_process_migration_ends_its_start()
    {
        var schema = NewSchema();
        await using var other = new NpgsqlConnection(PostgresServer.ConnectionString);
        await other.OpenAsync();

        // Another process is migrating the schema: it holds the migration lock.
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({PostgresSchema.MigrationLockClass}, {PostgresSchema.SchemaKey(schema)})", other))
        {
            await take.ExecuteNonQueryAsync();
        }

        using var host = Build(schema);
        var start = Task.Run(() => host.StartAsync());
        try
        {
            await Wait.UntilAsync(async () =>
            {
                await using var waiting = new NpgsqlCommand($"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = {PostgresSchema.MigrationLockClass}::oid AND objid = ({PostgresSchema.SchemaKey(schema)}::bigint & 4294967295)::oid", other);
                return (long)(await waiting.ExecuteScalarAsync())! > 0;
            }, "the start waits for the migration lock");

            host.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();

            var error = await Record.ExceptionAsync(() => start.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.True(error is OperationCanceledException, $"The start of a host stopped while it waited for the migration lock should end with OperationCanceledException; it {(error is TimeoutException ? "was still waiting after 30 s" : "ended with " + (error?.ToString() ?? "success"))}.");
        }
        finally
        {
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", other);
            await release.ExecuteNonQueryAsync();
            await Record.ExceptionAsync(() => start);
        }
    }

    // The stopping token ends only a wait for another process's migration: a store first needed as the host stops (a
    // hosted service writing a last event) still opens.
    [Fact]
    public async Task A_store_first_needed_while_the_host_stops_still_opens()
    {
        using var host = Build(NewSchema());
        host.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();

        var store = host.Services.GetRequiredService<IEventStore>();

        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("order.placed", "{}"u8.ToArray())]);
        Assert.Equal(0, await store.GetStreamVersionAsync("order-1"));
    }

    // Two projections declaring one SQL table, opened at once by two processes: one takes the name and the other is
    // refused by name, as when they open one after the other, not by PostgreSQL's catalog as the two views collide.
    [Fact]
    public async Task Two_projections_declaring_one_sql_table_opened_at_once_by_two_processes_fail_with_a_typed_error()
    {
        for (var round = 0; round < 8; round++)
        {
            var schema = NewSchema();
            var options = new PostgresEventStoreOptions { ConnectionString = PostgresServer.ConnectionString, Schema = schema };
            await using var first = new PostgresEventStore(options);
            await using var second = new PostgresEventStore(options);
            await using var firstProjections = new PostgresProjectionStore(first);
            await using var secondProjections = new PostgresProjectionStore(second);
            using var gate = new Barrier(2);
            var opens = new[] { (Store: firstProjections, Name: "totals-a"), (Store: secondProjections, Name: "totals-b") }.Select(p => Task.Run(async () =>
            {
                gate.SignalAndWait();
                await p.Store.OpenAsync(new SharedTable(p.Name), CancellationToken.None);
            })).ToList();
            var errors = new List<Exception>();
            foreach (var open in opens)
            {
                if (await Record.ExceptionAsync(() => open) is { } error)
                {
                    errors.Add(error);
                }
            }

            // One of them takes the name; the other is refused as it is when they start one after the other.
            var refusal = Assert.Single(errors);
            Assert.True(refusal is InvalidProjectionException or ProjectionSwitchRefusedException, $"Round {round}: the second projection to claim the table failed with {refusal.GetType().FullName}: {refusal.Message}");
        }
    }

    private sealed class SharedTable : Projection
    {
        public SharedTable(string name)
            : base(name)
        {
            SqlTable("totals", "CREATE TABLE {table} (id text PRIMARY KEY)");
            On<OrderPlaced>((ctx, e) => ctx.Sql.Execute($"INSERT INTO {ctx.Sql.Table("totals")} (id) VALUES ($id)", ("$id", e.OrderId)));
        }
    }
}
