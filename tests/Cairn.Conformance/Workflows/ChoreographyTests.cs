using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Serialization;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Conformance.Workflows;

/// <summary>The checkout as a choreography, and the flow map that shows what it actually did.</summary>
public abstract class ChoreographyTests<TFixture>(TFixture fixture) : StoreTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    [Fact]
    public async Task the_choreographed_checkout_completes_or_cancels_orders_and_its_flow_map_shows_the_chain()
    {
        await using var sut = await CreateAsync();
        var choreography = new CheckoutChoreography { DeclineAbove = 100m };
        var host = await CairnTestHost.StartAsync(sut, o => CheckoutChoreography.Register(o.EventTypes), choreography.AddTo);
        await using var _ = host;
        var serializer = host.Services.GetRequiredService<EventSerializer>();

        await sut.Broker.PublishAsync(CheckoutChoreography.Shop, serializer.ToOutgoingMessage(new OrderPlacedForCheckout("o-30", "sku-1", 1, 30m)));
        await sut.Broker.PublishAsync(CheckoutChoreography.Shop, serializer.ToOutgoingMessage(new OrderPlacedForCheckout("o-500", "sku-1", 1, 500m)));

        async Task<string?> OutcomeAsync(string orderId)
        {
            var last = await sut.Store.ReadStreamBackwardsAsync("order-" + orderId, 1).FirstOrDefaultAsync();
            return last?.Type;
        }

        await Wait.UntilAsync(async () => await OutcomeAsync("o-30") is not null && await OutcomeAsync("o-500") is not null, "both orders end");
        Assert.Equal("shop.order-completed", await OutcomeAsync("o-30"));
        Assert.Equal("shop.order-cancelled", await OutcomeAsync("o-500"));
        Assert.Equal(["reserve:o-30", "charge:o-30", "ship:o-30"], choreography.Effects.Where(e => e.EndsWith(":o-30", StringComparison.Ordinal)));
        Assert.Equal(["reserve:o-500", "release:o-500"], choreography.Effects.Where(e => e.EndsWith(":o-500", StringComparison.Ordinal)));

        // The whole flow shares the first message's correlation id, and each event names the message that caused it.
        var completed = await sut.Store.ReadStreamAsync("order-o-30").SingleAsync();
        Assert.NotNull(completed.CausationId);

        // A handling is recorded on the map just after its commit, which the outcomes above (and the next service in the
        // chain) may see first: every handler the map is asserted on below is waited for.
        var recorder = host.Services.GetRequiredService<FlowRecorder>();
        await Wait.UntilAsync(
            () => recorder.Snapshot() is var m
                && m.Consumptions.Where(c => c.Handler == "c-orders").Sum(c => c.Handled) == 2
                && m.Consumptions.Where(c => c.Handler == "c-inventory").Sum(c => c.Handled) == 3
                && m.Consumptions.Where(c => c.Handler == "c-payments").Sum(c => c.Handled) == 2
                && m.Consumptions.Where(c => c.Handler == "c-shipping").Sum(c => c.Handled) == 1,
            "both orders' handlings are on the map");
        var map = recorder.Snapshot();
        Assert.Contains(map.Consumptions, c => c.Handler == "c-inventory" && c.MessageType == "shop.order-placed" && c.Handled == 2);
        Assert.Contains(map.Productions, p => p.Handler == "c-inventory" && p.MessageType == "inventory.stock-reserved" && p.Kind == FlowOutputKind.Publication && p.Target == "shop");
        Assert.Contains(map.Productions, p => p.Handler == "c-payments" && p.MessageType == "payments.declined");
        Assert.Contains(map.Productions, p => p.Handler == "c-orders" && p.MessageType == "shop.order-completed" && p.Kind == FlowOutputKind.Event && p.Target == "order");
        Assert.Empty(map.Cycles);
        Assert.Empty(map.DeadLetteringHandlers);
        Assert.Equal(["shop.order-cancelled", "shop.order-completed"], map.UnconsumedTypes);
        var mermaid = map.ToMermaid();
        Assert.Contains("c-shipping", mermaid, StringComparison.Ordinal);
    }
}
