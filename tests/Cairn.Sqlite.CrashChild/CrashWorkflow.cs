using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// Hosts the checkout workflow's coordinator and its inventory, payment and shipping services on one SQLite file until
/// killed. Before the host starts it prints what the file holds (every instance and every effect); then a line for
/// every history committed, every handler started on a command with an effect, and every such handling committed, with
/// or without its effect. A service does an effect once per idempotency key, found in the effect's stream, and answers
/// every attempt; but shipping answers a <see cref="CheckoutCase.Late"/> order only once the shipment was arranged by
/// an earlier attempt, never a <see cref="CheckoutCase.Never"/> one, and the inventory confirms a release only when
/// asked again, so every compensation waits on its timer and is retried.
/// </summary>
internal sealed class CrashWorkflow(SqliteEventStore store, TextWriter output)
{
    private const string HistoryPrefix = "wf:" + CrashProtocol.Checkout + "-";

    public async Task RunAsync()
    {
        var services = new ServiceCollection();
        var broker = new ReportingBroker(new SqliteMessageBroker(store), (_, _) => { }, Committed);
        CrashProtocol.AddCheckout(services, store, broker)
            .AddConsumer(CheckoutWorkflow.Inventory, InventoryAsync, o => o with { Concurrency = 2 })
            .AddConsumer(CheckoutWorkflow.Payments, PaymentsAsync, o => o with { Concurrency = 2 })
            .AddConsumer(CheckoutWorkflow.Shipping, ShippingAsync, o => o with { Concurrency = 2 });

        // Never disposed: it runs until the kill.
        var provider = services.BuildServiceProvider();
        await ReportFileAsync(provider.GetRequiredService<WorkflowClient>());
        foreach (var hosted in provider.GetServices<IHostedService>())
        {
            await hosted.StartAsync(CancellationToken.None);
        }

        output.WriteLine(CrashProtocol.Ready);
        await Task.Delay(Timeout.InfiniteTimeSpan);
    }

    /// <summary>Prints every effect and every instance the file holds, before anything runs.</summary>
    private async Task ReportFileAsync(WorkflowClient workflows)
    {
        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForCategory(CrashProtocol.EffectCategory), long.MaxValue, CancellationToken.None))
        {
            output.WriteLine(CrashProtocol.EffectLine("had", CrashProtocol.ReadEffectEvent(e.Data).Effect));
        }

        await foreach (var e in store.ReadAllAsync(GlobalPosition.Start, EventFilter.ForCategory("wf:" + CrashProtocol.Checkout), long.MaxValue, CancellationToken.None))
        {
            if (e.Version == 0)
            {
                var order = e.Stream.Value[HistoryPrefix.Length..];
                var instance = await workflows.GetAsync(CrashProtocol.Checkout, order) ?? throw new InvalidOperationException($"The instance {order} has a history but no state.");
                output.WriteLine(CrashProtocol.InstanceLine(order, instance.Status, instance.StreamVersion));
            }
        }
    }

    /// <summary>Prints a line per instance whose history a committed transaction appended to.</summary>
    private void Committed(MessageTransaction transaction, CommitResult result)
    {
        for (var i = 0; i < transaction.Appends.Count && i < result.Appends.Count; i++)
        {
            var request = transaction.Appends[i];
            for (var s = 0; s < request.Streams.Count; s++)
            {
                var append = request.Streams[s];
                if (append.Stream.Value.StartsWith(HistoryPrefix, StringComparison.Ordinal))
                {
                    output.WriteLine(CrashProtocol.HistoryLine(append.Stream.Value[HistoryPrefix.Length..], result.Appends[i].Streams[s].LastVersion, append.Events.Select(e => e.Type)));
                }
            }
        }
    }

    private async ValueTask InventoryAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ReserveStock r when r.Sku == CrashProtocol.OutOfStockSku:
                context.Reply(new StockUnavailable(r.OrderId, r.Sku));
                break;
            case ReserveStock r:
                await OnceAsync(context, "reserve", r.OrderId, cancellationToken);
                context.Reply(new StockReserved(r.OrderId));
                break;
            case ReleaseStock r:
                if (!await OnceAsync(context, "release", r.OrderId, cancellationToken))
                {
                    context.Reply(new StockReleased(r.OrderId));
                }

                break;
        }
    }

    private async ValueTask PaymentsAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ChargePayment c when c.Amount > CrashProtocol.DeclineAbove:
                context.Reply(new PaymentDeclined(c.OrderId, "insufficient funds"));
                break;
            case ChargePayment c:
                await OnceAsync(context, "charge", c.OrderId, cancellationToken);
                context.Reply(new PaymentCharged(c.OrderId, "pay-" + c.OrderId));
                break;
            case RefundPayment r:
                await OnceAsync(context, "refund", r.OrderId, cancellationToken);
                break;
        }
    }

    private async ValueTask ShippingAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        switch (context.Read<object>())
        {
            case ArrangeShipping a:
                var first = await OnceAsync(context, "ship", a.OrderId, cancellationToken);
                var answers = CrashProtocol.CaseOf(a.OrderId) switch
                {
                    CheckoutCase.Never => false,
                    CheckoutCase.Late => !first,
                    _ => true,
                };
                if (answers)
                {
                    context.Reply(new ShippingArranged(a.OrderId, "track-" + a.OrderId));
                }

                break;
            case CancelShipment c:
                await OnceAsync(context, "cancel-shipment", c.OrderId, cancellationToken);
                break;
        }
    }

    /// <summary>
    /// Does the effect unless the effect's stream holds the command's idempotency key already: appended through the
    /// handler's transaction, expecting the version read, so two handlings at once commit one effect and the other is
    /// retried and finds the key. Returns whether this handling does the effect.
    /// </summary>
    private async Task<bool> OnceAsync(MessageHandlerContext context, string kind, string order, CancellationToken cancellationToken)
    {
        var message = context.Message;
        var effect = new Effect(kind, order, message.IdempotencyKey() ?? throw new NonRetryableMessageException($"Command {message.Id} ({message.Type}) has no idempotency key."));
        output.WriteLine(CrashProtocol.EffectLine("invoked", effect, message.Id, context.Delivery.ReceiveCount));
        var stream = CrashProtocol.EffectStream(kind, order);
        var version = -1L;
        await foreach (var e in store.ReadStreamAsync(stream, cancellationToken))
        {
            if (CrashProtocol.ReadEffectEvent(e.Data).Effect.Key == effect.Key)
            {
                context.OnCommitted(() => output.WriteLine(CrashProtocol.EffectLine("dedup", effect)));
                return false;
            }

            version = e.Version;
        }

        context.Append(stream, version < 0 ? ExpectedVersion.NoStream : ExpectedVersion.Exactly(version), CrashProtocol.EffectEvent(effect, message.Id));
        context.OnCommitted(() => output.WriteLine(CrashProtocol.EffectLine("effect", effect)));
        return true;
    }
}
