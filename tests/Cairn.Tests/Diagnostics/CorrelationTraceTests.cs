using System.Text.Json;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;

namespace Cairn.Tests.Diagnostics;

public sealed class CorrelationTraceTests
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 9, 30, 0, TimeSpan.Zero);

    private static TraceEntry Handled(string id, string type, string? cause, double seconds, string consumer = "orders") => new()
    {
        Kind = TraceEntryKind.MessageHandled,
        Id = id,
        Type = type,
        Time = T0.AddSeconds(seconds),
        CausationId = cause,
        Queue = consumer,
        Consumer = consumer,
    };

    private static TraceEntry Appended(string id, string type, string? cause, double seconds, long position, string stream = "order-1", long version = 0) => new()
    {
        Kind = TraceEntryKind.EventAppended,
        Id = id,
        Type = type,
        Time = T0.AddSeconds(seconds),
        CausationId = cause,
        Stream = stream,
        StreamVersion = version,
        Position = position,
    };

    private static TraceEntry Waiting(string id, string type, string? cause, double seconds, string queue) => new()
    {
        Kind = TraceEntryKind.MessageWaiting,
        Id = id,
        Type = type,
        Time = T0.AddSeconds(seconds),
        CausationId = cause,
        Queue = queue,
        ReceiveCount = 0,
    };

    private static TraceEntry DeadLettered(string id, string type, string? cause, double seconds, string queue) => new()
    {
        Kind = TraceEntryKind.MessageDeadLettered,
        Id = id,
        Type = type,
        Time = T0.AddSeconds(seconds),
        CausationId = cause,
        Queue = queue,
        ReceiveCount = 3,
        DeadLetterReason = "receive count 3 reached",
        Failure = new FailureInfo("System.TimeoutException", "the bank did not answer", null),
    };

    /// <summary>A checkout: the command, the event and the charge it caused, the receipt waiting, the charge dead-lettered in the ledger.</summary>
    private static CorrelationTrace Checkout() => new("checkout-42", [
        DeadLettered("c3", "payment.charged", "c2", 2, "ledger"),
        Waiting("c3", "payment.charged", "c2", 1.5, "receipts"),
        Handled("c2", "payment.charge", "c1", 1, "payments"),
        Appended("e1", "order.placed", "c1", 0, position: 7),
        Handled("c1", "order.place", null, 0),
    ]);

    [Fact]
    public void The_timeline_is_in_time_order_with_the_events_of_a_commit_after_the_handling_that_made_them()
    {
        var trace = Checkout();

        Assert.Equal(["c1", "e1", "c2", "c3", "c3"], trace.Timeline.Select(e => e.Id));
        Assert.Equal(T0, trace.Start);
        Assert.Equal(TimeSpan.FromSeconds(2), trace.Duration);
    }

    [Fact]
    public void Causality_wins_over_a_clock_that_runs_behind()
    {
        // The payments service's clock is 5 s behind: its handling of c2 looks older than the command that caused it.
        var trace = new CorrelationTrace("checkout-42", [
            Handled("c1", "order.place", null, 0),
            Handled("c2", "payment.charge", "c1", -5, "payments"),
            Appended("e2", "payment.taken", "c2", -5, position: 3, stream: "payment-1"),
            Appended("e0", "unrelated.but.same.flow", null, -1, position: 2, stream: "audit-1"),
        ]);

        Assert.Equal(["e0", "c1", "c2", "e2"], trace.Timeline.Select(e => e.Id));
    }

    [Fact]
    public void The_tree_has_one_node_per_id_with_children_by_causation()
    {
        var trace = Checkout();

        var root = Assert.Single(trace.Roots);
        Assert.Equal(("c1", "order.place", false), (root.Id, root.Type, root.CauseMissing));
        Assert.Equal(["e1", "c2"], root.Children.Select(c => c.Id));
        var charged = Assert.Single(root.Children[1].Children);
        Assert.Equal([TraceEntryKind.MessageWaiting, TraceEntryKind.MessageDeadLettered], charged.Entries.Select(e => e.Kind));
        Assert.Same(root.Children[1], charged.Parent);
        Assert.True(charged.DeadLettered);
        Assert.True(charged.Pending);
        Assert.Same(charged, trace.Find("c3"));
        Assert.Null(trace.Find("nope"));
        Assert.Equal(["c1", "e1", "c2", "c3"], trace.Nodes.Select(n => n.Id));
    }

    [Fact]
    public void An_entry_whose_cause_is_not_in_the_trace_is_a_root_that_names_the_missing_cause()
    {
        // c1's inbox record was pruned: what it caused still shows, under a root that says its cause is missing.
        var trace = new CorrelationTrace("checkout-42", [
            Appended("e1", "order.placed", "c1", 0, position: 7),
            Handled("c2", "payment.charge", "c1", 1, "payments"),
            Handled("x1", "audit.note", null, 2, "audit"),
        ]);

        Assert.Equal(["e1", "c2", "x1"], trace.Roots.Select(r => r.Id));
        Assert.Equal([true, true, false], trace.Roots.Select(r => r.CauseMissing));
        Assert.Equal(["c1"], trace.MissingCauses);
        Assert.Contains("(caused by c1, not in the trace) order.placed e1", trace.ToText(), StringComparison.Ordinal);
        Assert.Contains("{{\"not in the trace<br/>c1\"}}", trace.ToMermaid(), StringComparison.Ordinal);
    }

    [Fact]
    public void An_event_routed_as_a_message_and_handled_by_two_consumers_is_one_node()
    {
        var trace = new CorrelationTrace("checkout-42", [
            Appended("e1", "order.placed", null, 0, position: 1),
            Handled("e1", "order.placed", null, 1, "shipping"),
            Handled("e1", "order.placed", null, 1.2, "billing"),
            Appended("e2", "parcel.booked", "e1", 1, position: 2, stream: "parcel-1"),
        ]);

        var root = Assert.Single(trace.Roots);
        Assert.Equal(3, root.Entries.Count);
        Assert.Equal("order.placed e1: appended to order-1@0 at position 1; handled by shipping from queue shipping; handled by billing from queue billing", root.Describe());
        Assert.Equal("e2", Assert.Single(root.Children).Id);
    }

    [Fact]
    public void Malformed_causation_that_loops_still_shows_every_entry_once()
    {
        var trace = new CorrelationTrace("loop", [
            Handled("a", "ping", "b", 0),
            Handled("b", "pong", "a", 1),
            Handled("s", "self", "s", 2),
        ]);

        Assert.Equal(3, trace.Timeline.Count);
        Assert.Equal(["a", "b", "s"], trace.Nodes.Select(n => n.Id));
        Assert.Equal(["a", "s"], trace.Roots.Select(r => r.Id));
        Assert.Equal("b", Assert.Single(trace.Roots[0].Children).Id);
    }

    [Fact]
    public void A_chain_thousands_deep_renders_without_recursion_and_within_json_nesting()
    {
        var entries = Enumerable.Range(0, 5_000).Select(i => Handled($"m{i}", "step", i == 0 ? null : $"m{i - 1}", i * 0.001)).ToList();
        var trace = new CorrelationTrace("saga", entries);

        Assert.Single(trace.Roots);
        Assert.Equal(5_000, trace.Nodes.Count);
        var text = trace.ToText();
        Assert.Contains("[depth 4999] step m4999", text, StringComparison.Ordinal);
        Assert.True(text.Length < 2_000_000, $"The text is {text.Length} characters.");
        using var json = JsonDocument.Parse(trace.ToJson());
        Assert.Equal(5_000, json.RootElement.GetProperty("nodes").GetArrayLength());
        Assert.Equal(4_999, trace.ToMermaid().Split('\n').Count(l => l.Contains(" --> ", StringComparison.Ordinal)));
    }

    [Fact]
    public void The_text_shows_the_timeline_and_the_tree()
    {
        var text = Checkout().ToText();

        Assert.Equal(
            """
            Correlation checkout-42: 5 entries, 1 root, 2.000 s (1 dead-lettered, 1 pending)

            Timeline
              2026-03-01 09:30:00.000  +   0.000 s  message order.place handled by orders from queue orders  [c1]
              2026-03-01 09:30:00.000  +   0.000 s  event order.placed appended to order-1@0 at position 7  [e1]
              2026-03-01 09:30:01.000  +   1.000 s  message payment.charge handled by payments from queue payments  [c2]
              2026-03-01 09:30:01.500  +   1.500 s  message payment.charged waiting in queue receipts  [c3]
              2026-03-01 09:30:02.000  +   2.000 s  message payment.charged dead-lettered from queue ledger after 3 receives: receive count 3 reached  [c3]

            Causation tree
              order.place c1: handled by orders from queue orders
              ├── order.placed e1: appended to order-1@0 at position 7
              └── payment.charge c2: handled by payments from queue payments
                  └── payment.charged c3: waiting in queue receipts; dead-lettered from queue ledger after 3 receives: receive count 3 reached  ✗ dead-lettered

            """.ReplaceLineEndings("\n"),
            text);
    }

    [Fact]
    public void The_mermaid_chart_draws_events_rounded_messages_boxed_and_flags_dead_letters()
    {
        var mermaid = Checkout().ToMermaid();

        Assert.Equal(
            """
            flowchart TD
                n0["order.place<br/>handled by orders from queue orders"]
                n1(["order.placed<br/>appended to order-1@0 at position 7"])
                n2["payment.charge<br/>handled by payments from queue payments"]
                n3["payment.charged<br/>waiting in queue receipts<br/>dead-lettered from queue ledger after 3 receives: receive count 3 reached"]
                n0 --> n1
                n0 --> n2
                n2 --> n3
                class n3 deadletter
                classDef deadletter stroke:#dc2626,stroke-width:3px
                classDef pending stroke-dasharray:4 3
                classDef missing stroke-dasharray:2 2,color:#6b7280

            """.ReplaceLineEndings("\n"),
            mermaid);
    }

    // A dead letter's reason holds an exception's message, which may span lines: the text kept the entry's id on a line
    // of its own, and Mermaid decoded "#123;" in a label as a character.
    [Fact]
    public void Text_keeps_one_line_per_entry_and_mermaid_shows_text_as_written()
    {
        var trace = new CorrelationTrace("flow-r", [
            new TraceEntry { Kind = TraceEntryKind.MessageDeadLettered, Id = "m-1", Type = "order.place", Time = T0, Queue = "orders", ReceiveCount = 1, DeadLetterReason = "item #123; is out of stock\r\nsee line two" },
        ]);

        var text = trace.ToText();
        var timeline = text.Split("Timeline\n")[1].Split("\n\nCausation tree")[0].Split('\n');
        Assert.Contains("is out of stock\\nsee line two  [m-1]", Assert.Single(timeline), StringComparison.Ordinal);
        var tree = text.Split("Causation tree\n")[1].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("\\nsee line two", Assert.Single(tree), StringComparison.Ordinal);

        var mermaid = trace.ToMermaid();
        Assert.Contains("item #35;123; is out of stock<br/>see line two", mermaid, StringComparison.Ordinal);
    }

    [Fact]
    public void The_json_holds_the_timeline_and_a_flat_tree()
    {
        using var json = JsonDocument.Parse(Checkout().ToJson());
        var root = json.RootElement;

        Assert.Equal("checkout-42", root.GetProperty("correlationId").GetString());
        Assert.False(root.GetProperty("truncated").GetBoolean());
        Assert.Equal(2.0, root.GetProperty("durationSeconds").GetDouble());
        var timeline = root.GetProperty("timeline");
        Assert.Equal(["messageHandled", "eventAppended", "messageHandled", "messageWaiting", "messageDeadLettered"], timeline.EnumerateArray().Select(e => e.GetProperty("kind").GetString()));
        Assert.Equal(("order-1", 0, 7), (timeline[1].GetProperty("stream").GetString(), timeline[1].GetProperty("streamVersion").GetInt32(), timeline[1].GetProperty("position").GetInt32()));
        Assert.Equal("the bank did not answer", timeline[4].GetProperty("failure").GetProperty("message").GetString());
        Assert.Equal(["c1"], root.GetProperty("roots").EnumerateArray().Select(r => r.GetString()));
        var charged = root.GetProperty("nodes").EnumerateArray().Single(n => n.GetProperty("id").GetString() == "c3");
        Assert.Equal("c2", charged.GetProperty("parentId").GetString());
        Assert.Equal([3, 4], charged.GetProperty("entries").EnumerateArray().Select(e => e.GetInt32()));
        Assert.True(charged.GetProperty("deadLettered").GetBoolean());
    }

    [Fact]
    public void A_trace_from_records_keeps_only_its_own_correlation()
    {
        var own = new RecordedEvent(MessageId.New(), new StreamName("order-1"), 0, new GlobalPosition(1), "order.placed", "urn:test", T0, "application/json", ReadOnlyMemory<byte>.Empty) { CorrelationId = "checkout-42" };
        var other = new RecordedEvent(MessageId.New(), new StreamName("order-2"), 0, new GlobalPosition(2), "order.placed", "urn:test", T0, "application/json", ReadOnlyMemory<byte>.Empty) { CorrelationId = "checkout-43" };
        var handled = new InboxRecord("orders", MessageId.New(), T0, new HandledMessage("orders", "order.place", "checkout-42", null));
        var strayHandled = new InboxRecord("orders", MessageId.New(), T0, new HandledMessage("orders", "order.place", "checkout-43", null));

        var trace = CorrelationTrace.From("checkout-42", new CorrelationRecords([own, other], [handled, strayHandled], [], Truncated: true));

        Assert.Equal(new[] { own.Id.ToString(), handled.MessageId.ToString() }.Order(StringComparer.Ordinal), trace.Timeline.Select(e => e.Id).Order(StringComparer.Ordinal));
        Assert.True(trace.Truncated);
        Assert.Contains("truncated at the limit", trace.ToText(), StringComparison.Ordinal);
    }

    [Fact]
    public void Records_beyond_the_limit_are_the_latest_and_mark_the_result_truncated()
    {
        RecordedEvent Event(long position, double seconds) => new(MessageId.New(), new StreamName("order-1"), position - 1, new GlobalPosition(position), "order.placed", "urn:test", T0.AddSeconds(seconds), "application/json", ReadOnlyMemory<byte>.Empty);
        var handled = new InboxRecord("orders", MessageId.New(), T0.AddSeconds(1), new HandledMessage("orders", "order.place", "c", null));

        var kept = CorrelationRecords.Earliest([Event(1, 0), Event(2, 0), Event(3, 2)], [handled], [], limit: 3);

        Assert.True(kept.Truncated);
        Assert.Equal([1L, 2L], kept.Events.Select(e => e.Position.Value));
        Assert.Equal([handled], kept.Handled);
        Assert.False(CorrelationRecords.Earliest([Event(1, 0)], [handled], [], limit: 2).Truncated);
    }

    [Fact]
    public async Task AddCairn_registers_the_tracer_for_a_backend_that_can_trace_and_names_one_that_cannot()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        await using (var provider = services.BuildServiceProvider())
        {
            var trace = await provider.GetRequiredService<CorrelationTracer>().TraceAsync("nothing-yet", default);
            Assert.True(trace.IsEmpty);
        }

        var bare = new ServiceCollection();
        bare.AddCairn(o => o.UseBackend("bare", (_, options) => new InMemoryEventStore(options), _ => new InMemoryCheckpointStore()));
        await using var bareProvider = bare.BuildServiceProvider();
        var error = Assert.Throws<InvalidOperationException>(() => bareProvider.GetRequiredService<CorrelationTracer>());
        Assert.Contains("The bare backend has no ICorrelationTraceReader", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_inbox_record_of_a_message_with_a_bad_envelope_is_refused_before_anything_is_written()
    {
        var store = new InMemoryEventStore();
        var broker = new Cairn.Messaging.InMemory.InMemoryMessageBroker(store, new InMemoryCheckpointStore());
        await broker.DeclareQueueAsync(new QueueDefinition("orders"), default);
        var message = new Message(MessageId.New(), "order.place", "urn:test", T0, "application/json", ReadOnlyMemory<byte>.Empty) { CorrelationId = new string('x', 300) };
        var transaction = new MessageTransaction()
            .Append(new AppendRequest(new StreamName("order-1"), ExpectedVersion.Any, [new EventData("order.placed", "{}"u8.ToArray())]))
            .MarkProcessed("orders", new Delivery(message, new LeaseToken("orders", 1, 1)));

        var error = await Assert.ThrowsAsync<InvalidMessageException>(() => broker.CommitAsync(transaction, default));

        Assert.Contains("CorrelationId", error.Message, StringComparison.Ordinal);
        Assert.Equal(GlobalPosition.Start, await store.GetHeadPositionAsync(default));
    }

    // Causes that loop (a names b, b names a) are broken at one entry, which becomes a root: its cause is in the trace,
    // so it is not a missing cause, and no chart draws that cause a second time as "not in the trace".
    [Fact]
    public void A_root_made_by_breaking_a_loop_of_causes_names_its_cause_as_in_the_loop_not_missing()
    {
        var trace = new CorrelationTrace("loop", [
            Handled("a", "ping", "b", 0),
            Handled("b", "pong", "a", 1),
        ]);

        var root = Assert.Single(trace.Roots);
        Assert.NotNull(trace.Find(root.CausationId!));
        Assert.True(root.CauseInLoop);
        Assert.False(root.CauseMissing);
        Assert.Empty(trace.MissingCauses);
        Assert.DoesNotContain("not in the trace", trace.ToMermaid(), StringComparison.Ordinal);
        Assert.Contains(" -. loop .-> ", trace.ToMermaid(), StringComparison.Ordinal);
        Assert.Contains("in a loop of causes", trace.ToText(), StringComparison.Ordinal);
        Assert.Contains("\"causeInLoop\": true", trace.ToJson(), StringComparison.Ordinal);

        // A message naming itself as its cause is the smallest loop.
        var self = Assert.Single(new CorrelationTrace("self", [Handled("s", "ping", "s", 0)]).Roots);
        Assert.True(self.CauseInLoop);
        Assert.False(self.CauseMissing);
    }
}
