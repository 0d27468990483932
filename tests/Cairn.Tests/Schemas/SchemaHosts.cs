using Cairn.DependencyInjection;
using Cairn.Schemas;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Schemas;

/// <summary>Hosts started over the in-memory backend with a schema registry the test keeps, as one deployment of a service.</summary>
internal static class SchemaHosts
{
    /// <summary>Builds and starts a host whose registry is <paramref name="registry"/>; a host that fails to start is disposed.</summary>
    public static async Task<IHost> StartAsync(ISchemaStore registry, Action<CairnOptions> configure)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory();
            o.UseBackendPart<ISchemaStore>(_ => registry);
            configure(o);
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync();
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }
}
