using System.Text.Json.Nodes;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.EventStore;
using Cairn.Messaging.Consumers;
using Cairn.Schemas;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Schemas.AsyncApi;

public sealed class AsyncApiDescriberTests
{
    [EventType("order.placed")]
    public sealed record OrderPlaced(string OrderId, decimal Total, string Country);

    [EventType("order.cancelled")]
    public sealed record OrderCancelled(string OrderId, string Reason);

    public sealed class DutchOrders : IMessageHandler<OrderPlaced>
    {
        public ValueTask HandleAsync(OrderPlaced message, MessageHandlerContext context, CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }

    /// <summary>A shop hosting the order topology and the checkout workflow, on the in-memory backend.</summary>
    private static IHost Shop()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
            {
                o.UseInMemory();
                o.Source = "urn:cairn:shop";
                o.EventTypes.Register<OrderPlaced>().Register<OrderCancelled>();
                CheckoutWorkflow.Register(o.EventTypes);
            })
            .AddTopic("orders")
            .AddEventRoute("orders-out", EventFilter.ForCategory("order"), "orders")
            .AddQueue("dutch-orders")
            .AddTopicSubscription("orders", "dutch", "dutch-orders", """{"type": ["order.placed"], "data": {"country": ["NL"]}}""")
            .AddQueue("cancellations")
            .AddTopicSubscription("orders", "cancellations", "cancellations", """{"type": [{"suffix": ".cancelled"}]}""")
            .AddConsumer<OrderPlaced, DutchOrders>("dutch-orders")
            .AddConsumer("cancellations", (_, _) => ValueTask.CompletedTask)
            .AddWorkflow(new CheckoutWorkflow(shippingTimeout: TimeSpan.FromSeconds(30)));
        return builder.Build();
    }

    private static List<string> Keys(JsonNode? map) => [.. ((JsonObject)map!).Select(p => p.Key)];

    private static List<string> Refs(JsonNode? array) => [.. ((JsonArray)array!).Select(r => (string)r!["$ref"]!)];

    [Fact]
    public async Task a_started_host_describes_its_own_topology_workflows_and_schemas()
    {
        using var host = Shop();
        await host.StartAsync();
        try
        {
            var describer = host.Services.GetRequiredService<AsyncApiDescriber>();
            var document = describer.Generate(AsyncApiGeneratorTests.OrderSchemas());
            var errors = AsyncApiSpec.Errors(document);
            Assert.True(errors.Length == 0, "The generated document breaks the AsyncAPI 3.0.0 schema:\n" + errors + "\n" + AsyncApiGenerator.ToJson(document));

            Assert.Equal("urn:cairn:shop", (string)document["info"]!["title"]!);
            var channels = document["channels"]!;
            Assert.Equal(
                ["queue.cancellations", "queue.dutch-orders", "queue.inventory", "queue.payments", "queue.shipping", "queue.workflow-checkout", "topic.orders"],
                Keys(channels));
            Assert.Equal(["order.placed.v1", "order.placed.v2"], Keys(channels["queue.dutch-orders"]!["messages"]));
            Assert.Equal(["order.cancelled.v1", "order.cancelled.v2"], Keys(channels["queue.cancellations"]!["messages"]));

            var operations = document["operations"]!;
            Assert.Equal(
                [
                    "consumer.cancellations", "consumer.dutch-orders", "route.orders-out",
                    "workflow.checkout.arrange-shipping.compensate", "workflow.checkout.arrange-shipping.send",
                    "workflow.checkout.charge-payment.compensate", "workflow.checkout.charge-payment.send",
                    "workflow.checkout.receive",
                    "workflow.checkout.reserve-stock.compensate", "workflow.checkout.reserve-stock.send",
                    "workflow.checkout.timers",
                ],
                Keys(operations));
            Assert.Equal("order", (string)operations["route.orders-out"]!["x-cairn-event-filter"]!["category"]!);

            // A step sends its command, and its replies come back to the workflow's queue.
            var reserve = operations["workflow.checkout.reserve-stock.send"]!;
            Assert.Equal("send", (string)reserve["action"]!);
            Assert.Equal("#/channels/queue.inventory", (string)reserve["channel"]!["$ref"]!);
            Assert.Equal(["#/channels/queue.inventory/messages/inventory.reserve-stock.unversioned"], Refs(reserve["messages"]));
            Assert.Equal("#/channels/queue.workflow-checkout", (string)reserve["reply"]!["channel"]!["$ref"]!);
            Assert.Equal(
                ["#/channels/queue.workflow-checkout/messages/inventory.stock-reserved.unversioned", "#/channels/queue.workflow-checkout/messages/inventory.stock-unavailable.unversioned"],
                Refs(reserve["reply"]!["messages"]));
            Assert.Equal(["#/channels/queue.payments/messages/payments.refund.unversioned"], Refs(operations["workflow.checkout.charge-payment.compensate"]!["messages"]));

            var received = Refs(operations["workflow.checkout.receive"]!["messages"]);
            Assert.Contains("#/channels/queue.workflow-checkout/messages/checkout.requested.unversioned", received);
            Assert.Contains("#/channels/queue.workflow-checkout/messages/payments.charged.unversioned", received);
            Assert.Contains("#/channels/queue.workflow-checkout/messages/cairn.workflow.timer.unversioned", received);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task the_registry_is_asked_for_a_type_only_a_subscriptions_rule_names_on_an_open_topic()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
            {
                o.UseInMemory();
                o.EventTypes.Register<OrderPlaced>();
            })
            .AddTopic("orders")
            .AddEventRoute("orders-out", EventFilter.ForCategory("order"), "orders")
            .AddQueue("shipped")
            .AddTopicSubscription("orders", "shipped", "shipped", """{"type": ["order.shipped"]}""");
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var asked = new List<string>();
            var shipped = new RegisteredSchema("order.shipped", 1, (JsonObject)JsonNode.Parse("""{"type": "object"}""")!);
            var document = host.Services.GetRequiredService<AsyncApiDescriber>().Generate(type =>
            {
                asked.Add(type);
                return type == "order.shipped" ? shipped : null;
            });

            Assert.Contains("order.shipped", asked);
            Assert.Equal(["order.shipped.v1"], Keys(document["channels"]!["queue.shipped"]!["messages"]));
            Assert.True(AsyncApiSpec.Errors(document).Length == 0);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>Retries a step's command after a backoff (a delayed send to the service), with no wait or timeout.</summary>
    private sealed class RetryingShipment : Workflow<CheckoutState>
    {
        public RetryingShipment()
            : base("retrying") =>
            Step("ship").Send("shipping", s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete()
                .Retry(3, TimeSpan.FromSeconds(5)).NoCompensation("the only step");
    }

    [Fact]
    public async Task a_workflow_whose_steps_only_retry_lists_no_timers()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
            {
                o.UseInMemory();
                CheckoutWorkflow.Register(o.EventTypes);
            })
            .AddWorkflow(new RetryingShipment());
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var document = host.Services.GetRequiredService<AsyncApiDescriber>().Generate(AsyncApiGeneratorTests.OrderSchemas());

            Assert.Equal(["workflow.retrying.receive", "workflow.retrying.ship.send"], Keys(document["operations"]));
            Assert.DoesNotContain("#/channels/queue.workflow-retrying/messages/cairn.workflow.timer.unversioned", Refs(document["operations"]!["workflow.retrying.receive"]!["messages"]));
            Assert.True(AsyncApiSpec.Errors(document).Length == 0);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task the_registry_can_answer_with_the_latest_schema_of_each_type_the_service_names()
    {
        using var host = Shop();
        await host.StartAsync();
        try
        {
            var latest = AsyncApiGeneratorTests.OrderSchemas().GroupBy(s => s.EventType).ToDictionary(g => g.Key, g => g.MaxBy(s => s.Version)!);
            var asked = new List<string>();
            var document = host.Services.GetRequiredService<AsyncApiDescriber>().Generate(type =>
            {
                asked.Add(type);
                return latest.GetValueOrDefault(type);
            });

            Assert.Contains("order.placed", asked);
            Assert.Contains("inventory.reserve-stock", asked);
            Assert.Equal(asked.Order(StringComparer.Ordinal), asked);
            Assert.Equal(["order.placed.v2"], Keys(document["channels"]!["queue.dutch-orders"]!["messages"]));
            Assert.True((bool)document["components"]!["messages"]!["order.placed.v2"]!["x-cairn-latest"]!);
            Assert.True(AsyncApiSpec.Errors(document).Length == 0);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public void before_the_host_starts_the_declared_topology_is_described_with_its_consumers_and_routes()
    {
        using var host = Shop();
        var input = host.Services.GetRequiredService<AsyncApiDescriber>().Describe([]);
        Assert.Equal(["orders"], input.Topics.Select(t => t.Value));
        Assert.Equal(2, input.Subscriptions.Count);
        Assert.Equal("orders-out", Assert.Single(input.Routes).Name);

        // A typed consumer takes its message's registered type; an untyped one what its queue holds. The workflow's
        // coordinator is described with the workflow.
        Assert.Equal(["cancellations", "dutch-orders"], input.Consumers.Select(c => c.Queue.Value).Order(StringComparer.Ordinal));
        Assert.Equal(["order.placed"], input.Consumers.Single(c => c.Queue.Value == "dutch-orders").MessageTypes);
        Assert.Null(input.Consumers.Single(c => c.Queue.Value == "cancellations").MessageTypes);
        Assert.Equal("checkout", Assert.Single(input.Workflows).Name);
        Assert.Contains("order.placed", input.EventTypes);
    }
}
