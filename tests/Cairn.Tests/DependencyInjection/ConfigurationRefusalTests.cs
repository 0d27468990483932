using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Projections;
using Cairn.Schemas;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests;

/// <summary>
/// Settings that contradict each other are refused when they are added or when the host starts, naming them, rather
/// than found out at the first message that meets them (or never).
/// </summary>
public sealed class ConfigurationRefusalTests
{
    private static HostApplicationBuilder Builder() => Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

    [EventType("refusal.failed")]
    public sealed record Failed(string Id);

    private sealed class AlwaysFailing : Projection
    {
        public AlwaysFailing()
            : base("refusal-always-failing")
        {
            On<Failed>((_, _) => throw new InvalidOperationException("the handler always fails"));
        }
    }

    private static CairnBuilder WithCheckoutQueues(IServiceCollection services) =>
        services.AddCairn(o =>
            {
                o.UseInMemory();
                CheckoutWorkflow.Register(o.EventTypes);
            })
            .AddQueue(CheckoutWorkflow.Inventory)
            .AddQueue(CheckoutWorkflow.Payments)
            .AddQueue(CheckoutWorkflow.Shipping);

    // The coordinator takes the replies, timers and start messages arriving on its queue: a consumer beside it would
    // take and settle some of them, and the instances waiting for them would wait for ever.
    [Fact]
    public void a_consumer_of_a_workflows_own_queue_is_refused_whichever_is_added_first()
    {
        var afterWorkflow = Assert.Throws<ArgumentException>(() =>
            WithCheckoutQueues(new ServiceCollection()).AddWorkflow(new CheckoutWorkflow())
                .AddConsumer("workflow-checkout", (_, _) => ValueTask.CompletedTask, c => c with { Name = "checkout-listener" }));
        var beforeWorkflow = Assert.Throws<ArgumentException>(() =>
            WithCheckoutQueues(new ServiceCollection()).AddQueue("workflow-checkout")
                .AddConsumer("workflow-checkout", (_, _) => ValueTask.CompletedTask, c => c with { Name = "checkout-listener" })
                .AddWorkflow(new CheckoutWorkflow()));

        foreach (var refused in new[] { afterWorkflow, beforeWorkflow })
        {
            Assert.Contains("'checkout-listener'", refused.Message, StringComparison.Ordinal);
            Assert.Contains("'workflow-checkout'", refused.Message, StringComparison.Ordinal);
            Assert.Contains("workflow 'checkout'", refused.Message, StringComparison.Ordinal);
        }
    }

    // A message given back for longer than its queue keeps messages expires unreceived: neither handled again nor
    // dead-lettered. Here the first delay alone (1 h) is past the retention (10 min).
    [Fact]
    public async Task a_consumer_whose_retries_reach_its_queues_retention_stops_the_host_start_naming_both()
    {
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("short-lived", q => q with { Retention = TimeSpan.FromMinutes(10) })
            .AddConsumer(
                "short-lived",
                (_, _) => throw new InvalidOperationException("fails"),
                c => c with { Retry = new RetryPolicy { InitialDelay = TimeSpan.FromHours(1), MaxDelay = TimeSpan.FromHours(1) } });
        using var host = builder.Build();

        var refused = await Assert.ThrowsAsync<InvalidMessageException>(() => host.StartAsync().Bounded());

        Assert.Contains("consumer 'short-lived'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("retention of queue 'short-lived' (00:10:00)", refused.Message, StringComparison.Ordinal);
    }

    // The delays add up: five receives of a queue with the default policy wait 1 + 2 + 4 + 8 = 15 s before the last,
    // so a 15 s retention loses a message that keeps failing, and a 16 s one dead-letters it.
    [Theory]
    [InlineData(15, false)]
    [InlineData(16, true)]
    public async Task the_delays_before_the_last_receive_are_added_up(int retentionSeconds, bool starts)
    {
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("brief", q => q with { Retention = TimeSpan.FromSeconds(retentionSeconds), MaxReceiveCount = 5 })
            .AddConsumer("brief", (_, _) => ValueTask.CompletedTask);
        using var host = builder.Build();

        var refused = await Record.ExceptionAsync(() => host.StartAsync().Bounded());

        if (starts)
        {
            Assert.Null(refused);
            await host.StopAsync().Bounded();
        }
        else
        {
            Assert.Contains("00:00:15 in all", Assert.IsType<InvalidMessageException>(refused).Message, StringComparison.Ordinal);
        }
    }

    // Each retry is waited out with a timer, which waits at most about 49 days: a longer delay failed inside the
    // runner, and the projection looped in Faulted with the timer's error, its failure policy never applied.
    [Fact]
    public void a_projection_retry_delay_no_timer_can_wait_is_refused_when_it_is_added()
    {
        var cairn = new ServiceCollection().AddCairn(o => o.UseInMemory());

        var refused = Assert.Throws<ArgumentOutOfRangeException>(() =>
            cairn.AddProjection(new AlwaysFailing { RetryDelay = TimeSpan.FromDays(60), OnFailure = ProjectionFailurePolicy.SkipAndDeadLetter }));

        Assert.Equal(nameof(Projection.RetryDelay), refused.ParamName);
        cairn.AddProjection(new AlwaysFailing { RetryDelay = TimeSpan.FromDays(30) });
    }

    // Modes apply when this service's classes register: one set for a type with no class (a misspelt name) would
    // leave the real type at the default mode, unnoticed.
    [Fact]
    public async Task a_compatibility_mode_for_a_type_with_no_class_stops_the_host_start()
    {
        var builder = Builder();
        builder.Services.AddCairn(o =>
        {
            o.UseInMemory();
            o.EventTypes.Register<Failed>();
            o.Schemas.Compatibility("refusal.faild", CompatibilityMode.FullTransitive);
            o.Schemas.Compatibility("refusal.failed", CompatibilityMode.FullTransitive);
        });
        using var host = builder.Build();

        var refused = await Assert.ThrowsAsync<SchemaRegistrationException>(() => host.StartAsync().Bounded());

        Assert.Contains("'refusal.faild'", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("'refusal.failed'", refused.Message, StringComparison.Ordinal);
    }
}
