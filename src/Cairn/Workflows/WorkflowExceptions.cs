using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Workflows;

/// <summary>A workflow definition breaks a rule (an unreachable step, an unknown target, a missing compensation); the host does not start.</summary>
public sealed class InvalidWorkflowDefinitionException(string message) : CairnException(message);

/// <summary>An operation does not fit the instance's state (cancelling a finished instance, skipping a step with nowhere to go).</summary>
public sealed class WorkflowStateException(string message) : CairnException(message);

/// <summary>No workflow of that name is hosted.</summary>
public sealed class WorkflowNotFoundException(string message) : CairnException(message);

/// <summary>No instance of the workflow has that id.</summary>
public sealed class WorkflowInstanceNotFoundException(string workflow, string instanceId)
    : CairnException($"Workflow '{workflow}' has no instance '{instanceId}'.")
{
    /// <summary>The workflow.</summary>
    public string Workflow { get; } = workflow;

    /// <summary>The instance id asked for.</summary>
    public string InstanceId { get; } = instanceId;
}

/// <summary>An instance with that id exists already.</summary>
public sealed class WorkflowAlreadyStartedException(string workflow, string instanceId)
    : CairnException($"Workflow '{workflow}' already has an instance '{instanceId}'.")
{
    /// <summary>The workflow.</summary>
    public string Workflow { get; } = workflow;

    /// <summary>The instance id.</summary>
    public string InstanceId { get; } = instanceId;
}

/// <summary>
/// A message reached a workflow's queue that no instance can take: a reply for an instance that does not exist, or a
/// type the workflow does not know. It goes to the dead-letter queue with this reason, to be inspected and redriven.
/// </summary>
public sealed class UndeliverableWorkflowMessageException(string message) : NonRetryableMessageException(message);
