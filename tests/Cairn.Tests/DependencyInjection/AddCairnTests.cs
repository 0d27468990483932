using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Cairn.Tests.DependencyInjection;

public sealed class AddCairnTests
{
    private static HostApplicationBuilder Builder() => Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

    [Fact]
    public async Task the_in_memory_backend_resolves_an_instrumented_event_store_and_its_companions()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        await using var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });

        var store = provider.GetRequiredService<IEventStore>();
        var instrumented = Assert.IsType<InstrumentedEventStore>(store);
        Assert.IsType<InMemoryEventStore>(instrumented.Inner);
        Assert.Same(store, provider.GetRequiredService<IEventReader>());
        Assert.Same(store, provider.GetRequiredService<IEventWriter>());
        Assert.Same(store, provider.GetRequiredService<IEventStore>());
        Assert.IsType<InMemoryCheckpointStore>(provider.GetRequiredService<ICheckpointStore>());
        Assert.Same(provider.GetRequiredService<IOptions<CairnOptions>>().Value.EventTypes, provider.GetRequiredService<EventTypeRegistry>());
        Assert.Same(provider.GetRequiredService<EventTypeRegistry>(), provider.GetRequiredService<EventSerializer>().Registry);
        Assert.Equal("in-memory", provider.GetRequiredService<IOptions<CairnOptions>>().Value.BackendName);

        var result = await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [TestEvents.Numbered(1)]);
        Assert.Equal(result.LastPosition, await store.GetHeadPositionAsync(default));
    }

    [Fact]
    public async Task the_source_limit_event_types_and_clock_configured_reach_the_store()
    {
        var clock = new ManualTimeProvider();
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(clock);
        services.AddCairn(o =>
        {
            o.UseInMemory();
            o.Source = "urn:svc:billing";
            o.MaxEventSize = 64;
            o.EventTypes.Register<Deposited>();
        });
        await using var provider = services.BuildServiceProvider();
        var store = provider.GetRequiredService<IEventStore>();
        var serializer = provider.GetRequiredService<EventSerializer>();

        await store.AppendToStreamAsync("account-1", ExpectedVersion.NoStream, [serializer.ToEventData(new Deposited(3m))]);
        var recorded = await store.ReadStreamAsync("account-1").SingleAsync();

        Assert.Equal("urn:svc:billing", recorded.Source);
        Assert.Equal(clock.GetUtcNow(), recorded.Time);
        Assert.Equal(new Deposited(3m), serializer.Deserialize(recorded));
        await Assert.ThrowsAsync<EventTooLargeException>(() =>
            store.AppendToStreamAsync("account-1", ExpectedVersion.Any, [new EventData("blob", new byte[65]) { ContentType = "application/octet-stream" }]));
    }

    [Fact]
    public async Task a_missing_backend_fails_validation_when_the_host_starts()
    {
        var builder = Builder();
        builder.Services.AddCairn(_ => { });
        using var host = builder.Build();

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(ex.Failures, f => f.Contains("No backend is configured", StringComparison.Ordinal));
    }

    [Fact]
    public async Task impossible_limits_fail_validation_when_the_host_starts()
    {
        var builder = Builder();
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory();
            o.MaxEventSize = 0;
            o.Source = " ";
        });
        using var host = builder.Build();

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(ex.Failures, f => f.Contains("MaxEventSize", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("Source", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("blank")]
    [InlineData("control-character")]
    [InlineData("lone-surrogate")]
    [InlineData("over-long")]
    [InlineData("not-a-uri-reference")]
    public void an_event_source_no_event_could_carry_is_refused_by_the_store_options(string @case)
    {
        var source = @case switch
        {
            "blank" => " ",
            "control-character" => "urn:svc\u0001",
            "lone-surrogate" => "urn:svc\ud800",
            // CloudEvents' source is a URI reference (RFC 3986), which holds no space.
            "not-a-uri-reference" => "http://exa mple.com/orders",
            _ => "urn:" + new string('s', 2045),
        };

        var ex = Assert.Throws<ArgumentException>(() => new EventStoreOptions { Source = source }.Validate());
        Assert.Equal(nameof(EventStoreOptions.Source), ex.ParamName);
        new EventStoreOptions { Source = "urn:" + new string('s', 2044) }.Validate();
        new EventStoreOptions { Source = "/orders/eu-1" }.Validate();
        new EventStoreOptions { Source = "https://example.com/orders?region=eu#1" }.Validate();
    }

    [Fact]
    public void two_different_backends_are_refused()
    {
        var options = new CairnOptions().UseBackend("custom", (_, o) => new InMemoryEventStore(o), _ => new InMemoryCheckpointStore());
        Assert.Throws<BackendConflictException>(() => options.UseInMemory());
        Assert.Equal("in-memory", new CairnOptions().UseInMemory().UseInMemory().BackendName);
    }

    // A module's own AddCairn naming the same backend with another file or database replaced the first silently: the
    // application's events went to the module's store, and nothing said so.
    [Fact]
    public void the_same_backend_configured_again_with_other_settings_is_refused_naming_both()
    {
        static CairnOptions Use(CairnOptions options, string settings) =>
            options.UseBackend("custom", (_, o) => new InMemoryEventStore(o), _ => new InMemoryCheckpointStore(), settings);

        Assert.Equal("app", Use(Use(new CairnOptions(), "app"), "app").BackendSettings);
        var refused = Assert.Throws<BackendConflictException>(() => Use(Use(new CairnOptions(), "app"), "module"));
        Assert.Equal(("custom", "app", "custom", "module"), (refused.Backend, refused.Settings, refused.OtherBackend, refused.OtherSettings));
        Assert.Contains("(app)", refused.Message, StringComparison.Ordinal);
        Assert.Contains("(module)", refused.Message, StringComparison.Ordinal);

        var services = new ServiceCollection();
        services.AddCairn(o => Use(o, "app"));
        services.AddCairn(o => Use(o, "module"));
        using var provider = services.BuildServiceProvider();
        Assert.Throws<BackendConflictException>(() => provider.GetRequiredService<IOptions<CairnOptions>>().Value);
    }

    // The backend's store was disposed only by the IEventStore registration, so a container that never resolved
    // IEventStore (queues and consumers only) left it open; and disposed through two registrations, it would close twice.
    [Fact]
    public async Task the_backends_store_is_disposed_once_after_its_parts_whichever_part_opened_it()
    {
        foreach (var resolveEventStore in new[] { false, true })
        {
            var disposals = new List<string>();
            var services = new ServiceCollection();
            services.AddCairn(o => o.UseBackend(
                "recording",
                (_, options) => new DisposalRecordingStore(new InMemoryEventStore(options), disposals),
                sp => new DisposalRecordingCheckpoints(sp.GetBackendStore<DisposalRecordingStore>(), disposals)));
            await using (var provider = services.BuildServiceProvider())
            {
                provider.GetRequiredService<ICheckpointStore>();
                if (resolveEventStore)
                {
                    provider.GetRequiredService<IEventStore>();
                }
            }

            Assert.Equal(["checkpoints", "store"], disposals);
        }
    }

    private sealed class DisposalRecordingStore(IEventStore inner, List<string> disposals) : DelegatingEventStore(inner), IDisposable
    {
        public void Dispose() => disposals.Add("store");
    }

    private sealed class DisposalRecordingCheckpoints(DisposalRecordingStore store, List<string> disposals) : ICheckpointStore, IDisposable
    {
        private readonly InMemoryCheckpointStore _inner = new();

        public DisposalRecordingStore Store { get; } = store;

        public ValueTask<GlobalPosition?> GetAsync(string key, CancellationToken cancellationToken) => _inner.GetAsync(key, cancellationToken);

        public ValueTask SetAsync(string key, GlobalPosition position, CancellationToken cancellationToken) => _inner.SetAsync(key, position, cancellationToken);

        public void Dispose() => disposals.Add("checkpoints");
    }

    // docs/rabbitmq.md puts a transport beside UseInMemory with correlation traces; the in-memory trace reader unwrapped
    // only the instrumented broker, so behind any transport resolving the tracer failed.
    [Fact]
    public async Task the_in_memory_backend_traces_correlations_behind_a_transport()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory().UseTransport("wrapping", (_, inner) => new DelegatingMessageBroker(inner)));
        await using var provider = services.BuildServiceProvider();
        var broker = provider.GetRequiredService<IMessageBroker>();
        await broker.DeclareQueueAsync(new QueueDefinition("traced"), default);
        var sent = new OutgoingMessage("test.traced", "{}"u8.ToArray());
        await broker.SendAsync("traced", sent);

        var trace = await provider.GetRequiredService<CorrelationTracer>().TraceAsync(sent.Id.ToString(), default).Bounded();

        Assert.Single(trace.Timeline);
    }

    [Fact]
    public async Task a_hosted_subscription_handles_events_while_the_host_runs_and_stores_its_checkpoint_on_stop()
    {
        var builder = Builder();
        var handled = new Recorder();
        var fourth = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddSubscription("audit", async (sp, e, ct) =>
            {
                Assert.NotNull(sp.GetRequiredService<IEventStore>());
                await handled.HandleAsync(e, ct);
                if (handled.Events.Count == 4)
                {
                    fourth.TrySetResult();
                }
            });
        using var host = builder.Build();
        var store = host.Services.GetRequiredService<IEventStore>();
        await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(2));

        await host.StartAsync();
        var live = await store.AppendToStreamAsync("order-1", ExpectedVersion.Exactly(1), TestEvents.Many(2, first: 2));
        await fourth.Task.Bounded();
        var monitor = host.Services.GetRequiredService<SubscriptionMonitor>();
        var subscription = monitor.Find("audit");
        Assert.NotNull(subscription);
        await subscription.WaitForPositionAsync(live.LastPosition, default).Bounded();
        Assert.Equal("audit", Assert.Single(monitor.Statuses).Name);
        await host.StopAsync();

        Assert.Equal([0, 1, 2, 3], handled.Events.Select(TestEvents.NumberOf));
        Assert.Equal(live.LastPosition, await host.Services.GetRequiredService<ICheckpointStore>().GetAsync("audit", default));
        Assert.Equal(SubscriptionState.Stopped, subscription.Status.State);
    }

    [Fact]
    public async Task a_hosted_subscription_handler_class_is_made_from_the_container_with_its_filter()
    {
        var builder = Builder();
        var sink = new Recorder();
        builder.Services.AddSingleton(sink);
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddSubscription<RecordingHandler>("orders", s => s.Filter(EventFilter.ForCategory("order")).Configure(o => o with { BufferSize = 4 }));
        using var host = builder.Build();
        var store = host.Services.GetRequiredService<IEventStore>();

        await host.StartAsync();
        await store.AppendToStreamAsync("invoice-1", ExpectedVersion.NoStream, TestEvents.Many(1));
        var order = await store.AppendToStreamAsync("order-1", ExpectedVersion.NoStream, TestEvents.Many(1, first: 1));
        var subscription = host.Services.GetRequiredService<SubscriptionMonitor>().Find("orders")!;
        await subscription.WaitForPositionAsync(order.LastPosition, default).Bounded();
        await host.StopAsync();

        Assert.Equal([order.LastPosition], sink.Positions);
        Assert.Equal(4, subscription.Options.BufferSize);
    }

    [Fact]
    public void two_hosted_subscriptions_with_one_name_are_refused_where_the_second_is_added()
    {
        var cairn = Builder().Services.AddCairn(o => o.UseInMemory())
            .AddSubscription("twice", (_, _, _) => ValueTask.CompletedTask);

        var refused = Assert.Throws<ArgumentException>(() => cairn.AddSubscription<NoHandler>("twice"));
        Assert.Contains("checkpoint 'twice'", refused.Message, StringComparison.Ordinal);
    }

    private sealed class NoHandler : ISubscriptionHandler
    {
        public ValueTask HandleAsync(RecordedEvent recorded, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }

    [Fact]
    public void an_invalid_subscription_is_refused_when_it_is_added()
    {
        var cairn = new ServiceCollection().AddCairn(o => o.UseInMemory());
        Assert.Throws<ArgumentException>(() => cairn.AddSubscription("", (_, _, _) => ValueTask.CompletedTask));
        Assert.Throws<ArgumentOutOfRangeException>(() => cairn.AddSubscription("ok", (_, _, _) => ValueTask.CompletedTask, s => s.Configure(o => o with { BufferSize = 0 })));
    }

    private sealed class RecordingHandler(Recorder sink) : ISubscriptionHandler
    {
        public ValueTask HandleAsync(RecordedEvent recorded, CancellationToken cancellationToken) => sink.HandleAsync(recorded, cancellationToken);
    }
}
