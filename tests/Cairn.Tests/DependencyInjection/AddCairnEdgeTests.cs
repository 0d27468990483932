using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Projections;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.DependencyInjection;

/// <summary>AddCairn and its builder at their edges: null delegates, values outside an enum, a container disposed synchronously.</summary>
public sealed class AddCairnEdgeTests
{
    private static HostApplicationBuilder Builder() => Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

    private sealed class Totals : Projection
    {
        public Totals()
            : base("totals")
        {
            Document<Total>(t => t.Customer);
            On<OrderPlaced>((ctx, e) => ctx.Documents.Store(new Total(e.Customer)));
        }
    }

    private sealed record Total(string Customer);

    // UseBackendPart and UseTransport refuse a null factory; UseBackend takes one, names the backend, and the options
    // then fail with "No backend is configured", which is not what is wrong.
    [Fact]
    public void a_backend_without_a_store_factory_is_refused_where_it_is_plugged_in()
    {
        var options = new CairnOptions();

        Assert.Throws<ArgumentNullException>(() => options.UseBackend("custom", null!, _ => new InMemoryCheckpointStore()));
    }

    // The backend's store and the transport's service are disposable both ways so that a container disposed
    // synchronously closes them; Cairn's hosted services are IAsyncDisposable only, and a synchronous Dispose of a
    // container that made them throws instead.
    [Fact]
    public async Task a_container_that_made_cairns_hosted_services_can_be_disposed_synchronously()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory().EventTypes.Register<OrderPlaced>())
            .AddQueue("jobs")
            .AddConsumer("jobs", (_, _) => ValueTask.CompletedTask)
            .AddSubscription("audit", (_, _, _) => ValueTask.CompletedTask)
            .AddProjection(new Totals());
        var provider = services.BuildServiceProvider();
        var hosted = provider.GetServices<IHostedService>().ToList();
        foreach (var service in hosted)
        {
            await service.StartAsync(default).Bounded();
        }

        foreach (var service in Enumerable.Reverse(hosted))
        {
            await service.StopAsync(default).Bounded();
        }

        var error = Record.Exception(provider.Dispose);

        Assert.Null(error);
    }

    // "Validated when the host starts; a missing backend or an impossible limit stops the start with a clear message"
    // (CairnOptions). A validation mode that is none of SchemaValidationMode's members is taken as Warn by the payload
    // check, so a typo'd cast silently turns Reject into Warn.
    [Fact]
    public async Task a_schema_validation_mode_outside_the_enum_stops_the_host_start_naming_it()
    {
        var builder = Builder();
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory().EventTypes.Register<OrderPlaced>();
            o.Schemas.DefaultValidation = (Cairn.Schemas.SchemaValidationMode)3;
        });
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("DefaultValidation", error.Message, StringComparison.Ordinal);
    }

    // A compatibility mode outside the enum is not checked with the options: the start fails later, in the schema
    // registration, with a raw ArgumentOutOfRangeException about a parameter "mode" that names no option.
    [Fact]
    public async Task a_compatibility_mode_outside_the_enum_stops_the_host_start_naming_it()
    {
        var builder = Builder();
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory().EventTypes.Register<OrderPlaced>();
            o.Schemas.DefaultCompatibility = (Cairn.Schemas.CompatibilityMode)42;
        });
        using var host = builder.Build();

        var error = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("DefaultCompatibility", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void a_per_type_mode_outside_the_enum_is_refused_where_it_is_set()
    {
        var options = new CairnOptions();

        Assert.Equal("mode", Assert.Throws<ArgumentOutOfRangeException>(() => options.Schemas.Validation("order.placed", (Cairn.Schemas.SchemaValidationMode)7)).ParamName);
        Assert.Equal("mode", Assert.Throws<ArgumentOutOfRangeException>(() => options.Schemas.Compatibility("order.placed", (Cairn.Schemas.CompatibilityMode)42)).ParamName);
    }
}
