using Cairn.Conformance.Support;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;

namespace Cairn.Tests.Workflows;

public sealed class WorkflowDefinitionTests
{
    private static readonly QueueName Q = "q";

    private static EventSerializer Serializer()
    {
        var types = new EventTypeRegistry();
        CheckoutWorkflow.Register(types);
        WorkflowEventTypes.Register(types);
        return new EventSerializer(types);
    }

    private sealed class Defined(string name, Action<Defined> define) : Workflow<CheckoutState>(name)
    {
        public Defined Build()
        {
            define(this);
            return this;
        }

        public WorkflowStep<CheckoutState> Add(string step) => Step(step);

        public void StartOn<T>(Func<T, CheckoutState> start) => StartWhen(start);
    }

    private static string Refusal(Action<Defined> define, string name = "wf")
    {
        var workflow = new Defined(name, define).Build();
        var error = Assert.Throws<InvalidWorkflowDefinitionException>(() => ((IWorkflowDefinition)workflow).Compile(Serializer()));
        return error.Message;
    }

    [Fact]
    public void the_checkout_compiles_and_draws_as_a_state_diagram()
    {
        var model = ((IWorkflowDefinition)new CheckoutWorkflow()).Compile(Serializer());
        Assert.Equal("reserve-stock", model.FirstStep);
        var diagram = WorkflowDiagram.ToMermaid(model);
        Assert.StartsWith("stateDiagram-v2", diagram, StringComparison.Ordinal);
        Assert.Contains("s_reserve_stock --> s_charge_payment : inventory.stock-reserved", diagram, StringComparison.Ordinal);
        Assert.Contains("s_arrange_shipping --> [*] : shipping.arranged", diagram, StringComparison.Ordinal);
        Assert.Contains("compensate: send to payments", diagram, StringComparison.Ordinal);
    }

    // Both were taken: the step kept its compensation and recorded a reason it needs none, whichever came last.
    [Fact]
    public void a_step_with_a_compensation_that_says_it_needs_none_is_refused_either_way_round()
    {
        var first = Assert.Throws<InvalidWorkflowDefinitionException>(() => new Defined("both", w =>
            w.Add("ship").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete()
                .CompensateWith(Q, s => new ArrangeShipping(s.OrderId)).NoCompensation("nothing to undo")).Build());
        var second = Assert.Throws<InvalidWorkflowDefinitionException>(() => new Defined("both", w =>
            w.Add("ship").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete()
                .NoCompensation("nothing to undo").CompensateWithPublish<ArrangeShipping>("shipping", s => new ArrangeShipping(s.OrderId))).Build());

        Assert.Equal("Step 'ship' has a compensation and says it needs none; it is one or the other.", first.Message);
        Assert.Equal("Step 'ship' says it needs no compensation (nothing to undo) and is given one; it is one or the other.", second.Message);
    }

    // A value outside the enumeration was taken and acted on as Compensate.
    [Fact]
    public void a_failure_action_outside_the_enumeration_is_refused()
    {
        var error = Assert.Throws<InvalidWorkflowDefinitionException>(() => new Defined("undefined", w =>
            w.Add("ship").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete().OnFailure((StepFailureAction)99)).Build());

        Assert.Equal("Step 'ship': 99 is not a failure action; it must be one of Compensate, Suspend.", error.Message);
    }

    [Fact]
    public void a_reason_for_no_compensation_written_on_several_lines_is_drawn_on_one()
    {
        var workflow = new Defined("lines", w =>
        {
            w.Add("hold").Wait(TimeSpan.FromSeconds(1)).Then("ship");
            w.Add("ship").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete().NoCompensation("the last step:\r\n  nothing after it\ncan fail");
        }).Build();
        var diagram = WorkflowDiagram.ToMermaid(((IWorkflowDefinition)workflow).Compile(Serializer()));

        Assert.Contains("    note right of s_ship : no compensation: the last step: nothing after it can fail\n", diagram, StringComparison.Ordinal);
    }

    [Fact]
    public void steps_whose_names_differ_only_in_separators_are_drawn_apart()
    {
        var workflow = new Defined("sep", w =>
        {
            w.Add("a-b").Wait(TimeSpan.FromSeconds(1)).Then("a.b");
            w.Add("a.b").Wait(TimeSpan.FromSeconds(1)).Then("a_b");
            w.Add("a_b").Wait(TimeSpan.FromSeconds(1)).Complete();
        }).Build();
        var diagram = WorkflowDiagram.ToMermaid(((IWorkflowDefinition)workflow).Compile(Serializer()));
        Assert.Contains("s_a_b --> s_a_b_1\n", diagram, StringComparison.Ordinal);
        Assert.Contains("s_a_b_1 --> s_a_b_2\n", diagram, StringComparison.Ordinal);
        Assert.Contains("s_a_b_2 --> [*]\n", diagram, StringComparison.Ordinal);
    }

    // The position suffix that tells "a.b" from "a-b" apart can make the id another step already has ("a_b_2").
    [Fact]
    public void a_step_whose_separators_suffix_makes_another_steps_id_is_drawn_apart()
    {
        var workflow = new Defined("sep2", w =>
        {
            w.Add("a_b_2").Wait(TimeSpan.FromSeconds(1)).Then("a.b");
            w.Add("a.b").Wait(TimeSpan.FromSeconds(1)).Then("a-b");
            w.Add("a-b").Wait(TimeSpan.FromSeconds(1)).Complete();
        }).Build();
        var diagram = WorkflowDiagram.ToMermaid(((IWorkflowDefinition)workflow).Compile(Serializer()));

        var states = diagram.Split('\n').Where(l => l.Contains(" (wait ", StringComparison.Ordinal)).Select(l => l.Trim().Split(' ')[0]).ToList();
        Assert.Equal(3, states.Count);
        Assert.True(states.Distinct().Count() == 3, diagram);
    }

    [Fact]
    public void an_unreachable_step_is_refused_by_name()
    {
        var message = Refusal(w =>
        {
            w.Add("a").Send(Q, s => new ReserveStock(s.OrderId, s.Sku, 1)).On<StockReserved>().Complete().NoCompensation("last");
            w.Add("orphan").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete().NoCompensation("last");
        });
        Assert.Contains("step 'orphan' is unreachable", message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Steps that send and wait for no reply complete at once and move on in the same decision: two leading to each other
    /// never stopped, and the first start recursed until the stack overflowed, killing the process. Such a loop is
    /// refused with the definition, naming its steps; one that waits somewhere on the way is a loop that may run.
    /// </summary>
    [Fact]
    public void a_loop_of_steps_that_complete_at_once_is_refused_naming_its_steps()
    {
        var message = Refusal(w =>
        {
            w.Add("start").Send(Q, s => new ArrangeShipping(s.OrderId)).Then("ping");
            w.Add("ping").Send(Q, s => new ArrangeShipping(s.OrderId)).Then("pong");
            w.Add("pong").Send(Q, s => new ArrangeShipping(s.OrderId)).Then("ping");
        });
        Assert.Contains("steps 'ping' → 'pong' → 'ping' each complete at once", message, StringComparison.Ordinal);
        Assert.DoesNotContain("'pong' → 'ping' → 'pong'", message, StringComparison.Ordinal);

        var waits = new Defined("waits", w =>
        {
            w.Add("ping").Send(Q, s => new ArrangeShipping(s.OrderId)).Then("pong");
            w.Add("pong").Wait(TimeSpan.FromMinutes(1)).Then("ping");
        }).Build();
        Assert.NotNull(((IWorkflowDefinition)waits).Compile(Serializer()));
    }

    [Fact]
    public void a_step_with_an_effect_and_a_failing_step_after_it_needs_a_compensation()
    {
        var message = Refusal(w =>
        {
            w.Add("reserve").Send(Q, s => new ReserveStock(s.OrderId, s.Sku, 1)).On<StockReserved>().Then("pay");
            w.Add("pay").Send(Q, s => new ChargePayment(s.OrderId, 1)).On<PaymentCharged>().Complete().On<PaymentDeclined>().Fail(r => r.Reason);
        });
        Assert.Contains("step 'reserve' has an effect and no compensation, but a later step can fail ('pay')", message, StringComparison.Ordinal);

        // Saying why none is needed, or having no failing step after it, is accepted.
        Assert.NotNull(((IWorkflowDefinition)new Defined("ok", w =>
        {
            w.Add("reserve").Send(Q, s => new ReserveStock(s.OrderId, s.Sku, 1)).On<StockReserved>().Then("pay").NoCompensation("reservations expire on their own");
            w.Add("pay").Send(Q, s => new ChargePayment(s.OrderId, 1)).On<PaymentCharged>().Complete().On<PaymentDeclined>().Fail(r => r.Reason);
        }).Build()).Compile(Serializer()));
    }

    [Fact]
    public void broken_definitions_are_refused_naming_what_is_wrong()
    {
        Assert.Contains("declares no step", Refusal(_ => { }), StringComparison.Ordinal);
        Assert.Contains("goes to step 'nowhere', which is not declared", Refusal(w => w.Add("a").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Then("nowhere").NoCompensation("x")), StringComparison.Ordinal);
        Assert.Contains("step 'a' is declared twice", Refusal(w =>
        {
            w.Add("a").Wait(TimeSpan.FromSeconds(1)).Complete();
            w.Add("a").Wait(TimeSpan.FromSeconds(1)).Complete();
        }), StringComparison.Ordinal);
        Assert.Contains("step 'a' does nothing", Refusal(w => w.Add("a").Complete()), StringComparison.Ordinal);
        Assert.Contains("step 'a' moves on to its next step, but names none", Refusal(w => w.Add("a").Wait(TimeSpan.FromSeconds(1))), StringComparison.Ordinal);
        Assert.Contains("waits on a timer and also sends", Refusal(w => w.Add("a").Wait(TimeSpan.FromSeconds(1)).Send(Q, s => new ArrangeShipping(s.OrderId)).Complete()), StringComparison.Ordinal);
        Assert.Contains("has a timeout but waits for no reply", Refusal(w => w.Add("a").Publish("t", s => new ArrangeShipping(s.OrderId)).Timeout(TimeSpan.FromSeconds(1)).Complete()), StringComparison.Ordinal);
        Assert.Contains("has a compensation but no effect", Refusal(w => w.Add("a").On<ShippingArranged>().Complete().CompensateWith(Q, s => new CancelShipment(s.OrderId))), StringComparison.Ordinal);
        Assert.Contains("confirms a compensation it does not have", Refusal(w => w.Add("a").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete().ConfirmCompensationBy<StockReleased>()), StringComparison.Ordinal);
        Assert.Contains("Unregistered has no registered type name", Refusal(w => w.Add("a").Send(Q, s => new ArrangeShipping(s.OrderId)).On<Unregistered>().Complete()), StringComparison.Ordinal);
        Assert.Contains("step 'a''s message Unregistered has no registered type name", Refusal(w => w.Add("a").Send(Q, s => new Unregistered(s.OrderId)).On<ShippingArranged>().Complete()), StringComparison.Ordinal);
        Assert.Contains("step 'a''s compensation Unregistered has no registered type name", Refusal(w => w.Add("a").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete().CompensateWith(Q, s => new Unregistered(s.OrderId))), StringComparison.Ordinal);
        Assert.Contains("both starts instances and is a reply", Refusal(w =>
        {
            w.StartOn<ShippingArranged>(r => new CheckoutState(r.OrderId, "s", 1, 1));
            w.Add("a").Send(Q, s => new ArrangeShipping(s.OrderId)).On<ShippingArranged>().Complete();
        }), StringComparison.Ordinal);
    }

    [Fact]
    public void bad_names_and_settings_are_refused_where_they_are_written()
    {
        Assert.Throws<InvalidWorkflowDefinitionException>(() => new Defined("has-dash", _ => { }));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => new Defined("", _ => { }));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => new Defined("Upper", _ => { }));
        var w = new Defined("fine", _ => { });
        Assert.Throws<InvalidWorkflowDefinitionException>(() => w.Add("bad step"));
        var step = w.Add("a");
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.Timeout(TimeSpan.Zero));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.Retry(0));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.Retry(2, TimeSpan.FromDays(2)));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.Wait(TimeSpan.FromDays(400)));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.ConfirmCompensationBy<StockReleased>(TimeSpan.Zero));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.ConfirmCompensationBy<StockReleased>(maxAttempts: 0));
        step.On<StockReserved>();
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.On<StockReserved>());
        step.Send(Q, s => new ArrangeShipping(s.OrderId));
        Assert.Throws<InvalidWorkflowDefinitionException>(() => step.Publish("t", s => new ArrangeShipping(s.OrderId)));
    }

    [Fact]
    public void the_time_derived_ids_begin_with_is_the_start_events_recorded_one_whatever_time_the_store_gave_it()
    {
        var state = System.Text.Json.JsonDocument.Parse("{}").RootElement;
        var decided = new DateTimeOffset(2026, 11, 30, 6, 0, 0, 123, TimeSpan.Zero);
        var stored = decided.AddMilliseconds(7);

        var recorded = new WorkflowInstance();
        recorded.Apply(new WorkflowStarted("checkout", 1, "order-1", state, null, decided), stored, 0);
        Assert.Equal(decided, recorded.IdTime);
        Assert.Equal(stored, recorded.StartedAt);

        // A history written before the start recorded its time falls back to the event's.
        var older = new WorkflowInstance();
        older.Apply(new WorkflowStarted("checkout", 1, "order-1", state, null), stored, 0);
        Assert.Equal(stored, older.IdTime);
        Assert.Equal(stored, older.Copy().IdTime);
    }

    private sealed record Unregistered(string X);
}
