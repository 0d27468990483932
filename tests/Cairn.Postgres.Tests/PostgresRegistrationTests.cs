using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Cairn.Postgres.Tests;

/// <summary><c>UsePostgres</c> registers the PostgreSQL broker and correlation trace reader, the container closes them, and a second <c>UsePostgres</c> must repeat the first.</summary>
public sealed class PostgresRegistrationTests
{
    [Fact]
    public async Task use_postgres_registers_a_broker_and_a_trace_reader_on_the_store_and_the_container_closes_them()
    {
        var schema = PostgresServer.NewSchema();
        try
        {
            var services = new ServiceCollection();
            services.AddCairn(o => o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = schema }));
            int listener;
            await using (var provider = services.BuildServiceProvider())
            {
                var broker = provider.GetRequiredService<IMessageBroker>();
                var inner = Assert.IsType<PostgresMessageBroker>(Assert.IsType<InstrumentedMessageBroker>(broker).Inner);
                Assert.IsType<PostgresCorrelationTraceReader>(provider.GetRequiredService<ICorrelationTraceReader>());

                QueueName queue = "registered";
                await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
                var sent = new OutgoingMessage("test.registered", Encoding.UTF8.GetBytes("{}"));
                await broker.SendAsync(queue, sent);
                var trace = await provider.GetRequiredService<CorrelationTracer>().TraceAsync(sent.Id.ToString(), default);
                Assert.Single(trace.Timeline);

                var delivery = Assert.Single(await broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(5) }, default));
                Assert.Equal(sent.Id, delivery.Message.Id);
                await broker.AcknowledgeAsync(delivery.Lease);
                await inner.Listener.WhenListeningAsync().Bounded();
                listener = inner.Listener.ProcessId;
                Assert.True(await IsConnectedAsync(listener));
            }

            // Disposed with the container, the broker closes its listening connection.
            await Wait.UntilAsync(async () => !await IsConnectedAsync(listener), "the listening connection is closed");
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    [Fact]
    public async Task every_connection_cairn_opens_comes_from_a_data_source_the_application_configured()
    {
        var schema = PostgresServer.NewSchema();
        var builders = 0;
        var pooled = 0;
        var unpooled = 0;
        try
        {
            var services = new ServiceCollection();
            services.AddCairn(o => o.UsePostgres(PostgresServer.ConnectionString, p => p with
            {
                Schema = schema,
                ConfigureDataSource = builder =>
                {
                    Interlocked.Increment(ref builders);

                    // What a listener needs cannot be undone here: its connection stays out of the pool.
                    builder.ConnectionStringBuilder.Pooling = true;
                    void Count(NpgsqlConnection connection) =>
                        Interlocked.Increment(ref new NpgsqlConnectionStringBuilder(connection.ConnectionString).Pooling ? ref pooled : ref unpooled);
                    builder.UsePhysicalConnectionInitializer(
                        Count,
                        connection =>
                        {
                            Count(connection);
                            return Task.CompletedTask;
                        });
                },
            }));
            await using (var provider = services.BuildServiceProvider())
            {
                var broker = provider.GetRequiredService<IMessageBroker>();
                QueueName queue = "configured";
                await broker.DeclareQueueAsync(new QueueDefinition(queue), default);
                var sent = new OutgoingMessage("test.configured", Encoding.UTF8.GetBytes("{}"));
                await broker.SendAsync(queue, sent);
                var delivery = Assert.Single(await broker.ReceiveAsync(queue, new ReceiveOptions { Wait = TimeSpan.FromSeconds(5) }, default));
                Assert.Equal(sent.Id, delivery.Message.Id);
                await ((PostgresMessageBroker)((InstrumentedMessageBroker)broker).Inner).Listener.WhenListeningAsync().Bounded();
                var status = await provider.GetRequiredService<IStorageMigrator>().GetStatusAsync(default);

                // The migrator's, the store's pool and the queue listener's own connection.
                Assert.Equal(status.ExpectedVersion, status.Version);
                Assert.True(builders >= 3, $"{builders} data sources were configured");
                Assert.True(pooled > 0, "no pooled connection was opened through the configured data source");
                Assert.Equal(1, unpooled);
            }
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    // The store UsePostgres opens is shared by every part, but only the IEventStore registration disposed it: a
    // container that resolved only the others (checkpoints here; queues and consumers in a host) left its connections open.
    [Fact]
    public async Task the_container_closes_the_postgres_store_when_only_its_checkpoints_were_resolved()
    {
        var schema = PostgresServer.NewSchema();
        try
        {
            var services = new ServiceCollection();
            services.AddCairn(o => o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = schema }));
            ICheckpointStore checkpoints;
            await using (var provider = services.BuildServiceProvider())
            {
                await provider.GetRequiredService<IStorageMigrator>().MigrateAsync(default);
                checkpoints = provider.GetRequiredService<ICheckpointStore>();
                await checkpoints.SetAsync("only-checkpoints", new GlobalPosition(1), default);
            }

            await Assert.ThrowsAsync<ObjectDisposedException>(() => checkpoints.GetAsync("only-checkpoints", default).AsTask());
        }
        finally
        {
            await PostgresServer.DropSchemaAsync(schema);
        }
    }

    // A module's own AddCairn naming another schema or database replaced the application's silently. The same
    // settings again are one backend; the password stays out of the error.
    [Fact]
    public void a_second_use_postgres_with_another_schema_is_refused_naming_both()
    {
        const string connection = "Host=db;Database=app;Username=app;Password=app-secret";
        var refused = Assert.Throws<BackendConflictException>(() => new CairnOptions()
            .UsePostgres(connection, p => p with { Schema = "orders" })
            .UsePostgres(connection, p => p with { Schema = "billing" }));
        Assert.Contains("orders", refused.Message, StringComparison.Ordinal);
        Assert.Contains("billing", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", refused.Message, StringComparison.Ordinal);
        Assert.Equal("postgres", new CairnOptions().UsePostgres(connection).UsePostgres(connection).BackendName);
    }

    private static async Task<bool> IsConnectedAsync(int processId)
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var select = new NpgsqlCommand("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2", connection);
        select.Parameters.Add(new NpgsqlParameter { Value = processId });
        select.Parameters.Add(new NpgsqlParameter { Value = PostgresListener.QueueApplicationName });
        return (long)(await select.ExecuteScalarAsync())! > 0;
    }
}
