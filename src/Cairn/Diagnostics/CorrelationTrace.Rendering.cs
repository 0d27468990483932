using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Cairn.Diagnostics;

public sealed partial class CorrelationTrace
{
    /// <summary>Deeper nodes of the text tree are not indented further, so a long chain stays readable (and linear in size).</summary>
    private const int MaxIndentDepth = 24;

    /// <summary>
    /// The trace as text: a header, the timeline (time, offset from the start, what happened, id), and the causation
    /// tree with a line per node.
    /// </summary>
    public string ToText()
    {
        var text = new StringBuilder();
        text.Append("Correlation ").Append(CorrelationId).Append(": ");
        if (IsEmpty)
        {
            text.Append("nothing found.\n");
            return text.ToString();
        }

        text.Append(Invariant($"{Timeline.Count} entr{(Timeline.Count == 1 ? "y" : "ies")}, {Roots.Count} root{(Roots.Count == 1 ? "" : "s")}, {Duration.TotalSeconds:0.000} s"));
        var flags = new List<string>();
        if (DeadLetters.Count > 0) flags.Add(Invariant($"{DeadLetters.Count} dead-lettered"));
        if (Pending.Count > 0) flags.Add(Invariant($"{Pending.Count} pending"));
        if (MissingCauses.Count > 0) flags.Add(Invariant($"{MissingCauses.Count} missing cause{(MissingCauses.Count == 1 ? "" : "s")}"));
        if (Truncated) flags.Add("truncated at the limit");
        if (flags.Count > 0)
        {
            text.Append(" (").AppendJoin(", ", flags).Append(')');
        }

        text.Append("\n\nTimeline\n");
        var start = Start!.Value;
        foreach (var entry in Timeline)
        {
            text.Append("  ").Append(entry.Time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture))
                .Append(Invariant($"  +{(entry.Time - start).TotalSeconds,8:0.000} s  "))
                .Append(OneLine(entry.Describe())).Append("  [").Append(entry.Id).Append("]\n");
        }

        text.Append("\nCausation tree\n");
        var last = new List<bool>();
        foreach (var (node, depth) in WalkWithDepth())
        {
            var shown = Math.Min(depth, MaxIndentDepth);
            text.Append("  ");
            for (var level = 1; level < shown; level++)
            {
                text.Append(last[level] ? "    " : "│   ");
            }

            if (shown > 0)
            {
                var isLast = node.Parent!.Children[^1] == node;
                text.Append(isLast ? "└── " : "├── ");
                SetLast(last, shown, isLast);
            }

            if (depth > MaxIndentDepth)
            {
                text.Append(Invariant($"[depth {depth}] "));
            }

            if (node.CauseMissing)
            {
                text.Append("(caused by ").Append(node.CausationId).Append(", not in the trace) ");
            }
            else if (node.CauseInLoop)
            {
                text.Append("(caused by ").Append(node.CausationId).Append(", in a loop of causes) ");
            }

            text.Append(OneLine(node.Describe()));
            if (node.DeadLettered)
            {
                text.Append("  ✗ dead-lettered");
            }

            text.Append('\n');
        }

        if (Truncated)
        {
            text.Append("\nThe trace stops at the limit; later entries are not shown.\n");
        }

        return text.ToString();
    }

    /// <summary>
    /// The causation tree as a Mermaid flowchart: events as rounded nodes, messages as boxes, each labelled with its type
    /// and what happened to it; dead letters, pending messages and missing causes flagged.
    /// </summary>
    public string ToMermaid()
    {
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        string Id(string key) => ids.TryGetValue(key, out var id) ? id : ids[key] = "n" + ids.Count.ToString(CultureInfo.InvariantCulture);
        var text = new StringBuilder("flowchart TD\n");
        var nodes = Nodes;
        foreach (var node in nodes)
        {
            var label = Escape(node.Type) + "<br/>" + string.Join("<br/>", node.Entries.Select(e => Escape(e.Fact)));
            var isEvent = node.Entries[0].IsEvent;
            text.Append("    ").Append(Id(node.Id)).Append(isEvent ? "([\"" : "[\"").Append(label).Append(isEvent ? "\"])\n" : "\"]\n");
        }

        foreach (var cause in MissingCauses)
        {
            text.Append("    ").Append(Id("missing:" + cause)).Append("{{\"not in the trace<br/>").Append(Escape(cause)).Append("\"}}\n");
        }

        foreach (var node in nodes)
        {
            if (node.Parent is { } parent)
            {
                text.Append("    ").Append(Id(parent.Id)).Append(" --> ").Append(Id(node.Id)).Append('\n');
            }
            else if (node.CauseMissing)
            {
                text.Append("    ").Append(Id("missing:" + node.CausationId)).Append(" -.-> ").Append(Id(node.Id)).Append('\n');
            }
            else if (node.CauseInLoop)
            {
                text.Append("    ").Append(Id(node.CausationId!)).Append(" -. loop .-> ").Append(Id(node.Id)).Append('\n');
            }
        }

        foreach (var node in nodes)
        {
            if (node.DeadLettered)
            {
                text.Append("    class ").Append(Id(node.Id)).Append(" deadletter\n");
            }
            else if (node.Pending)
            {
                text.Append("    class ").Append(Id(node.Id)).Append(" pending\n");
            }
        }

        foreach (var cause in MissingCauses)
        {
            text.Append("    class ").Append(Id("missing:" + cause)).Append(" missing\n");
        }

        text.Append("    classDef deadletter stroke:#dc2626,stroke-width:3px\n");
        text.Append("    classDef pending stroke-dasharray:4 3\n");
        text.Append("    classDef missing stroke-dasharray:2 2,color:#6b7280\n");
        return text.ToString();
    }

    /// <summary>
    /// The trace as JSON: the timeline's entries, and the tree as a flat list of nodes (each with its parent, its
    /// children and the indexes of its entries in the timeline), so a chain of any depth stays within JSON's nesting.
    /// </summary>
    public string ToJson()
    {
        var index = new Dictionary<TraceEntry, int>(ReferenceEqualityComparer.Instance);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("correlationId", CorrelationId);
            json.WriteBoolean("truncated", Truncated);
            if (Start is { } start)
            {
                json.WriteString("start", start);
                json.WriteNumber("durationSeconds", Duration.TotalSeconds);
            }

            json.WriteStartArray("timeline");
            for (var i = 0; i < Timeline.Count; i++)
            {
                var e = Timeline[i];
                index[e] = i;
                json.WriteStartObject();
                json.WriteString("kind", JsonNamingPolicy.CamelCase.ConvertName(e.Kind.ToString()));
                json.WriteString("id", e.Id);
                json.WriteString("type", e.Type);
                json.WriteString("time", e.Time);
                WriteOptional(json, "causationId", e.CausationId);
                WriteOptional(json, "stream", e.Stream);
                if (e.StreamVersion is { } version) json.WriteNumber("streamVersion", version);
                if (e.Position is { } position) json.WriteNumber("position", position);
                WriteOptional(json, "queue", e.Queue);
                WriteOptional(json, "consumer", e.Consumer);
                if (e.ReceiveCount is { } receives) json.WriteNumber("receiveCount", receives);
                WriteOptional(json, "deadLetterReason", e.DeadLetterReason);
                if (e.Failure is { } failure)
                {
                    json.WriteStartObject("failure");
                    json.WriteString("type", failure.Type);
                    json.WriteString("message", failure.Message);
                    json.WriteEndObject();
                }

                json.WriteString("description", e.Describe());
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("roots");
            foreach (var root in Roots)
            {
                json.WriteStringValue(root.Id);
            }

            json.WriteEndArray();
            json.WriteStartArray("nodes");
            foreach (var node in Nodes)
            {
                json.WriteStartObject();
                json.WriteString("id", node.Id);
                json.WriteString("type", node.Type);
                WriteOptional(json, "causationId", node.CausationId);
                WriteOptional(json, "parentId", node.Parent?.Id);
                json.WriteBoolean("causeMissing", node.CauseMissing);
                json.WriteBoolean("causeInLoop", node.CauseInLoop);
                json.WriteBoolean("deadLettered", node.DeadLettered);
                json.WriteBoolean("pending", node.Pending);
                json.WriteStartArray("entries");
                foreach (var entry in node.Entries)
                {
                    json.WriteNumberValue(index[entry]);
                }

                json.WriteEndArray();
                json.WriteStartArray("children");
                foreach (var child in node.Children)
                {
                    json.WriteStringValue(child.Id);
                }

                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("missingCauses");
            foreach (var cause in MissingCauses)
            {
                json.WriteStringValue(cause);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <inheritdoc />
    public override string ToString() => ToText();

    private static void WriteOptional(Utf8JsonWriter json, string name, string? value)
    {
        if (value is not null)
        {
            json.WriteString(name, value);
        }
    }

    private static void SetLast(List<bool> last, int depth, bool isLast)
    {
        while (last.Count <= depth)
        {
            last.Add(false);
        }

        last[depth] = isLast;
    }

    private static string Escape(string text) => MermaidText.Label(text);

    /// <summary>A failure's message or a dead letter's reason may span lines; the text keeps one line per entry and node.</summary>
    private static string OneLine(string text) => MermaidText.LineBreaks().Replace(text, "\\n");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
