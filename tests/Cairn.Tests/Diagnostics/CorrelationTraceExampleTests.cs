using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Tests.Diagnostics;

/// <summary>The example of docs/messaging.md's "Tracing one correlation id", run as written (in memory instead of a file).</summary>
public sealed class CorrelationTraceExampleTests
{
    [Fact]
    public async Task the_documented_checkout_is_traced()
    {
        var cancellationToken = CancellationToken.None;

        // --- docs/messaging.md: tracing one correlation id ---
        var builder = Host.CreateApplicationBuilder();
        builder.Services
            .AddCairn(o => o.UseInMemory())   // the page: o.UseSqlite("Data Source=shop.db")
            .AddQueue("orders")
            .AddQueue("payments")
            .AddQueue("receipts")
            .AddConsumer("orders", (context, ct) =>
            {
                context.Append(StreamName.For("order", "42"), ExpectedVersion.NoStream, new EventData("order.placed", """{"total":120}"""u8.ToArray()));
                context.Send("payments", new OutgoingMessage("payment.charge", """{"order":"42","total":120}"""u8.ToArray()));
                return ValueTask.CompletedTask;
            })
            .AddConsumer("payments", (context, ct) =>
            {
                context.Append(StreamName.For("payment", "42"), ExpectedVersion.NoStream, new EventData("payment.taken", """{"total":120}"""u8.ToArray()));
                context.Send("receipts", new OutgoingMessage("receipt.send", """{"order":"42"}"""u8.ToArray()));
                return ValueTask.CompletedTask;
            });
        using var host = builder.Build();
        await host.StartAsync(cancellationToken);

        var broker = host.Services.GetRequiredService<IMessageBroker>();
        using (MessageContext.Begin(correlationId: "checkout-42"))
        {
            await broker.SendAsync("orders", new OutgoingMessage("order.place", """{"order":"42"}"""u8.ToArray()), cancellationToken);
        }
        // --- end of the example ---

        var consumers = host.Services.GetRequiredService<ConsumerMonitor>();
        await Wait.UntilAsync(() => consumers.Find("payments")?.Status.Handled == 1, "payments handles the charge");

        // --- docs/messaging.md: reading and rendering a trace ---
        var tracer = host.Services.GetRequiredService<CorrelationTracer>();
        var trace = await tracer.TraceAsync("checkout-42", cancellationToken);
        Console.WriteLine(trace.ToText());      // the timeline, then the causation tree
        var mermaid = trace.ToMermaid();        // flowchart TD: one node per event or message
        var json = trace.ToJson();              // timeline, roots and a flat list of nodes
        // --- end of the example ---

        // On the real clock the effects of one handling may differ by a tick, so siblings are compared as sets.
        Assert.Equal(
            [(TraceEntryKind.MessageHandled, "order.place"), (TraceEntryKind.EventAppended, "order.placed"), (TraceEntryKind.MessageHandled, "payment.charge")],
            trace.Timeline.Take(3).Select(e => (e.Kind, e.Type)));
        Assert.Equal(
            [(TraceEntryKind.EventAppended, "payment.taken"), (TraceEntryKind.MessageWaiting, "receipt.send")],
            trace.Timeline.Skip(3).Select(e => (e.Kind, e.Type)).Order());
        var root = Assert.Single(trace.Roots);
        Assert.Equal(["order.placed", "payment.charge"], root.Children.Select(c => c.Type));
        Assert.Equal(["payment.taken", "receipt.send"], root.Children[1].Children.Select(c => c.Type).Order());
        Assert.Single(trace.Pending);
        Assert.Contains("flowchart TD", mermaid, StringComparison.Ordinal);
        Assert.Contains("\"correlationId\": \"checkout-42\"", json, StringComparison.Ordinal);
        await host.StopAsync(cancellationToken);
    }
}
