using System.Text.Json;

namespace Cairn.Messaging.Filtering;

/// <summary>
/// A compiled, immutable filter rule in the EventBridge pattern language: exact values, lists, <c>prefix</c>,
/// <c>suffix</c>, <c>anything-but</c>, <c>numeric</c>, <c>exists</c>, <c>equals-ignore-case</c>, <c>wildcard</c>,
/// <c>cidr</c> and <c>$or</c>. Safe to share between threads.
/// </summary>
public sealed partial class FilterRule
{
    private readonly ObjectPattern _root;
    private readonly string _source;

    private FilterRule(ObjectPattern root, string source)
    {
        _root = root;
        _source = source;
    }

    /// <summary>Whether the JSON document matches the rule. A document that is not a JSON object never matches.</summary>
    /// <param name="document">The document, such as an envelope rendered as JSON.</param>
    public bool Matches(JsonElement document) =>
        document.ValueKind == JsonValueKind.Object && _root.Matches(document);

    /// <summary>Whether the UTF-8 JSON document matches the rule. A document that is not a JSON object never matches.</summary>
    /// <param name="utf8Json">The document as UTF-8 JSON.</param>
    /// <exception cref="JsonException">The bytes are not valid JSON.</exception>
    public bool Matches(ReadOnlyMemory<byte> utf8Json)
    {
        using var document = JsonDocument.Parse(utf8Json, PreparedMessage.RenderedOptions);
        return Matches(document.RootElement);
    }

    /// <summary>The rule's JSON text, as it was given to <see cref="Parse(string)"/>.</summary>
    public override string ToString() => _source;

    /// <summary>The rule's JSON, read within the rule's own depth limit (deeper than a JSON reader's default).</summary>
    internal System.Text.Json.Nodes.JsonNode ToJsonNode() => System.Text.Json.Nodes.JsonNode.Parse(_source, documentOptions: RuleOptions)!;
}
