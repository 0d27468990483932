using System.Text;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.Filtering;
using Cairn.Messaging.InMemory;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Wait = Cairn.Conformance.Support.Wait;

namespace Cairn.Tests.DependencyInjection;

public sealed class AddCairnMessagingTests
{
    private static HostApplicationBuilder Builder() => Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

    [EventType("account.deposited")]
    public sealed record Deposited(decimal Amount);

    [EventType("receipt.requested")]
    public sealed record ReceiptRequested(string Account, decimal Amount);

    public sealed class DepositHandler : IMessageHandler<Deposited>
    {
        public ValueTask HandleAsync(Deposited message, MessageHandlerContext context, CancellationToken cancellationToken)
        {
            context.Send("receipts", new ReceiptRequested(context.Message.Subject!, message.Amount));
            context.AppendEvents("receipt-" + context.Message.Subject!, ExpectedVersion.NoStream, new ReceiptRequested(context.Message.Subject!, message.Amount));
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task the_broker_is_instrumented_and_shared_by_its_roles()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        await using var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        var broker = Assert.IsType<InstrumentedMessageBroker>(provider.GetRequiredService<IMessageBroker>());
        Assert.IsType<InMemoryMessageBroker>(broker.Inner);
        Assert.Same(broker, provider.GetRequiredService<IMessageSender>());
        Assert.Same(broker, provider.GetRequiredService<IMessageReceiver>());
        Assert.Same(broker, provider.GetRequiredService<IDeadLetterQueue>());
        Assert.Same(broker, provider.GetRequiredService<IMessagingAdmin>());
    }

    [Fact]
    public async Task a_host_routes_events_to_a_topic_and_its_consumers_chain_the_work()
    {
        var builder = Builder();
        var receipts = new List<(string Account, decimal Amount, string? Causation)>();
        builder.Services.AddCairn(o =>
            {
                o.UseInMemory();
                o.EventTypes.Register<Deposited>().Register<ReceiptRequested>();
            })
            .AddQueue("deposits")
            .AddQueue("receipts", q => q with { MaxReceiveCount = 3 })
            .AddTopic("accounts")
            .AddTopicSubscription("accounts", "big-deposits", "deposits", """{"type":["account.deposited"],"data":{"amount":[{"numeric":[">=",100]}]}}""")
            .AddEventRoute("accounts-out", EventFilter.ForCategory("account"), "accounts")
            .AddConsumer<Deposited, DepositHandler>("deposits", o => o with { Concurrency = 2 })
            .AddConsumer("receipts", (context, _) =>
            {
                var receipt = context.Read<ReceiptRequested>();
                lock (receipts)
                {
                    receipts.Add((receipt.Account, receipt.Amount, context.Message.CausationId));
                }

                return ValueTask.CompletedTask;
            });

        using var host = builder.Build();
        await host.StartAsync();
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var small = serializer.ToEventData(new Deposited(10));
        var big = serializer.ToEventData(new Deposited(250));
        await store.AppendToStreamAsync("account-7", ExpectedVersion.NoStream, [small, big]);

        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        // Both counted: the deposit's consumer counts its handling once its commit is in, which also made the receipt
        // receivable, so the receipt can be handled first.
        await Wait.UntilAsync(() => monitor.Find("receipts")?.Status.Handled == 1 && monitor.Find("deposits")?.Status.Handled == 1, "the deposit and the receipt are handled");
        var receipt = Assert.Single(receipts);
        Assert.Equal("account-7", receipt.Account);
        Assert.Equal(250m, receipt.Amount);

        // The receipt was caused by the routed deposit, whose message keeps the event's id.
        Assert.Equal(big.Id.ToString(), receipt.Causation);
        var appended = await store.ReadStreamAsync("receipt-account-7").SingleAsync();
        Assert.Equal("receipt.requested", appended.Type);
        Assert.Equal(big.Id.ToString(), appended.CausationId);
        Assert.Equal(["deposits", "receipts"], monitor.Statuses.Select(s => s.Name).Order());
        var routes = host.Services.GetRequiredService<RouteMonitor>();
        await routes.Find("accounts-out")!.WaitForPositionAsync(await store.GetHeadPositionAsync(default), default).WaitAsync(Wait.Timeout);
        var route = Assert.Single(routes.Statuses);
        Assert.Equal(("accounts-out", new TopicName("accounts"), true, 0L), (route.Name, route.Topic, route.Running, route.Failures));
        Assert.Equal(await store.GetHeadPositionAsync(default), route.Position);
        await host.StopAsync();
        Assert.All(monitor.Statuses, s => Assert.False(s.Running));
    }

    [Fact]
    public void bad_messaging_registrations_fail_at_once_naming_the_fault()
    {
        var services = new ServiceCollection();
        var cairn = services.AddCairn(o => o.UseInMemory());
        var rule = Assert.Throws<InvalidFilterRuleException>(() => cairn.AddTopicSubscription("t", "s", "q", """{"data":{"x":[]}}"""));
        Assert.Contains("data.x", rule.Path, StringComparison.Ordinal);
        Assert.Contains("Concurrency", Assert.Throws<InvalidMessageException>(() => cairn.AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { Concurrency = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("Prefetch", Assert.Throws<InvalidMessageException>(() => cairn.AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { Concurrency = 4, Prefetch = 2 })).Message, StringComparison.Ordinal);
        Assert.Contains("Jitter", Assert.Throws<InvalidMessageException>(() => cairn.AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { Retry = new RetryPolicy { Jitter = 2 } })).Message, StringComparison.Ordinal);
        Assert.Throws<InvalidMessageException>(() => cairn.AddQueue("q", q => q with { MaxReceiveCount = 0 }));
        Assert.Throws<InvalidMessagingNameException>(() => cairn.AddQueue("bad name"));
        Assert.Throws<InvalidMessagingNameException>(() => cairn.AddEventRoute("bad name", EventFilter.All, "t"));
        Assert.Contains("InboxRetention", Assert.Throws<InvalidMessageException>(() => cairn.AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { InboxRetention = TimeSpan.FromDays(3651) })).Message, StringComparison.Ordinal);
        Assert.Contains("Retry", Assert.Throws<InvalidMessageException>(() => cairn.AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { Retry = null! })).Message, StringComparison.Ordinal);
    }

    // A queue or a subscription added twice in one application (two modules' set-up code): the same declaration is
    // taken once, another under the same name is refused, where the later one silently replaced the earlier.
    [Fact]
    public async Task a_queue_or_subscription_added_twice_is_declared_once_and_one_added_again_with_other_settings_is_refused()
    {
        var builder = Builder();
        var cairn = builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("q", q => q with { MaxReceiveCount = 3 })
            .AddQueue("q", q => q with { MaxReceiveCount = 3 })
            .AddQueue("other")
            .AddTopic("t")
            .AddTopic("u")
            .AddTopicSubscription("t", "s", "q", """{"type":["a"]}""")
            .AddTopicSubscription("t", "s", "q", """{"type":["a"]}""")
            // The same rule written otherwise (spaced, its fields in another order) is the same subscription.
            .AddTopicSubscription("t", "s", "q", """{ "type" : [ "a" ] }""")
            .AddTopic("v")
            .AddTopicSubscription("v", "s", "q", """{"type":["a"],"source":["x"]}""")
            .AddTopicSubscription("v", "s", "q", """{"source":["x"],"type":["a"]}""")
            .AddTopicSubscription("u", "s", "other");

        var queue = Assert.Throws<InvalidOperationException>(() => cairn.AddQueue("q", q => q with { MaxReceiveCount = 4 }));
        Assert.Contains("'q'", queue.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => cairn.AddTopicSubscription("t", "s", "other", """{"type":["a"]}"""));
        var rule = Assert.Throws<InvalidOperationException>(() => cairn.AddTopicSubscription("t", "s", "q", """{"type":["b"]}"""));
        Assert.Contains("'s'", rule.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => cairn.AddTopicSubscription("t", "s", "q"));

        using var host = builder.Build();
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        Assert.Equal(3, (await broker.GetQueueAsync("q", default))!.MaxReceiveCount);
        var subscription = Assert.Single(await broker.ListSubscriptionsAsync("t", default));
        Assert.Equal(("s", new QueueName("q"), """{"type":["a"]}"""), (subscription.Name, subscription.Queue, subscription.Rule?.ToString()));
        await host.StopAsync();
    }

    [Fact]
    public async Task a_consumer_of_an_undeclared_queue_stops_the_host_start()
    {
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory()).AddConsumer("nowhere", (_, _) => ValueTask.CompletedTask);
        using var host = builder.Build();
        var error = await Assert.ThrowsAsync<QueueNotFoundException>(() => host.StartAsync());
        Assert.Equal(new QueueName("nowhere"), error.Queue);
    }

    [Fact]
    public async Task two_named_consumers_of_one_queue_run_side_by_side()
    {
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("q")
            .AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { Name = "first" })
            .AddConsumer("q", (_, _) => ValueTask.CompletedTask, o => o with { Name = "second" });
        using var host = builder.Build();
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        await broker.SendBatchAsync("q", Enumerable.Range(0, 20).Select(_ => new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}"))));
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Statuses.Sum(s => s.Handled) == 20, "every message is handled once");
        Assert.Equal(["first", "second"], monitor.Statuses.Select(s => s.Name).Order());
        Assert.Throws<InvalidMessagingNameException>(() => new ConsumerOptions("q") { Name = "bad name" });
        await host.StopAsync();
    }

    [Fact]
    public async Task a_route_to_an_undeclared_topic_reports_its_failure_and_keeps_its_place()
    {
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory()).AddEventRoute("lost", EventFilter.ForCategory("order"), "nowhere");
        using var host = builder.Build();
        await host.StartAsync();
        await host.Services.GetRequiredService<IEventStore>().AppendToStreamAsync("order-1", ExpectedVersion.NoStream, [new EventData("order.placed", Encoding.UTF8.GetBytes("{}"))]);
        var routes = host.Services.GetRequiredService<RouteMonitor>();
        await Wait.UntilAsync(() => routes.Statuses.Single().Failures >= 1, "the route reports its failure");
        var status = routes.Statuses.Single();
        Assert.Contains(nameof(TopicNotFoundException), status.LastError, StringComparison.Ordinal);
        Assert.True(status.Running);
        Assert.Equal(Cairn.EventStore.GlobalPosition.Start, status.Position);
        await host.StopAsync();
    }

    [Fact]
    public async Task two_consumers_with_one_name_are_refused()
    {
        var builder = Builder();
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("q")
            .AddConsumer("q", (_, _) => ValueTask.CompletedTask)
            .AddConsumer("q", (_, _) => ValueTask.CompletedTask);
        using var host = builder.Build();
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());
        Assert.Contains("inbox key", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_poison_message_reaches_the_dead_letter_queue_and_a_redrive_brings_it_back()
    {
        var builder = Builder();
        var broken = true;
        builder.Services.AddCairn(o => o.UseInMemory())
            .AddQueue("work", q => q with { MaxReceiveCount = 2 })
            .AddConsumer(
                "work",
                (_, _) => Volatile.Read(ref broken) ? throw new InvalidOperationException("not yet") : ValueTask.CompletedTask,
                o => o with { Retry = new RetryPolicy { ImmediateRetries = 0, InitialDelay = TimeSpan.Zero, MaxDelay = TimeSpan.Zero } });
        using var host = builder.Build();
        await host.StartAsync();
        var broker = host.Services.GetRequiredService<IMessageBroker>();
        await broker.SendAsync("work", new OutgoingMessage("job", Encoding.UTF8.GetBytes("{}")));
        await Wait.UntilAsync(async () => (await broker.GetStatsAsync("work", default)).DeadLettered == 1, "the message is dead-lettered");
        var letter = Assert.Single(await broker.ListDeadLettersAsync("work", 0, 10, default));
        Assert.Equal(2, letter.Attempts);
        Assert.Equal(typeof(InvalidOperationException).FullName, letter.Failure!.Type);

        Volatile.Write(ref broken, false);
        Assert.Equal(1, await broker.RedriveAsync("work", new RedriveRequest(), default));
        var monitor = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => monitor.Find("work")!.Status.Handled == 1, "the redriven message is handled");
        await host.StopAsync();
    }
}
