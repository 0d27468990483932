using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Cairn.Diagnostics;

/// <summary>What a handler produced while handling a message.</summary>
public enum FlowOutputKind
{
    /// <summary>An event appended to the log (the target is the stream's category).</summary>
    Event,

    /// <summary>A message sent to a queue (the target is the queue).</summary>
    Command,

    /// <summary>A message published to a topic (the target is the topic).</summary>
    Publication,
}

/// <summary>How a handler fared with one message type.</summary>
/// <param name="Handler">The handler (a consumer's name).</param>
/// <param name="MessageType">The type it consumed.</param>
/// <param name="Handled">Messages whose effects committed.</param>
/// <param name="Failed">Attempts that failed (retried or dead-lettered).</param>
/// <param name="DeadLettered">Messages it sent to the dead-letter queue.</param>
/// <param name="TotalSeconds">Time spent on the handled ones, commit included.</param>
/// <param name="MaxSeconds">The longest of them.</param>
public sealed record FlowConsumption(string Handler, string MessageType, long Handled, long Failed, long DeadLettered, double TotalSeconds, double MaxSeconds)
{
    /// <summary>The mean time per handled message, in seconds.</summary>
    public double MeanSeconds => Handled == 0 ? 0 : TotalSeconds / Handled;
}

/// <summary>What a handler produced while handling one type, by type and target.</summary>
/// <param name="Handler">The handler.</param>
/// <param name="ConsumedType">The type whose handling produced it.</param>
/// <param name="MessageType">The type produced.</param>
/// <param name="Kind">Event, command or publication.</param>
/// <param name="Target">The category, queue or topic.</param>
/// <param name="Count">How many.</param>
public sealed record FlowProduction(string Handler, string ConsumedType, string MessageType, FlowOutputKind Kind, string Target, long Count);

/// <summary>
/// The choreography that actually ran: message type → handler → produced types, with counts and latency, as recorded by
/// <see cref="FlowRecorder"/>. It exports as Mermaid and JSON, and flags cycles, types no one consumes and handlers
/// that dead-letter.
/// </summary>
/// <param name="Consumptions">Each handler's record per consumed type.</param>
/// <param name="Productions">Each handler's outputs per type and target.</param>
public sealed record FlowMap(IReadOnlyList<FlowConsumption> Consumptions, IReadOnlyList<FlowProduction> Productions)
{
    /// <summary>
    /// Types produced that no recorded handler consumed. Cairn's own types (<c>cairn.*</c>: a workflow's history and
    /// timers) are drawn but never flagged.
    /// </summary>
    public IReadOnlyList<string> UnconsumedTypes =>
        [.. Productions.Select(p => p.MessageType).Distinct(StringComparer.Ordinal).Where(t => !IsCairnOwn(t) && !Consumptions.Any(c => c.MessageType == t)).Order(StringComparer.Ordinal)];

    /// <summary>True for Cairn's own message and event types, which it consumes or keeps itself.</summary>
    private static bool IsCairnOwn(string type) => EventStore.EventTypeNames.IsCairnOwn(type);

    /// <summary>Handlers that sent at least one message to a dead-letter queue.</summary>
    public IReadOnlyList<string> DeadLetteringHandlers =>
        [.. Consumptions.Where(c => c.DeadLettered > 0).Select(c => c.Handler).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>
    /// The cycles of the map: each a set of types that lead back to themselves (a type whose handling produces it
    /// again, directly or through others), then the handlers that close it, each part in name order. Edges follow what
    /// each handler produced from each type it consumed, so a handler that consumes two types does not join their paths.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>> Cycles
    {
        get
        {
            var edges = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var p in Productions.Where(p => !IsCairnOwn(p.ConsumedType) && !IsCairnOwn(p.MessageType)))
            {
                if (!edges.TryGetValue(p.ConsumedType, out var list))
                {
                    edges[p.ConsumedType] = list = [];
                }

                list.Add(p.MessageType);
            }

            var cycles = new List<IReadOnlyList<string>>();
            foreach (var component in StronglyConnected(edges))
            {
                var types = component.ToHashSet(StringComparer.Ordinal);
                var closing = Productions.Where(p => types.Contains(p.ConsumedType) && types.Contains(p.MessageType)).ToList();
                if (component.Count > 1 || closing.Count > 0)
                {
                    cycles.Add([
                        .. types.Order(StringComparer.Ordinal).Select(t => "type:" + t),
                        .. closing.Select(p => p.Handler).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).Select(h => "handler:" + h)]);
                }
            }

            return cycles;
        }
    }

    /// <summary>The map as a Mermaid flowchart: types as rounded nodes, handlers as boxes, edges with counts.</summary>
    public string ToMermaid()
    {
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        string Id(string node) => ids.TryGetValue(node, out var id) ? id : ids[node] = "n" + ids.Count.ToString(CultureInfo.InvariantCulture);
        var text = new StringBuilder("flowchart LR\n");
        var cyclic = Cycles.SelectMany(c => c).ToHashSet(StringComparer.Ordinal);
        var deadLettering = DeadLetteringHandlers.ToHashSet(StringComparer.Ordinal);
        var unconsumed = UnconsumedTypes.ToHashSet(StringComparer.Ordinal);
        foreach (var type in Consumptions.Select(c => c.MessageType).Concat(Productions.Select(p => p.MessageType)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            text.Append("    ").Append(Id("type:" + type)).Append("([\"").Append(Escape(type)).Append("\"])\n");
        }

        foreach (var handler in Consumptions.Select(c => c.Handler).Concat(Productions.Select(p => p.Handler)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            text.Append("    ").Append(Id("handler:" + handler)).Append("[\"").Append(Escape(handler)).Append("\"]\n");
        }

        foreach (var c in Consumptions.OrderBy(c => c.MessageType, StringComparer.Ordinal).ThenBy(c => c.Handler, StringComparer.Ordinal))
        {
            var label = string.Create(CultureInfo.InvariantCulture, $"{c.Handled} handled, mean {c.MeanSeconds * 1000:0.#} ms{(c.DeadLettered > 0 ? $", {c.DeadLettered} dead-lettered" : "")}");
            text.Append("    ").Append(Id("type:" + c.MessageType)).Append(" -->|\"").Append(label).Append("\"| ").Append(Id("handler:" + c.Handler)).Append('\n');
        }

        // Drawn per handler: what it produced from each type it consumed, summed.
        var drawn = Productions
            .GroupBy(p => (p.Handler, p.MessageType, p.Kind, p.Target))
            .Select(g => g.First() with { ConsumedType = "", Count = g.Sum(p => p.Count) })
            .OrderBy(p => p.Handler, StringComparer.Ordinal).ThenBy(p => p.MessageType, StringComparer.Ordinal).ThenBy(p => p.Target, StringComparer.Ordinal);
        foreach (var p in drawn)
        {
            var label = string.Create(CultureInfo.InvariantCulture, $"{p.Count} {p.Kind switch { FlowOutputKind.Event => "appended to", FlowOutputKind.Command => "sent to", _ => "published to" }} {p.Target}");
            text.Append("    ").Append(Id("handler:" + p.Handler)).Append(" -->|\"").Append(Escape(label)).Append("\"| ").Append(Id("type:" + p.MessageType)).Append('\n');
        }

        foreach (var (flagged, style) in new[] { (cyclic, "cycle"), (deadLettering.Select(h => "handler:" + h).ToHashSet(), "deadletters"), (unconsumed.Select(t => "type:" + t).ToHashSet(), "unconsumed") })
        {
            foreach (var node in flagged.Where(ids.ContainsKey).Order(StringComparer.Ordinal))
            {
                text.Append("    class ").Append(ids[node]).Append(' ').Append(style).Append('\n');
            }
        }

        text.Append("    classDef cycle stroke:#d97706,stroke-width:3px\n");
        text.Append("    classDef deadletters stroke:#dc2626,stroke-width:3px\n");
        text.Append("    classDef unconsumed stroke-dasharray:4 3\n");
        return text.ToString();
    }

    /// <summary>The map as JSON: consumptions, productions and flags.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartArray("consumptions");
            foreach (var c in Consumptions)
            {
                json.WriteStartObject();
                json.WriteString("handler", c.Handler);
                json.WriteString("messageType", c.MessageType);
                json.WriteNumber("handled", c.Handled);
                json.WriteNumber("failed", c.Failed);
                json.WriteNumber("deadLettered", c.DeadLettered);
                json.WriteNumber("meanSeconds", c.MeanSeconds);
                json.WriteNumber("maxSeconds", c.MaxSeconds);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("productions");
            foreach (var p in Productions)
            {
                json.WriteStartObject();
                json.WriteString("handler", p.Handler);
                json.WriteString("consumedType", p.ConsumedType);
                json.WriteString("messageType", p.MessageType);
                json.WriteString("kind", p.Kind.ToString());
                json.WriteString("target", p.Target);
                json.WriteNumber("count", p.Count);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("cycles");
            foreach (var cycle in Cycles)
            {
                json.WriteStartArray();
                foreach (var node in cycle)
                {
                    json.WriteStringValue(node);
                }

                json.WriteEndArray();
            }

            json.WriteEndArray();
            json.WriteStartArray("unconsumedTypes");
            foreach (var type in UnconsumedTypes)
            {
                json.WriteStringValue(type);
            }

            json.WriteEndArray();
            json.WriteStartArray("deadLetteringHandlers");
            foreach (var handler in DeadLetteringHandlers)
            {
                json.WriteStringValue(handler);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string Escape(string text) => MermaidText.Label(text);

    /// <summary>Tarjan's strongly connected components, iteratively.</summary>
    private static List<List<string>> StronglyConnected(Dictionary<string, List<string>> edges)
    {
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var low = new Dictionary<string, int>(StringComparer.Ordinal);
        var onStack = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        var components = new List<List<string>>();
        var nodes = edges.Keys.Concat(edges.Values.SelectMany(v => v)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (var root in nodes)
        {
            if (index.ContainsKey(root))
            {
                continue;
            }

            var work = new Stack<(string Node, int Next)>();
            work.Push((root, 0));
            index[root] = low[root] = index.Count;
            stack.Push(root);
            onStack.Add(root);
            while (work.Count > 0)
            {
                var (node, next) = work.Pop();
                var successors = edges.GetValueOrDefault(node) ?? [];
                if (next < successors.Count)
                {
                    work.Push((node, next + 1));
                    var successor = successors[next];
                    if (!index.ContainsKey(successor))
                    {
                        index[successor] = low[successor] = index.Count;
                        stack.Push(successor);
                        onStack.Add(successor);
                        work.Push((successor, 0));
                    }
                    else if (onStack.Contains(successor))
                    {
                        low[node] = Math.Min(low[node], index[successor]);
                    }

                    continue;
                }

                if (work.Count > 0)
                {
                    var parent = work.Peek().Node;
                    low[parent] = Math.Min(low[parent], low[node]);
                }

                if (low[node] == index[node])
                {
                    var component = new List<string>();
                    string member;
                    do
                    {
                        member = stack.Pop();
                        onStack.Remove(member);
                        component.Add(member);
                    }
                    while (member != node);
                    components.Add(component);
                }
            }
        }

        return components;
    }
}

/// <summary>
/// Records, per handler, which message types it consumed and which it produced, with counts and latency: the flow map
/// of the choreography that actually ran in this process. Hosted consumers record into the one <c>AddCairn</c>
/// registers.
/// </summary>
public sealed class FlowRecorder
{
    private readonly ConcurrentDictionary<(string Handler, string Type), Consumption> _consumptions = new();
    private readonly ConcurrentDictionary<(string Handler, string Consumed, string Type, FlowOutputKind Kind, string Target), long[]> _productions = new();

    /// <summary>Records a handled message and what its committed effects produced.</summary>
    public void RecordHandled(string handler, string messageType, TimeSpan duration, IEnumerable<(FlowOutputKind Kind, string MessageType, string Target)> produced)
    {
        ArgumentNullException.ThrowIfNull(produced);
        var consumption = _consumptions.GetOrAdd((handler, messageType), _ => new Consumption());
        lock (consumption)
        {
            consumption.Handled++;
            consumption.TotalSeconds += duration.TotalSeconds;
            consumption.MaxSeconds = Math.Max(consumption.MaxSeconds, duration.TotalSeconds);
        }

        foreach (var (kind, type, target) in produced)
        {
            Interlocked.Increment(ref _productions.GetOrAdd((handler, messageType, type, kind, target), _ => new long[1])[0]);
        }
    }

    /// <summary>Records a failed attempt, and whether the message went to the dead-letter queue.</summary>
    public void RecordFailed(string handler, string messageType, bool deadLettered)
    {
        var consumption = _consumptions.GetOrAdd((handler, messageType), _ => new Consumption());
        lock (consumption)
        {
            consumption.Failed++;
            if (deadLettered)
            {
                consumption.DeadLettered++;
            }
        }
    }

    /// <summary>The map as recorded so far.</summary>
    public FlowMap Snapshot()
    {
        var consumptions = new List<FlowConsumption>();
        foreach (var ((handler, type), c) in _consumptions)
        {
            lock (c)
            {
                consumptions.Add(new FlowConsumption(handler, type, c.Handled, c.Failed, c.DeadLettered, c.TotalSeconds, c.MaxSeconds));
            }
        }

        var productions = _productions.Select(p => new FlowProduction(p.Key.Handler, p.Key.Consumed, p.Key.Type, p.Key.Kind, p.Key.Target, Interlocked.Read(ref p.Value[0])));
        return new FlowMap(
            [.. consumptions.OrderBy(c => c.Handler, StringComparer.Ordinal).ThenBy(c => c.MessageType, StringComparer.Ordinal)],
            [.. productions.OrderBy(p => p.Handler, StringComparer.Ordinal).ThenBy(p => p.MessageType, StringComparer.Ordinal).ThenBy(p => p.Target, StringComparer.Ordinal).ThenBy(p => p.ConsumedType, StringComparer.Ordinal)]);
    }

    private sealed class Consumption
    {
        public long Handled { get; set; }

        public long Failed { get; set; }

        public long DeadLettered { get; set; }

        public double TotalSeconds { get; set; }

        public double MaxSeconds { get; set; }
    }
}
