using Cairn.Messaging;

namespace Cairn.Workflows;

/// <summary>
/// A workflow: named steps run one after another by a durable coordinator. Each step sends a command or publishes an
/// event (or only waits), then waits for a reply or a timer, and moves on by the reply's rule; a step with an effect
/// names its compensation, run in reverse order when a later step fails or the instance is cancelled. Define the steps
/// in the constructor; the first step declared runs first.
/// </summary>
/// <remarks>
/// The definition is a state machine of steps rather than code replayed step by step: it is checked whole when the
/// host starts (unreachable steps, unknown targets, unregistered message types, and a step with an effect but no
/// compensation while a later step can fail are refused, naming the step), it can be
/// drawn, and each event of an instance's history names the step it belongs to.
/// </remarks>
/// <example>
/// <code>
/// public sealed class Checkout : Workflow&lt;CheckoutState&gt;
/// {
///     public Checkout() : base("checkout")
///     {
///         Step("reserve-stock")
///             .Send(Inventory, s => new ReserveStock(s.OrderId, s.Items))
///             .On&lt;StockReserved&gt;().Then("charge-payment")
///             .On&lt;StockUnavailable&gt;().Fail(r => $"out of stock: {r.Sku}")
///             .Timeout(TimeSpan.FromSeconds(30)).Retry(3)
///             .CompensateWith(Inventory, s => new ReleaseStock(s.OrderId));
///         Step("charge-payment")
///             .Send(Payments, s => new ChargePayment(s.OrderId, s.Total))
///             .On&lt;PaymentCharged&gt;((s, r) => s with { PaymentId = r.PaymentId }).Then("arrange-shipping")
///             .On&lt;PaymentDeclined&gt;().Fail(r => r.Reason)
///             .CompensateWith(Payments, s => new RefundPayment(s.OrderId, s.PaymentId));
///         Step("arrange-shipping")
///             .Send(Shipping, s => new ArrangeShipping(s.OrderId))
///             .On&lt;ShippingArranged&gt;().Complete();
///     }
/// }
/// </code>
/// </example>
/// <typeparam name="TState">The workflow's state, stored as JSON in the instance's history.</typeparam>
public abstract class Workflow<TState> : IWorkflowDefinition
    where TState : class
{
    private readonly List<WorkflowStep<TState>> _steps = [];
    private readonly List<StartRule> _starts = [];
    private readonly Dictionary<Type, Func<object, string?>> _correlations = [];

    /// <summary>Creates a workflow named <paramref name="name"/> (its instances' streams are <c>wf:&lt;name&gt;-&lt;id&gt;</c>).</summary>
    protected Workflow(string name)
    {
        Name = WorkflowNames.Validate(name);
        Queue = new QueueName("workflow-" + Name);
    }

    /// <summary>The workflow's name.</summary>
    public string Name { get; }

    /// <summary>The definition's version, recorded in each instance's history.</summary>
    public int Version { get; init; } = 1;

    /// <summary>The queue the coordinator consumes: replies, timers and start messages are sent here (<c>workflow-&lt;name&gt;</c> by default).</summary>
    public QueueName Queue { get; init; }

    /// <summary>How many messages the coordinator handles at once (the processor count × 4 by default, at most 1,024).</summary>
    public int Concurrency { get; init; } = Math.Min(Environment.ProcessorCount * 4, 1024);

    /// <summary>The steps, in the order declared.</summary>
    public IReadOnlyList<WorkflowStep<TState>> Steps => _steps;

    /// <summary>Declares a step; the first one declared is where an instance starts.</summary>
    protected WorkflowStep<TState> Step(string name)
    {
        var step = new WorkflowStep<TState>(WorkflowNames.ValidateStep(name));
        _steps.Add(step);
        return step;
    }

    /// <summary>
    /// Starts an instance when a <typeparamref name="TMessage"/> arrives on the workflow's queue. Its id is the message's
    /// correlation id, or what <paramref name="correlate"/> returns. A second start for an existing instance is recorded
    /// in that instance's history and changes nothing.
    /// </summary>
    protected void StartWhen<TMessage>(Func<TMessage, TState> start, Func<TMessage, string>? correlate = null)
    {
        ArgumentNullException.ThrowIfNull(start);
        _starts.Add(new StartRule(typeof(TMessage), m => start((TMessage)m), correlate is null ? null : m => correlate((TMessage)m)));
    }

    /// <summary>
    /// Finds the instance of replies of type <typeparamref name="TReply"/> by a field of theirs rather than by their
    /// correlation id, for replies from services that do not carry the workflow's correlation id.
    /// </summary>
    protected void CorrelateBy<TReply>(Func<TReply, string> instanceId)
    {
        ArgumentNullException.ThrowIfNull(instanceId);
        _correlations[typeof(TReply)] = m => instanceId((TReply)m);
    }

    WorkflowModel IWorkflowDefinition.Compile(Serialization.EventSerializer serializer) =>
        WorkflowModel.Compile(this, _steps, _starts, _correlations, serializer);

    internal sealed record StartRule(Type MessageType, Func<object, TState> Start, Func<object, string>? Correlate);
}

/// <summary>A workflow definition the coordinator can run; implemented by <see cref="Workflow{TState}"/>.</summary>
public interface IWorkflowDefinition
{
    /// <summary>The workflow's name.</summary>
    string Name { get; }

    /// <summary>The coordinator's queue.</summary>
    QueueName Queue { get; }

    /// <summary>Checks the definition and compiles it for the coordinator.</summary>
    internal WorkflowModel Compile(Serialization.EventSerializer serializer);
}

/// <summary>What a step does when it fails for good.</summary>
public enum StepFailureAction
{
    /// <summary>Compensate the completed steps in reverse order; the instance ends failed (the default).</summary>
    Compensate,

    /// <summary>Stop and wait for an operator to retry the step, skip it or cancel the instance.</summary>
    Suspend,
}

/// <summary>The rules of workflow and step names.</summary>
public static class WorkflowNames
{
    /// <summary>The longest workflow or step name.</summary>
    public const int MaxLength = 100;

    /// <summary>Checks a workflow name: 1 to 100 of a–z, 0–9, '.', '_'; it must not contain '-' (the stream name's separator).</summary>
    public static string Validate(string? name) => Check("workflow", name, allowDash: false);

    /// <summary>Checks a step name: 1 to 100 of a–z, 0–9, '.', '_', '-'.</summary>
    public static string ValidateStep(string? name) => Check("step", name, allowDash: true);

    private static string Check(string kind, string? name, bool allowDash)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLength
            || !name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '_' || (allowDash && c == '-')))
        {
            throw new InvalidWorkflowDefinitionException($"'{name}' is not a valid {kind} name: use 1 to {MaxLength} of a-z, 0-9, '.', '_'{(allowDash ? ", '-'" : "")}.");
        }

        return name;
    }
}
