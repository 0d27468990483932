using System.Text;
using System.Text.Json;
using Cairn.Conformance.Support;
using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;

namespace Cairn.Tests.Diagnostics;

public sealed class FlowMapTests
{
    private static FlowRecorder Checkout()
    {
        var flows = new FlowRecorder();
        flows.RecordHandled("reserve-stock", "order.placed", TimeSpan.FromMilliseconds(4), [(FlowOutputKind.Event, "stock.reserved", "stock"), (FlowOutputKind.Command, "payment.charge", "payments")]);
        flows.RecordHandled("reserve-stock", "order.placed", TimeSpan.FromMilliseconds(2), [(FlowOutputKind.Event, "stock.reserved", "stock"), (FlowOutputKind.Command, "payment.charge", "payments")]);
        flows.RecordHandled("payments", "payment.charge", TimeSpan.FromMilliseconds(10), [(FlowOutputKind.Publication, "payment.failed", "payments-out")]);
        flows.RecordFailed("payments", "payment.charge", deadLettered: false);
        flows.RecordFailed("payments", "payment.charge", deadLettered: true);
        flows.RecordHandled("release-stock", "payment.failed", TimeSpan.FromMilliseconds(1), [(FlowOutputKind.Event, "stock.released", "stock")]);
        return flows;
    }

    [Fact]
    public void A_recorded_flow_counts_consumptions_with_latency_and_productions_by_kind_and_target()
    {
        var map = Checkout().Snapshot();
        var reserve = Assert.Single(map.Consumptions, c => c.Handler == "reserve-stock");
        Assert.Equal(("order.placed", 2L, 0L, 0L), (reserve.MessageType, reserve.Handled, reserve.Failed, reserve.DeadLettered));
        Assert.Equal(0.003, reserve.MeanSeconds, 6);
        Assert.Equal(0.004, reserve.MaxSeconds, 6);
        var payments = Assert.Single(map.Consumptions, c => c.Handler == "payments");
        Assert.Equal((1L, 2L, 1L), (payments.Handled, payments.Failed, payments.DeadLettered));
        Assert.Equal(
            [
                new FlowProduction("payments", "payment.charge", "payment.failed", FlowOutputKind.Publication, "payments-out", 1),
                new FlowProduction("release-stock", "payment.failed", "stock.released", FlowOutputKind.Event, "stock", 1),
                new FlowProduction("reserve-stock", "order.placed", "payment.charge", FlowOutputKind.Command, "payments", 2),
                new FlowProduction("reserve-stock", "order.placed", "stock.reserved", FlowOutputKind.Event, "stock", 2),
            ],
            map.Productions);
    }

    [Fact]
    public void The_map_flags_types_no_one_consumes_handlers_that_dead_letter_and_cycles()
    {
        var flows = Checkout();
        Assert.Equal(["stock.released", "stock.reserved"], flows.Snapshot().UnconsumedTypes);
        Assert.Equal(["payments"], flows.Snapshot().DeadLetteringHandlers);
        Assert.Empty(flows.Snapshot().Cycles);

        flows.RecordHandled("ping-handler", "ping", TimeSpan.Zero, [(FlowOutputKind.Command, "pong", "pongs")]);
        flows.RecordHandled("pong-handler", "pong", TimeSpan.Zero, [(FlowOutputKind.Command, "ping", "pings")]);
        flows.RecordHandled("echo", "echo", TimeSpan.Zero, [(FlowOutputKind.Publication, "echo", "echoes")]);
        var cycles = flows.Snapshot().Cycles;
        Assert.Equal(2, cycles.Count);
        Assert.Contains(cycles, c => c.SequenceEqual(["type:ping", "type:pong", "handler:ping-handler", "handler:pong-handler"]));
        Assert.Contains(cycles, c => c.SequenceEqual(["type:echo", "handler:echo"]));
    }

    [Fact]
    public void Cairns_own_types_are_drawn_but_never_flagged_and_edges_are_drawn_once_per_handler_and_type()
    {
        // A workflow's coordinator keeps its history and re-arms its own timers.
        var flows = new FlowRecorder();
        flows.RecordHandled("workflow-checkout", "inventory.stock-reserved", TimeSpan.Zero, [(FlowOutputKind.Event, "cairn.workflow.step-completed", "wf:checkout"), (FlowOutputKind.Command, "payments.charge", "payments")]);
        flows.RecordHandled("workflow-checkout", "cairn.workflow.timer", TimeSpan.Zero, [(FlowOutputKind.Event, "cairn.workflow.step-completed", "wf:checkout"), (FlowOutputKind.Command, "cairn.workflow.timer", "workflow-checkout")]);
        var map = flows.Snapshot();
        Assert.Empty(map.Cycles);
        Assert.Equal(["payments.charge"], map.UnconsumedTypes);
        Assert.Single(map.ToMermaid().Split('\n'), l => l.Contains("\"2 appended to wf:checkout\"", StringComparison.Ordinal));
    }

    [Fact]
    public void A_handler_that_consumes_two_types_does_not_join_their_paths_into_a_false_cycle()
    {
        // Inventory reserves on an order and releases on a declined payment; payments declines on a reservation.
        var flows = new FlowRecorder();
        flows.RecordHandled("inventory", "order.placed", TimeSpan.Zero, [(FlowOutputKind.Publication, "stock.reserved", "shop")]);
        flows.RecordHandled("payments", "stock.reserved", TimeSpan.Zero, [(FlowOutputKind.Publication, "payment.declined", "shop")]);
        flows.RecordHandled("inventory", "payment.declined", TimeSpan.Zero, [(FlowOutputKind.Publication, "stock.released", "shop")]);
        Assert.Empty(flows.Snapshot().Cycles);

        // Releasing stock that puts the order back in line would close a real loop.
        flows.RecordHandled("inventory", "payment.declined", TimeSpan.Zero, [(FlowOutputKind.Publication, "stock.reserved", "shop")]);
        Assert.Equal(["type:payment.declined", "type:stock.reserved", "handler:inventory", "handler:payments"], Assert.Single(flows.Snapshot().Cycles));
    }

    [Fact]
    public void The_map_exports_as_mermaid_and_as_json()
    {
        var map = Checkout().Snapshot();
        var mermaid = map.ToMermaid();
        Assert.StartsWith("flowchart LR\n", mermaid, StringComparison.Ordinal);
        Assert.Contains("([\"order.placed\"])", mermaid);
        Assert.Contains("[\"reserve-stock\"]", mermaid);
        Assert.Contains("-->|\"2 handled, mean 3 ms\"|", mermaid);
        Assert.Contains("-->|\"1 handled, mean 10 ms, 1 dead-lettered\"|", mermaid);
        Assert.Contains("-->|\"2 sent to payments\"|", mermaid);
        Assert.Contains("-->|\"1 published to payments-out\"|", mermaid);
        Assert.Contains(" deadletters\n", mermaid);
        Assert.Contains(" unconsumed\n", mermaid);

        // Mermaid decodes "#123;" as a character: a handler's name holding it is shown as written.
        var odd = new FlowRecorder();
        odd.RecordHandled("ticket #123;", "order.placed", TimeSpan.FromMilliseconds(1), []);
        Assert.Contains("[\"ticket #35;123;\"]", odd.Snapshot().ToMermaid());

        using var json = JsonDocument.Parse(map.ToJson());
        var root = json.RootElement;
        Assert.Equal(3, root.GetProperty("consumptions").GetArrayLength());
        Assert.Equal(4, root.GetProperty("productions").GetArrayLength());
        Assert.Equal("Command", root.GetProperty("productions").EnumerateArray().Single(p => p.GetProperty("messageType").GetString() == "payment.charge").GetProperty("kind").GetString());
        Assert.Equal(["payments"], root.GetProperty("deadLetteringHandlers").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(0, root.GetProperty("cycles").GetArrayLength());
    }

    [Fact]
    public async Task A_consumer_records_what_it_consumed_and_what_its_committed_effects_produced()
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("orders"), default);
        await broker.DeclareQueueAsync(new QueueDefinition("payments"), default);
        var flows = new FlowRecorder();
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("orders") { Concurrency = 1, ExtendLeaseWhileHandling = false, Retry = new RetryPolicy { ImmediateRetries = 0 } },
            (context, _) =>
            {
                if (context.Message.Type == "order.bad")
                {
                    throw new NonRetryableMessageException("refused");
                }

                context.Append(new StreamName("stock-1"), ExpectedVersion.Any, TestEvents.Json("{}", "stock.reserved"));
                context.Send("payments", new OutgoingMessage("payment.charge", Encoding.UTF8.GetBytes("{}")));
                return ValueTask.CompletedTask;
            },
            flows: flows);
        await consumer.StartAsync(default);
        await broker.SendAsync("orders", new OutgoingMessage("order.placed", Encoding.UTF8.GetBytes("{}")), default);
        await broker.SendAsync("orders", new OutgoingMessage("order.bad", Encoding.UTF8.GetBytes("{}")), default);
        await Wait.UntilAsync(() => consumer.Status.Handled == 1 && consumer.Status.DeadLettered == 1, "both messages are settled");

        var map = flows.Snapshot();
        Assert.Equal(1, Assert.Single(map.Consumptions, c => c.MessageType == "order.placed").Handled);
        Assert.Equal(1, Assert.Single(map.Consumptions, c => c.MessageType == "order.bad").DeadLettered);
        Assert.Contains(new FlowProduction("orders", "order.placed", "stock.reserved", FlowOutputKind.Event, "stock", 1), map.Productions);
        Assert.Contains(new FlowProduction("orders", "order.placed", "payment.charge", FlowOutputKind.Command, "payments", 1), map.Productions);
        Assert.Equal(["orders"], map.DeadLetteringHandlers);
    }

    [Fact]
    public async Task A_release_on_the_last_allowed_receive_counts_as_dead_lettered_and_an_immediate_retry_before_it_does_not()
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("orders") { MaxReceiveCount = 1 }, default);
        var flows = new FlowRecorder();
        var calls = 0;
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("orders") { Concurrency = 1, ExtendLeaseWhileHandling = false, Retry = new RetryPolicy { ImmediateRetries = 1 } },
            (context, _) => context.Message.Type == "order.flaky" && Interlocked.Increment(ref calls) == 1 || context.Message.Type == "order.bad"
                ? throw new InvalidOperationException("failed")
                : ValueTask.CompletedTask,
            flows: flows);
        await consumer.StartAsync(default);

        // Fails once, then succeeds on its immediate retry, on its only allowed receive: not dead-lettered.
        await broker.SendAsync("orders", new OutgoingMessage("order.flaky", Encoding.UTF8.GetBytes("{}")), default);
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the immediate retry handles it");
        Assert.Equal((1L, 0L), Assert.Single(flows.Snapshot().Consumptions) is var flaky ? (flaky.Failed, flaky.DeadLettered) : default);
        Assert.Empty(flows.Snapshot().DeadLetteringHandlers);

        // Fails on both attempts of its only allowed receive: the release dead-letters it.
        await broker.SendAsync("orders", new OutgoingMessage("order.bad", Encoding.UTF8.GetBytes("{}")), default);
        await Wait.UntilAsync(() => consumer.Status.DeadLettered == 1, "the release on the last receive dead-letters it");
        var bad = Assert.Single(flows.Snapshot().Consumptions, c => c.MessageType == "order.bad");
        Assert.Equal((2L, 1L), (bad.Failed, bad.DeadLettered));
        Assert.Equal(["orders"], flows.Snapshot().DeadLetteringHandlers);
        Assert.Equal(1, (await broker.GetStatsAsync("orders", default)).DeadLettered);
    }

    [Fact]
    public async Task An_action_after_the_commit_that_throws_does_not_make_the_handling_a_failure()
    {
        var store = new InMemoryEventStore();
        var broker = new InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("orders"), default);
        var after = 0;
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions("orders") { Concurrency = 1, ExtendLeaseWhileHandling = false },
            (context, _) =>
            {
                context.Append(new StreamName("order-1"), ExpectedVersion.Any, TestEvents.Json("{}", "order.placed"));
                context.OnCommitted(() =>
                {
                    Interlocked.Increment(ref after);
                    throw new InvalidOperationException("bookkeeping failed");
                });
                return ValueTask.CompletedTask;
            });
        await consumer.StartAsync(default);
        await broker.SendAsync("orders", new OutgoingMessage("order.place", Encoding.UTF8.GetBytes("{}")), default);
        await Wait.UntilAsync(() => consumer.Status.Handled == 1, "the message is handled");

        Assert.Equal(1, Volatile.Read(ref after));
        Assert.Equal(0, consumer.Status.Retried);
        Assert.Equal(1, await store.ReadStreamAsync("order-1").CountAsync());
        Assert.Equal(0, (await broker.GetStatsAsync("orders", default)).Visible + (await broker.GetStatsAsync("orders", default)).Leased);
    }
}
