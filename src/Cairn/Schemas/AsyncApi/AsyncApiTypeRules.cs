using System.Text;
using System.Text.Json.Nodes;
using Cairn.Messaging.Filtering;

namespace Cairn.Schemas;

/// <summary>
/// Which message types a filter rule lets through: the rule's conditions on the envelope's <c>type</c> (at the top, or
/// in every branch of a top-level <c>$or</c>), checked with Cairn's own matcher against each candidate type. The rule's
/// other conditions (on the data, the source, …) depend on each message, so here they let every type through.
/// </summary>
internal sealed class AsyncApiTypeRules
{
    private readonly FilterRule? _constraint;

    private AsyncApiTypeRules(FilterRule? constraint, IReadOnlyList<string> named)
    {
        _constraint = constraint;
        Named = named;
    }

    /// <summary>The type names the rule's conditions on the type name literally.</summary>
    public IReadOnlyList<string> Named { get; }

    public static AsyncApiTypeRules Of(FilterRule? rule)
    {
        if (rule is null || rule.ToJsonNode() is not JsonObject root)
        {
            return new AsyncApiTypeRules(null, []);
        }

        var reduced = new JsonObject();
        var named = new List<string>();
        if (root["type"] is JsonArray top)
        {
            reduced["type"] = top.DeepClone();
            Collect(top, named);
        }

        if (root["$or"] is JsonArray branches)
        {
            var typed = new JsonArray();
            var branchNames = new List<string>();
            foreach (var branch in branches)
            {
                if (branch is JsonObject b && b["type"] is JsonArray types)
                {
                    typed.Add(new JsonObject { ["type"] = types.DeepClone() });
                    Collect(types, branchNames);
                }
                else
                {
                    // One branch that does not look at the type lets every type through.
                    typed = null;
                    break;
                }
            }

            if (typed is { Count: > 0 })
            {
                reduced["$or"] = typed;
                named.AddRange(branchNames);
            }
        }

        return reduced.Count == 0
            ? new AsyncApiTypeRules(null, [])
            : new AsyncApiTypeRules(FilterRule.Parse(reduced.ToJsonString()), named);
    }

    /// <summary>Whether a message of this type can pass the rule (its other conditions aside).</summary>
    public bool Passes(string type) =>
        _constraint is null || _constraint.Matches(Encoding.UTF8.GetBytes(new JsonObject { ["type"] = type }.ToJsonString()));

    private static void Collect(JsonArray values, List<string> named)
    {
        foreach (var value in values)
        {
            if (value is JsonValue v && v.TryGetValue<string>(out var name))
            {
                named.Add(name);
            }
        }
    }
}
