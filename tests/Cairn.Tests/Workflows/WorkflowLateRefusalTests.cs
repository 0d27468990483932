using System.Collections.Concurrent;
using Cairn.Conformance.Support;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;

namespace Cairn.Tests;

[EventType("late.reserve")] public sealed record LateReserve(string Id);
[EventType("late.unreserve")] public sealed record LateUnreserve(string Id);
[EventType("late.reserved")] public sealed record LateReserved(string Id);
[EventType("late.charge")] public sealed record LateCharge(string Id);
[EventType("late.refund")] public sealed record LateRefund(string Id);
[EventType("late.charged")] public sealed record LateCharged(string Id);
[EventType("late.declined")] public sealed record LateDeclined(string Id);

public sealed record LateState(string Id);

/// <summary>
/// A refusal that answers an attempt a later one replaced speaks for that attempt alone: the later attempt was sent,
/// cannot be recalled, and may still take effect, so the step is compensated as one that timed out.
/// </summary>
public sealed class WorkflowLateRefusalTests
{
    private sealed class ChargeWorkflow : Workflow<LateState>
    {
        public static readonly QueueName Stock = "late-stock";
        public static readonly QueueName Payments = "late-payments";

        public ChargeWorkflow()
            : base("late_charge")
        {
            Step("reserve").Send(Stock, s => new LateReserve(s.Id)).On<LateReserved>().Then("charge")
                .CompensateWith(Stock, s => new LateUnreserve(s.Id));
            Step("charge").Send(Payments, s => new LateCharge(s.Id))
                .On<LateCharged>().Complete()
                .On<LateDeclined>().Fail(_ => "declined")
                .Timeout(TimeSpan.FromMilliseconds(300)).Retry(3, TimeSpan.FromSeconds(2))
                .CompensateWith(Payments, s => new LateRefund(s.Id));
        }
    }

    [Fact]
    public async Task a_late_refusal_of_a_replaced_attempt_compensates_the_step_the_later_attempt_may_have_done()
    {
        await using var fixture = new InMemoryFixture();
        await using var sut = await fixture.CreateAsync();
        var effects = new ConcurrentQueue<string>();
        var secondAttemptSent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var refusalApplied = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var charges = 0;
        await using var host = await CairnTestHost.StartAsync(sut, o => o.EventTypes.Register<LateReserve>().Register<LateUnreserve>().Register<LateReserved>()
            .Register<LateCharge>().Register<LateRefund>().Register<LateCharged>().Register<LateDeclined>(), cairn =>
        {
            cairn.AddQueue(ChargeWorkflow.Stock).AddConsumer(ChargeWorkflow.Stock, (context, _) =>
            {
                switch (context.Read<object>())
                {
                    case LateReserve r:
                        context.Reply(new LateReserved(r.Id));
                        break;
                    case LateUnreserve:
                        effects.Enqueue("unreserve");
                        break;
                }

                return ValueTask.CompletedTask;
            });
            cairn.AddQueue(ChargeWorkflow.Payments).AddConsumer(
                ChargeWorkflow.Payments,
                async (context, ct) =>
                {
                    switch (context.Read<object>())
                    {
                        case LateCharge c when Interlocked.Increment(ref charges) == 1:
                            // The provider answers the first attempt only once it timed out and the second was sent, and declines.
                            await secondAttemptSent.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
                            effects.Enqueue("declined");
                            context.Reply(new LateDeclined(c.Id));
                            break;
                        case LateCharge c:
                            // The second attempt is delivered all the same, and charges once the refusal was applied.
                            await refusalApplied.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
                            effects.Enqueue("charged");
                            context.Reply(new LateCharged(c.Id));
                            break;
                        case LateRefund:
                            effects.Enqueue("refund");
                            break;
                    }
                },
                c => c with { Concurrency = 3 });
            cairn.AddWorkflow(new ChargeWorkflow());
        });

        await host.Workflows.StartAsync("late_charge", "o-1", new LateState("o-1"));
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync("late_charge", "o-1")) is { Attempt: 2 }, "the first attempt times out and the second is sent");
        secondAttemptSent.SetResult();
        await Wait.UntilAsync(async () => (await host.Workflows.GetAsync("late_charge", "o-1")) is { Status: WorkflowStatus.Compensating or WorkflowStatus.Failed }, "the late refusal fails the step");
        refusalApplied.SetResult();

        await Wait.UntilAsync(() => effects.Contains("charged") && effects.Contains("refund") && effects.Contains("unreserve"), "the charge is refunded and the stock released");
        var history = (await host.Workflows.GetHistoryAsync("late_charge", "o-1")).Select(e => e.Event).ToList();
        Assert.True(history.OfType<StepFailed>().Single().EffectUncertain);
        Assert.Equal(["charge", "reserve"], history.OfType<CompensationBegan>().Single().Steps);

        // The refund goes out no earlier than the second attempt, which waited out its backoff.
        var second = history.OfType<StepStarted>().Single(s => s.Step == "charge" && s.Attempt == 2);
        var refund = history.OfType<CompensationStarted>().First(c => c.Step == "charge");
        Assert.NotNull(second.SendAt);
        Assert.True(refund.SendAt >= second.SendAt, $"the refund was sent for {refund.SendAt:O}, before the second attempt's {second.SendAt:O}");
    }
}
