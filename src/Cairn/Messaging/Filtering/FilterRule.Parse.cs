using System.Globalization;
using System.Net;
using System.Text.Json;
using Cairn.EventStore;

namespace Cairn.Messaging.Filtering;

public sealed partial class FilterRule
{
    private static readonly string[] NumericOperators = ["<", "<=", ">", ">=", "="];

    /// <summary>Compiles a rule written in the EventBridge pattern language.</summary>
    /// <param name="json">The rule: a JSON object whose leaves are arrays of values and operators.</param>
    /// <returns>The compiled rule.</returns>
    /// <exception cref="InvalidFilterRuleException">The rule is malformed; its <see cref="InvalidFilterRuleException.Path"/> says where.</exception>
    public static FilterRule Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, RuleOptions);
        }
        catch (JsonException e) when (NestsTooDeeply(json))
        {
            throw new InvalidFilterRuleException("$", $"the rule nests deeper than {RuleOptions.MaxDepth} levels, past any data an append or a send accepts ({JsonPayload.MaxDepth} levels)", e);
        }
        catch (JsonException e)
        {
            throw new InvalidFilterRuleException("$", "the rule is not valid JSON", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw Fault("$", "the rule must be a JSON object");
            RefuseUnpairedSurrogates(root, "$");
            return new FilterRule(ParseObject(root, "$", allowEmpty: true), json);
        }
    }

    /// <summary>
    /// A rule reaches the deepest data a message carries: the envelope holds data one level down, and a rule's leaf is
    /// an array below the value it tests, so it nests two levels deeper than data may.
    /// </summary>
    private static readonly JsonDocumentOptions RuleOptions = new() { MaxDepth = JsonPayload.MaxDepth + 2 };

    /// <summary>Whether the text, read without a depth limit, goes deeper than <see cref="RuleOptions"/> allows before any fault of its JSON.</summary>
    private static bool NestsTooDeeply(string json)
    {
        var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(json), new JsonReaderOptions { MaxDepth = int.MaxValue });
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray && reader.CurrentDepth >= RuleOptions.MaxDepth)
                {
                    return true;
                }
            }
        }
        catch (JsonException)
        {
            // Malformed before it got that deep.
        }

        return false;
    }

    private static InvalidFilterRuleException Fault(string path, string reason) => new(path, reason);

    /// <summary>
    /// Refuses a name or string escaping half of a surrogate pair (<c>"\ud800"</c>): valid JSON text, but no .NET string
    /// reads it, so the rule could not be compiled, nor compared with anything.
    /// </summary>
    private static void RefuseUnpairedSurrogates(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException e)
                    {
                        throw new InvalidFilterRuleException(path, "a field name holds half of a surrogate pair, which is no text", e);
                    }

                    RefuseUnpairedSurrogates(property.Value, Child(path, name));
                }

                break;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    RefuseUnpairedSurrogates(item, Index(path, index++));
                }

                break;
            case JsonValueKind.String:
                try
                {
                    _ = element.GetString();
                }
                catch (InvalidOperationException e)
                {
                    throw new InvalidFilterRuleException(path, "the string holds half of a surrogate pair, which is no text", e);
                }

                break;
        }
    }

    private static string Child(string path, string name) =>
        name.Length > 0 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '$')
            ? $"{path}.{name}"
            : $"{path}['{name.Replace("'", "\\'", StringComparison.Ordinal)}']";

    private static string Index(string path, int index) => $"{path}[{index.ToString(CultureInfo.InvariantCulture)}]";

    private static ObjectPattern ParseObject(JsonElement element, string path, bool allowEmpty)
    {
        var fields = new List<KeyValuePair<string, FieldPattern>>();
        var ors = new List<IReadOnlyList<ObjectPattern>>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            var childPath = Child(path, property.Name);
            if (!names.Add(property.Name))
                throw Fault(childPath, "a field may appear only once in an object");
            if (property.Name == "$or")
            {
                ors.Add(ParseOr(property.Value, childPath));
                continue;
            }

            fields.Add(new(property.Name, property.Value.ValueKind switch
            {
                JsonValueKind.Object => new NestedPattern(ParseObject(property.Value, childPath, allowEmpty: false)),
                JsonValueKind.Array => ParseLeaf(property.Value, childPath),
                _ => throw Fault(childPath, "a leaf value must be an array of values or operators"),
            }));
        }

        if (!allowEmpty && fields.Count == 0 && ors.Count == 0)
            throw Fault(path, "a nested object must not be empty");
        return new ObjectPattern(fields, ors);
    }

    private static List<ObjectPattern> ParseOr(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw Fault(path, "$or must be a non-empty array of objects");
        if (value.GetArrayLength() == 0)
            throw Fault(path, "$or must not be empty");
        var alternatives = new List<ObjectPattern>();
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            var itemPath = Index(path, i++);
            if (item.ValueKind != JsonValueKind.Object)
                throw Fault(itemPath, "each $or alternative must be an object");
            alternatives.Add(ParseObject(item, itemPath, allowEmpty: false));
        }

        return alternatives;
    }

    private static LeafPattern ParseLeaf(JsonElement array, string path)
    {
        if (array.GetArrayLength() == 0)
            throw Fault(path, "a leaf array must not be empty");
        var matchers = new List<Matcher>();
        var i = 0;
        foreach (var item in array.EnumerateArray())
            matchers.Add(ParseValue(item, Index(path, i++)));
        return new LeafPattern(matchers);
    }

    private static Matcher ParseValue(JsonElement item, string path) => item.ValueKind switch
    {
        JsonValueKind.String => new StringMatcher(item.GetString()!),
        JsonValueKind.Number => new NumberMatcher(Number(item, path), Matcher.ExactDecimal(item)),
        JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null => new LiteralMatcher(item.ValueKind),
        JsonValueKind.Object => ParseOperator(item, path),
        _ => throw Fault(path, "a leaf array may hold only strings, numbers, booleans, null and operator objects"),
    };

    private static double Number(JsonElement item, string path) =>
        item.TryGetDouble(out var d) && double.IsFinite(d) ? d : throw Fault(path, "the number is out of range");

    private static Matcher ParseOperator(JsonElement item, string path)
    {
        using var properties = item.EnumerateObject();
        if (!properties.MoveNext())
            throw Fault(path, "an operator object must hold exactly one operator");
        var op = properties.Current;
        if (properties.MoveNext())
            throw Fault(Child(path, properties.Current.Name), "an operator object must hold exactly one operator");
        var opPath = Child(path, op.Name);
        var operand = op.Value;
        return op.Name switch
        {
            "prefix" => ParsePrefixOrSuffix(operand, opPath, "prefix", prefix: true),
            "suffix" => ParsePrefixOrSuffix(operand, opPath, "suffix", prefix: false),
            "equals-ignore-case" => new StringTestMatcher(EqualsIgnoreCase(RequireString(operand, opPath, "equals-ignore-case"))),
            "wildcard" => ParseWildcard(operand, opPath),
            "anything-but" => ParseAnythingBut(operand, opPath),
            "numeric" => ParseNumeric(operand, opPath),
            "exists" => operand.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? new ExistsMatcher(operand.GetBoolean())
                : throw Fault(opPath, "exists must be true or false"),
            "cidr" => ParseCidr(operand, opPath),
            _ => throw Fault(opPath, $"'{op.Name}' is not a known operator"),
        };
    }

    private static string RequireString(JsonElement operand, string path, string op) =>
        operand.ValueKind == JsonValueKind.String ? operand.GetString()! : throw Fault(path, $"{op} must be a string");

    private static Func<string, bool> EqualsIgnoreCase(string expected) =>
        s => string.Equals(s, expected, StringComparison.OrdinalIgnoreCase);

    private static StringTestMatcher ParsePrefixOrSuffix(JsonElement operand, string path, string op, bool prefix) =>
        new(PrefixOrSuffixTest(operand, path, op, prefix));

    private static Func<string, bool> PrefixOrSuffixTest(JsonElement operand, string path, string op, bool prefix)
    {
        var comparison = StringComparison.Ordinal;
        string text;
        if (operand.ValueKind == JsonValueKind.Object)
        {
            using var properties = operand.EnumerateObject();
            if (!properties.MoveNext() || properties.Current.Name != "equals-ignore-case")
                throw Fault(path, $"{op} must be a string or {{\"equals-ignore-case\": string}}");
            var inner = properties.Current;
            if (properties.MoveNext())
                throw Fault(Child(path, properties.Current.Name), $"{op} must be a string or {{\"equals-ignore-case\": string}}");
            text = RequireString(inner.Value, Child(path, inner.Name), "equals-ignore-case");
            comparison = StringComparison.OrdinalIgnoreCase;
        }
        else
        {
            text = RequireString(operand, path, op);
        }

        return prefix ? s => s.StartsWith(text, comparison) : s => s.EndsWith(text, comparison);
    }

    private static Func<string, bool> WildcardTest(JsonElement operand, string path)
    {
        var pattern = RequireString(operand, path, "wildcard");
        var segments = Wildcard.Compile(pattern, out var error) ?? throw Fault(path, error!);
        return s => Wildcard.Matches(segments, s);
    }

    private static StringTestMatcher ParseWildcard(JsonElement operand, string path) => new(WildcardTest(operand, path));

    private static NumericMatcher ParseNumeric(JsonElement operand, string path)
    {
        if (operand.ValueKind != JsonValueKind.Array)
            throw Fault(path, "numeric must be an array of operator and number pairs");
        var length = operand.GetArrayLength();
        if (length == 0 || length % 2 != 0)
            throw Fault(path, "numeric must hold operator and number pairs");
        var conditions = new List<(string, double, decimal?)>();
        for (var i = 0; i < length; i += 2)
        {
            var op = operand[i];
            var bound = operand[i + 1];
            if (op.ValueKind != JsonValueKind.String || !NumericOperators.Contains(op.GetString()))
                throw Fault(Index(path, i), "a numeric operator must be one of <, <=, >, >=, =");
            if (bound.ValueKind != JsonValueKind.Number)
                throw Fault(Index(path, i + 1), "a numeric bound must be a number");
            var number = Number(bound, Index(path, i + 1));
            // The exact decimal comes from the bound's JSON text, not from the double, which has already rounded it.
            conditions.Add((op.GetString()!, number, Matcher.ExactDecimal(bound)));
        }

        return new NumericMatcher(conditions);
    }

    private static CidrMatcher ParseCidr(JsonElement operand, string path)
    {
        var text = RequireString(operand, path, "cidr");
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !CidrMatcher.TryParseAddress(text[..slash], out _) || !IPNetwork.TryParse(text, out var network))
            throw Fault(path, "cidr must be a valid IPv4 or IPv6 CIDR block, such as 10.0.0.0/24 or 2001:db8::/32");
        return new CidrMatcher(network);
    }

    private static AnythingButMatcher ParseAnythingBut(JsonElement operand, string path)
    {
        switch (operand.ValueKind)
        {
            case JsonValueKind.String:
            case JsonValueKind.Number:
                return new AnythingButMatcher([AnythingButValue(operand, path)], stringsOnly: false);
            case JsonValueKind.Array:
                if (operand.GetArrayLength() == 0)
                    throw Fault(path, "an anything-but list must not be empty");
                var excluded = new List<Matcher>();
                var i = 0;
                foreach (var item in operand.EnumerateArray())
                    excluded.Add(AnythingButValue(item, Index(path, i++)));
                return new AnythingButMatcher(excluded, stringsOnly: false);
            case JsonValueKind.Object:
                using (var properties = operand.EnumerateObject())
                {
                    if (!properties.MoveNext())
                        throw Fault(path, "anything-but must hold exactly one operator");
                    var op = properties.Current;
                    if (properties.MoveNext())
                        throw Fault(Child(path, properties.Current.Name), "anything-but must hold exactly one operator");
                    var opPath = Child(path, op.Name);
                    Func<JsonElement, string, Func<string, bool>> parse = op.Name switch
                    {
                        "prefix" => (e, p) => PrefixOrSuffixTest(e, p, "prefix", prefix: true),
                        "suffix" => (e, p) => PrefixOrSuffixTest(e, p, "suffix", prefix: false),
                        "wildcard" => WildcardTest,
                        "equals-ignore-case" => (e, p) => EqualsIgnoreCase(RequireString(e, p, "equals-ignore-case")),
                        _ => throw Fault(opPath, $"'{op.Name}' is not an operator anything-but accepts (prefix, suffix, wildcard, equals-ignore-case)"),
                    };
                    var tests = new List<Matcher>();
                    if (op.Value.ValueKind == JsonValueKind.Array)
                    {
                        if (op.Value.GetArrayLength() == 0)
                            throw Fault(opPath, $"an anything-but {op.Name} list must not be empty");
                        var j = 0;
                        foreach (var item in op.Value.EnumerateArray())
                            tests.Add(new StringTestMatcher(parse(item, Index(opPath, j++))));
                    }
                    else
                    {
                        tests.Add(new StringTestMatcher(parse(op.Value, opPath)));
                    }

                    return new AnythingButMatcher(tests, stringsOnly: true);
                }

            default:
                throw Fault(path, "anything-but must be a string, a number, a list of them, or an operator object");
        }
    }

    private static Matcher AnythingButValue(JsonElement item, string path) => item.ValueKind switch
    {
        JsonValueKind.String => new StringMatcher(item.GetString()!),
        JsonValueKind.Number => new NumberMatcher(Number(item, path), Matcher.ExactDecimal(item)),
        _ => throw Fault(path, "an anything-but value must be a string or a number"),
    };
}
