using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;

namespace Cairn.Tests.Workflows;

[EventType("consequence.place")] public sealed record CqPlace(string Id);
[EventType("consequence.notify")] public sealed record CqNotify(string Id);
[EventType("consequence.placed")] public sealed record CqPlaced(string Id);
[EventType("consequence.shipped")] public sealed record CqShipped(string Id);

public sealed record CqState(string Id);

/// <summary>Replies that are a step's command's later consequences, awaited by a later step.</summary>
public sealed class WorkflowReplyConsequenceTests
{
    private static readonly QueueName Silent = "consequence-silent";

    private sealed class Defined(string name, Action<Defined> define) : Workflow<CqState>(name)
    {
        public Defined Build()
        {
            define(this);
            return this;
        }

        public WorkflowStep<CqState> Add(string step) => Step(step);
    }

    private static EventSerializer Serializer()
    {
        var types = new EventTypeRegistry();
        types.Register<CqPlace>().Register<CqNotify>().Register<CqPlaced>().Register<CqShipped>();
        WorkflowEventTypes.Register(types);
        return new EventSerializer(types);
    }

    // docs/workflows.md: "Other replies to steps are taken by their type, whatever caused them: one command often has
    // several consequences that later steps wait for (an order placed, then shipped)." Step "place" takes either answer
    // (an order shipped at once skips the wait); step "await-shipment" waits for the shipment. The order service answers
    // the one place command twice, placed and then shipped, both caused by it. The shipped reply is not a repeat answer
    // of a retried step (place had one attempt): it is the consequence "await-shipment" waits for.
    [Fact]
    public void a_later_consequence_of_a_steps_command_completes_the_next_step_even_when_the_first_step_also_accepts_that_type()
    {
        var serializer = Serializer();
        var model = ((IWorkflowDefinition)new Defined("consequence_order", w =>
        {
            w.Add("place").Send(Silent, s => new CqPlace(s.Id))
                .On<CqPlaced>().Then("await-shipment")
                .On<CqShipped>().Complete()
                .NoCompensation("nothing to undo");
            w.Add("await-shipment").Send(Silent, s => new CqNotify(s.Id))
                .On<CqShipped>().Complete()
                .NoCompensation("the last step");
        }).Build()).Compile(serializer);
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

        var d = new WorkflowDecider(model, serializer, new WorkflowInstance(), "o-1", t0);
        d.Start(new CqState("o-1"), null);
        var placeCommand = d.Instance.CurrentMessageId!;

        d = new WorkflowDecider(model, serializer, d.Instance, "o-1", t0.AddSeconds(1));
        d.Reply("consequence.placed", "r-placed", new CqPlaced("o-1"), placeCommand);
        Assert.Equal("await-shipment", d.Instance.CurrentStep);

        d = new WorkflowDecider(model, serializer, d.Instance, "o-1", t0.AddSeconds(2));
        d.Reply("consequence.shipped", "r-shipped", new CqShipped("o-1"), placeCommand);

        Assert.False(d.Events.OfType<ReplyIgnored>().Any(), string.Join("; ", d.Events.OfType<ReplyIgnored>().Select(e => e.ToString())));
        Assert.Equal(WorkflowStatus.Completed, d.Instance.Status);
    }
}
