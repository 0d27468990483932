using Cairn.DependencyInjection;
using Cairn.Schemas;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Cairn.Postgres.Tests;

public sealed record ParcelSent(string Id, int Grams);

public sealed record ParcelSentV2(string Id, int Grams, string? Carrier = null);

public sealed record ParcelSentRenamed(string Id, int Weight);

/// <summary>
/// The schema registry on PostgreSQL, as applications host it: versions registered by one process bind every later
/// start of any process, and processes starting at once register each version once.
/// </summary>
public sealed class SchemaRegistryHostingTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => PostgresServer.DropSchemaAsync(_schema);

    private async Task<IHost> StartAsync(Action<CairnOptions> configure)
    {
        var host = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        host.Services.AddCairn(o =>
        {
            o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = _schema });
            configure(o);
        });
        var built = host.Build();
        try
        {
            await built.StartAsync();
            return built;
        }
        catch
        {
            built.Dispose();
            throw;
        }
    }

    private async Task<List<(string Type, int Version)>> VersionsAsync()
    {
        await using var connection = new NpgsqlConnection(PostgresServer.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT event_type, version FROM \"{_schema}\".schema_versions ORDER BY event_type, version", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(string, int)>();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetString(0), reader.GetInt32(1)));
        }

        return rows;
    }

    [Fact]
    public async Task versions_registered_by_one_start_bind_every_later_start()
    {
        using (var first = await StartAsync(o => o.EventTypes.Register<ParcelSent>("parcel.sent")))
        {
            await first.StopAsync();
        }

        using (var second = await StartAsync(o => o.EventTypes.Register<ParcelSentV2>("parcel.sent", 2)))
        {
            Assert.Equal(CompatibilityMode.Backward, await second.Services.GetRequiredService<ISchemaStore>().GetCompatibilityAsync("parcel.sent"));
            await second.StopAsync();
        }

        Assert.Equal([("parcel.sent", 1), ("parcel.sent", 2)], await VersionsAsync());

        // A rename breaks backward compatibility: refused, and the registry keeps its two versions.
        var error = await Assert.ThrowsAsync<SchemaRegistrationException>(() => StartAsync(o => o.EventTypes.Register<ParcelSentRenamed>("parcel.sent", 3)));
        Assert.Contains("/properties/grams", Assert.Single(error.Problems), StringComparison.Ordinal);
        Assert.Equal(2, (await VersionsAsync()).Count);
    }

    [Fact]
    public async Task hosts_starting_at_once_register_each_version_once()
    {
        var hosts = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => StartAsync(o => o.EventTypes.Register<ParcelSent>("parcel.sent")))));
        foreach (var host in hosts)
        {
            await host.StopAsync();
            host.Dispose();
        }

        Assert.Equal([("parcel.sent", 1)], await VersionsAsync());
    }
}
