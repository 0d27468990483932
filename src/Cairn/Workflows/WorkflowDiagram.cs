using System.Text;

namespace Cairn.Workflows;

/// <summary>Draws a workflow definition: its steps, the replies that move it on, and its compensations.</summary>
internal static class WorkflowDiagram
{
    public static string ToMermaid(WorkflowModel model)
    {
        // Mermaid ids cannot hold '-' or '.': names that differ only there get the step's position as a suffix, and a
        // further count when that is another step's id too ("a_b_2", then "a.b" and "a-b").
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        var taken = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, i) in model.Steps.Keys.Select((name, i) => (name, i)))
        {
            var plain = "s_" + name.Replace('-', '_').Replace('.', '_');
            var id = plain;
            for (var n = i; !taken.Add(id); n++)
            {
                id = plain + "_" + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }

            ids[name] = id;
        }

        string Id(string step) => ids[step];
        var text = new StringBuilder("stateDiagram-v2\n");
        text.Append("    [*] --> ").Append(Id(model.FirstStep)).Append('\n');
        foreach (var step in model.Steps.Values)
        {
            var does = step.Action is { } a ? $"{(a.Kind == StepActionKind.Send ? "send to" : "publish to")} {a.Target}"
                : step.Delay is { } d ? $"wait {d}"
                : "wait for a reply";
            text.Append("    ").Append(Id(step.Name)).Append(" : ").Append(step.Name).Append(" (").Append(does).Append(")\n");
            foreach (var reply in step.Replies.Values)
            {
                var target = reply.Outcome switch
                {
                    ReplyOutcome.Fail => step.FailureAction == StepFailureAction.Suspend ? "suspended" : "failed",
                    ReplyOutcome.Retry => Id(step.Name),
                    _ => reply.Completes ? "[*]" : Id(reply.Target!),
                };
                text.Append("    ").Append(Id(step.Name)).Append(" --> ").Append(target).Append(" : ").Append(reply.TypeName).Append('\n');
            }

            if (step.Replies.Count == 0)
            {
                text.Append("    ").Append(Id(step.Name)).Append(" --> ").Append(step.CompletesWorkflow ? "[*]" : Id(step.Next!)).Append('\n');
            }

            var onFailure = step.FailureAction == StepFailureAction.Suspend ? "suspended" : "failed";
            if (step.Timeout is { } timeout)
            {
                text.Append("    ").Append(Id(step.Name)).Append(" --> ").Append(onFailure).Append(" : timeout ").Append(timeout).Append(" × ").Append(step.MaxAttempts).Append('\n');
            }

            if (step.Compensation is { } c)
            {
                text.Append("    note right of ").Append(Id(step.Name)).Append(" : compensate: ").Append(c.Kind == StepActionKind.Send ? "send to " : "publish to ").Append(c.Target);
                if (step.CompensationConfirmation is { } confirmation)
                {
                    text.Append(", confirmed by ").Append(confirmation).Append(" (").Append(step.CompensationTimeout).Append(" × ").Append(step.CompensationAttempts).Append(')');
                }

                text.Append('\n');
            }
            else if (step.NoCompensationReason is { } why)
            {
                text.Append("    note right of ").Append(Id(step.Name)).Append(" : no compensation: ").Append(OneLine(why)).Append('\n');
            }
        }

        text.Append("    failed : failed (compensate in reverse)\n    failed --> [*]\n");
        if (model.Steps.Values.Any(s => s.FailureAction == StepFailureAction.Suspend))
        {
            text.Append("    suspended : suspended (an operator retries, skips or cancels)\n");
        }

        return text.ToString();
    }

    /// <summary>A reason written by hand, on one line: a line break would end the note and break the diagram.</summary>
    private static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
