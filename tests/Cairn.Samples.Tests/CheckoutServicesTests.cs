using Cairn.DependencyInjection;
using Cairn.Domain;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Serialization;
using Cairn.Sqlite;
using Cairn.Workflows;
using Checkout;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Quickstart;

namespace Cairn.Samples.Tests;

/// <summary>
/// The checkout's services as a user would copy them: they refuse what they cannot do (stock they do not have) and
/// their undo sticks when the command it undoes arrives after it; and the README's quickstart runs as written.
/// </summary>
public sealed class CheckoutServicesTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "cairn-services-" + Guid.NewGuid().ToString("N"));

    public CheckoutServicesTests() => Directory.CreateDirectory(_directory);

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    // The sofa has 3 on hand: of two orders of 2, one is refused (the inventory replies StockUnavailable and the workflow
    // fails) and the stock never goes below zero. The inventory reserved without looking, so both completed and 3 - 4
    // sofas were left.
    [Fact]
    public async Task of_two_workflow_checkouts_for_the_last_sofas_one_fails_out_of_stock()
    {
        using var host = BuildCheckoutHost(Path.Combine(_directory, "oversell.db"), cairn => cairn.AddCheckoutWorkflow(), _ => { });
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<WorkflowClient>();
        var inventory = host.Services.GetRequiredService<Inventory>();

        await workflows.StartAsync(CheckoutWorkflow.WorkflowName, "order-a", new CheckoutState(new Order("order-a", "sofa", 2, 200m)));
        await workflows.StartAsync(CheckoutWorkflow.WorkflowName, "order-b", new CheckoutState(new Order("order-b", "sofa", 2, 200m)));
        var ended = new[] { await UntilFinishedAsync(workflows, "order-a"), await UntilFinishedAsync(workflows, "order-b") };
        await host.StopAsync();

        Assert.Single(ended, i => i.Status == WorkflowStatus.Completed);
        var refused = Assert.Single(ended, i => i.Status == WorkflowStatus.Failed);
        Assert.Equal("out of stock: 1 sofa on hand, 2 ordered", refused.Reason);
        Assert.Empty(refused.CompensatedSteps);
        Assert.Equal(1, inventory.OnHand("sofa"));
    }

    // The same in the choreography: the inventory publishes stock.unavailable and the orders service cancels the order.
    [Fact]
    public async Task of_two_choreographed_checkouts_for_the_last_sofas_one_is_cancelled_out_of_stock()
    {
        using var host = BuildCheckoutHost(Path.Combine(_directory, "oversell-choreography.db"), cairn => cairn.AddCheckoutChoreography(), _ => { });
        await host.StartAsync();
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var inventory = host.Services.GetRequiredService<Inventory>();

        foreach (var id in new[] { "order-a", "order-b" })
        {
            await store.AppendToStreamAsync(Choreography.OrderStream(id), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced(new Order(id, "sofa", 2, 200m)))], default);
        }

        var ends = new List<object>();
        foreach (var id in new[] { "order-a", "order-b" })
        {
            object? last = null;
            await UntilAsync(
                async () =>
                {
                    await foreach (var recorded in store.ReadStreamAsync(Choreography.OrderStream(id), ReadDirection.Backwards, null, 1, default))
                    {
                        last = serializer.Deserialize(recorded);
                    }

                    return last is OrderCompleted or OrderCancelled;
                },
                $"{id} ends");
            ends.Add(last!);
        }

        await host.StopAsync();

        Assert.Single(ends.OfType<OrderCompleted>());
        Assert.Equal("out of stock: 1 sofa on hand, 2 ordered", Assert.Single(ends.OfType<OrderCancelled>()).Reason);
        Assert.Equal(1, inventory.OnHand("sofa"));
    }

    // The payments service is down while the customer cancels: the cancel compensates the charge step (its outcome is
    // unknown) with a refund, handled at once (nothing charged yet); then the held-back charge is redelivered and
    // handled. A refund only forgot the charge, so the late charge took the money of a cancelled order for good (its
    // reply comes to an instance that is over). It is declined now: the order was refunded.
    [Fact]
    public async Task a_charge_delivered_after_the_refund_of_a_cancelled_checkout_leaves_the_card_uncharged()
    {
        var payments = new Payments();
        var gate = new Gate();
        using var host = BuildCheckoutHost(
            Path.Combine(_directory, "late-charge.db"),
            cairn => cairn.AddCheckoutWorkflow(),
            services => services.AddTransient(_ => gate.Fails(MessageContext.Current?.CausationId) ? throw new InvalidOperationException("the payment provider is down") : payments));
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<WorkflowClient>();
        var consumers = host.Services.GetRequiredService<ConsumerMonitor>();

        await workflows.StartAsync(CheckoutWorkflow.WorkflowName, "order-9", new CheckoutState(new Order("order-9", "lamp", 1, 80m)));
        var charge = await UntilStepStartedAsync(workflows, "order-9", "charge-payment");
        gate.BlockOnly(charge.MessageId!);

        await workflows.CancelAsync(CheckoutWorkflow.WorkflowName, "order-9", "customer changed their mind");
        var instance = await UntilFinishedAsync(workflows, "order-9");
        Assert.Equal(WorkflowStatus.Cancelled, instance.Status);
        Assert.Contains("charge-payment", instance.CompensatedSteps);
        await UntilAsync(() => consumers.Find("payments")!.Status.Handled >= 1, "the refund is handled");

        gate.Open();
        await UntilAsync(() => consumers.Find("payments")!.Status.Handled >= 2, "the late charge is handled");
        await host.StopAsync();

        Assert.False(payments.IsCharged("order-9"), "the cancelled order-9 is charged: the late charge took the money after its refund");
    }

    // The same on the first step: the held-back reservation, handled after its release was confirmed and the instance
    // ended Cancelled, held a sofa for an order that no longer exists, which nothing would ever release.
    [Fact]
    public async Task a_reservation_delivered_after_the_release_of_a_cancelled_checkout_holds_no_stock()
    {
        var inventory = new Inventory();
        var gate = new Gate();
        using var host = BuildCheckoutHost(
            Path.Combine(_directory, "late-reserve.db"),
            cairn => cairn.AddCheckoutWorkflow(),
            services => services.AddTransient(_ => gate.Fails(MessageContext.Current?.CausationId) ? throw new InvalidOperationException("the stock database is down") : inventory));
        await host.StartAsync();
        var workflows = host.Services.GetRequiredService<WorkflowClient>();
        var consumers = host.Services.GetRequiredService<ConsumerMonitor>();

        await workflows.StartAsync(CheckoutWorkflow.WorkflowName, "order-8", new CheckoutState(new Order("order-8", "sofa", 1, 300m)));
        var reserve = await UntilStepStartedAsync(workflows, "order-8", "reserve-stock");
        gate.BlockOnly(reserve.MessageId!);

        await workflows.CancelAsync(CheckoutWorkflow.WorkflowName, "order-8", "customer changed their mind");
        var instance = await UntilFinishedAsync(workflows, "order-8");
        Assert.Equal(WorkflowStatus.Cancelled, instance.Status);
        Assert.Contains("reserve-stock", instance.CompensatedSteps);

        gate.Open();
        await UntilAsync(() => consumers.Find("inventory")!.Status.Handled >= 2, "the late reservation is handled");
        await host.StopAsync();

        Assert.False(inventory.IsReserved("order-8"), "the cancelled order-8 holds a sofa");
        Assert.Equal(3, inventory.OnHand("sofa"));
    }

    // The README's quickstart, as written (its AddCairn chain and its last three lines): it deposited into an account
    // it never opened, and the decider refused its first command.
    [Fact]
    public async Task the_readme_quickstart_opens_an_account_and_deposits_into_it()
    {
        var readme = File.ReadAllText(Path.Combine(QuickstartSchemaTests.RepositoryRoot, "README.md"));
        var open = readme.IndexOf("await accounts.HandleAsync(StreamName.For(\"account\", \"alice\"), new OpenAccount(\"Alice\"));", StringComparison.Ordinal);
        var deposit = readme.IndexOf("await accounts.HandleAsync(StreamName.For(\"account\", \"alice\"), new Deposit(100m));", StringComparison.Ordinal);
        Assert.True(open > 0 && deposit > open, "the README's quickstart opens the account, then deposits");

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(TextWriter.Null); // what the sample's handlers print to; the snippet leaves the host's set-up out
        builder.Services.AddSingleton(new AuditLog(TextWriter.Null));
        var databasePath = Path.Combine(_directory, "cairn.db");
        builder.Services
            .AddCairn(o =>
            {
                o.UseSqlite($"Data Source={databasePath}");
                o.EventTypes.RegisterAssembly(typeof(QuickstartApp).Assembly);
            })
            .AddSubscription<AuditLog>("audit-log", s => s.Filter(EventFilter.ForCategory("account")))
            .AddTopic("accounts")
            .AddEventRoute("accounts-out", EventFilter.ForCategory("account"), "accounts")
            .AddQueue(LargeDepositHandler.Queue)
            .AddTopicSubscription("accounts", "large-deposits", LargeDepositHandler.Queue, """
                {"type": ["account.deposited"], "data": {"amount": [{"numeric": [">=", 1000]}]}}
                """)
            .AddConsumer<Deposited, LargeDepositHandler>(LargeDepositHandler.Queue);
        using var host = builder.Build();
        await host.StartAsync();
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        var accounts = new DeciderHandler<AccountCommand, Account, AccountEvent>(store, serializer, AccountDecider.Decider);
        await accounts.HandleAsync(StreamName.For("account", "alice"), new OpenAccount("Alice"));
        await accounts.HandleAsync(StreamName.For("account", "alice"), new Deposit(100m));
        var loaded = await accounts.LoadAsync(StreamName.For("account", "alice"));
        await host.StopAsync();

        Assert.Equal(100m, loaded.State.Balance);
    }

    /// <summary>
    /// Decides which handlings of a service fail: all of them at first (until the test knows the id of the command to
    /// hold back), then only the handling of that one command, then none.
    /// </summary>
    private sealed class Gate
    {
        private volatile bool _all = true;
        private volatile string? _only;

        public bool Fails(string? causationId) => _all || (_only is { } only && string.Equals(only, causationId, StringComparison.OrdinalIgnoreCase));

        public void BlockOnly(string messageId)
        {
            _only = messageId;
            _all = false;
        }

        public void Open()
        {
            _all = false;
            _only = null;
        }
    }

    /// <summary>The checkout sample on a SQLite file, as <c>CheckoutApp</c> builds it, with services of the test's.</summary>
    private static IHost BuildCheckoutHost(string databasePath, Func<CairnBuilder, CairnBuilder> style, Action<IServiceCollection> services)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<Inventory>().AddSingleton<Payments>().AddSingleton<Shipping>();
        services(builder.Services);
        style(builder.Services.AddCairn(o =>
        {
            o.UseSqlite($"Data Source={databasePath}");
            o.EventTypes.RegisterAssembly(typeof(CheckoutApp).Assembly);
        }));
        return builder.Build();
    }

    private static async Task<StepStarted> UntilStepStartedAsync(WorkflowClient workflows, string id, string step)
    {
        StepStarted? started = null;
        await UntilAsync(
            async () => (started = (await workflows.GetHistoryAsync(CheckoutWorkflow.WorkflowName, id)).Select(e => e.Event).OfType<StepStarted>().FirstOrDefault(s => s.Step == step)) is not null,
            $"{id} starts {step}");
        return started!;
    }

    private static async Task<WorkflowInstance> UntilFinishedAsync(WorkflowClient workflows, string id)
    {
        WorkflowInstance? instance = null;
        await UntilAsync(async () => (instance = await workflows.GetAsync(CheckoutWorkflow.WorkflowName, id)) is { IsFinished: true }, $"{id} ends");
        return instance!;
    }

    private static Task UntilAsync(Func<bool> condition, string what) => UntilAsync(() => Task.FromResult(condition()), what);

    private static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(60);
        while (!await condition())
        {
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }
}
