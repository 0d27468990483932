using System.Text;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Sqlite.Tests;

public sealed record ParcelSent(string Id, int Grams);

public sealed record ParcelSentV2(string Id, int Grams, string? Carrier = null);

public sealed record ParcelSentRenamed(string Id, int Weight);

/// <summary>
/// The schema registry on the SQLite backend, as an application hosts it: versions registered in the file survive
/// restarts and bind the next deployment, and payloads refused by their schema leave nothing in the file.
/// </summary>
public sealed class SchemaRegistryHostingTests : IDisposable
{
    private readonly TempDatabase _database = new();

    public void Dispose() => _database.Dispose();

    private async Task<IHost> StartAsync(Action<CairnOptions> configure, Action<CairnBuilder>? builder = null)
    {
        var host = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var cairn = host.Services.AddCairn(o =>
        {
            o.UseSqlite(_database.ConnectionString);
            configure(o);
        });
        builder?.Invoke(cairn);
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

    [Fact]
    public async Task versions_registered_in_the_file_bind_every_later_start()
    {
        using (var first = await StartAsync(o => o.EventTypes.Register<ParcelSent>("parcel.sent")))
        {
            await first.StopAsync();
        }

        using (var second = await StartAsync(o => o.EventTypes.Register<ParcelSentV2>("parcel.sent", 2)))
        {
            await second.StopAsync();
        }

        Assert.Equal([("parcel.sent", 1L), ("parcel.sent", 2L)], _database.Query("SELECT event_type, version FROM cairn_schema_versions ORDER BY version", r => (r.GetString(0), r.GetInt64(1))));
        Assert.Equal(["Backward"], _database.Query("SELECT compatibility FROM cairn_schema_types", r => r.GetString(0)));

        // A rename breaks backward compatibility: refused, and the file keeps its two versions.
        var error = await Assert.ThrowsAsync<SchemaRegistrationException>(() => StartAsync(o => o.EventTypes.Register<ParcelSentRenamed>("parcel.sent", 3)));
        Assert.Contains("/properties/grams", Assert.Single(error.Problems), StringComparison.Ordinal);
        Assert.Equal(2, _database.Query("SELECT COUNT(*) FROM cairn_schema_versions", r => r.GetInt64(0)).Single());
    }

    [Fact]
    public async Task an_invalid_event_or_message_is_refused_and_leaves_nothing_in_the_file()
    {
        using var host = await StartAsync(
            o =>
            {
                o.EventTypes.Register<ParcelSent>("parcel.sent");
                o.Schemas.DefaultValidation = SchemaValidationMode.Reject;
            },
            cairn => cairn.AddQueue("parcels"));
        var store = host.Services.GetRequiredService<IEventStore>();
        var sender = host.Services.GetRequiredService<IMessageSender>();
        var invalid = Encoding.UTF8.GetBytes("""{"id": "p-1", "grams": true}""");

        var append = await Assert.ThrowsAsync<SchemaValidationException>(() => store.AppendToStreamAsync("parcel-1", ExpectedVersion.NoStream, [new EventData("parcel.sent", invalid)]));
        var send = await Assert.ThrowsAsync<SchemaValidationException>(() => sender.SendAsync("parcels", new OutgoingMessage("parcel.sent", invalid)));
        var valid = host.Services.GetRequiredService<EventSerializer>().ToEventData(new ParcelSent("p-2", 300));
        await store.AppendToStreamAsync("parcel-2", ExpectedVersion.NoStream, [valid]);

        Assert.Equal("/grams", Assert.Single(append.Violations).Path);
        Assert.Equal("type", Assert.Single(send.Violations).Rule);
        Assert.Equal(["parcel-2"], _database.Query("SELECT s.name FROM cairn_events e JOIN cairn_streams s ON s.id = e.stream_id", r => r.GetString(0)));
        Assert.Equal(0, (await host.Services.GetRequiredService<IMessagingAdmin>().GetStatsAsync("parcels", default)).Visible);
        await host.StopAsync();
    }
}
