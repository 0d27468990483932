using System.Net;
using System.Text.Json;
using Cairn.Serialization;

namespace Cairn.Messaging.Filtering;

/// <summary>An object of the rule: every field must match, and each <c>$or</c> must have a matching alternative.</summary>
internal sealed class ObjectPattern(IReadOnlyList<KeyValuePair<string, FieldPattern>> fields, IReadOnlyList<IReadOnlyList<ObjectPattern>> ors)
{
    /// <summary>Matches an event object, or an absent one (null) where only <c>exists: false</c> can match.</summary>
    public bool Matches(JsonElement? element)
    {
        foreach (var (name, pattern) in fields)
        {
            JsonElement? value = element is { } e && e.TryGetProperty(name, out var v) ? v : null;
            if (!pattern.Matches(value))
                return false;
        }

        foreach (var alternatives in ors)
        {
            var any = false;
            foreach (var alternative in alternatives)
            {
                if (alternative.Matches(element))
                {
                    any = true;
                    break;
                }
            }

            if (!any)
                return false;
        }

        return true;
    }
}

/// <summary>The pattern of one field of the rule: a nested object or a leaf list.</summary>
internal abstract class FieldPattern
{
    public abstract bool Matches(JsonElement? value);
}

/// <summary>A nested object of the rule; an array of objects in the event matches if any element does.</summary>
internal sealed class NestedPattern(ObjectPattern inner) : FieldPattern
{
    public override bool Matches(JsonElement? value)
    {
        var seen = false;
        if (value is { } v && AnyObject(v, inner, ref seen))
            return true;
        // No object at this path: the nested fields are all absent, which only exists:false can match.
        return !seen && inner.Matches(null);
    }

    private static bool AnyObject(JsonElement value, ObjectPattern pattern, ref bool seen)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                seen = true;
                return pattern.Matches(value);
            case JsonValueKind.Array:
                foreach (var item in value.EnumerateArray())
                {
                    if (AnyObject(item, pattern, ref seen))
                        return true;
                }

                return false;
            default:
                return false;
        }
    }
}

/// <summary>A leaf list of the rule: OR over its matchers, and over the event's values when the event holds an array.</summary>
internal sealed class LeafPattern(IReadOnlyList<Matcher> matchers) : FieldPattern
{
    public override bool Matches(JsonElement? value)
    {
        var present = false;
        if (value is { } v && AnyLeaf(v, ref present))
            return true;
        if (present)
            return false;
        foreach (var matcher in matchers)
        {
            if (matcher is ExistsMatcher { Exists: false })
                return true;
        }

        return false;
    }

    private bool AnyLeaf(JsonElement value, ref bool present)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Array:
                foreach (var item in value.EnumerateArray())
                {
                    if (AnyLeaf(item, ref present))
                        return true;
                }

                return false;
            case JsonValueKind.Object:
                // An intermediate node is not a leaf value: exists and the value operators do not apply to it.
                return false;
            default:
                present = true;
                foreach (var matcher in matchers)
                {
                    if (matcher.Matches(value))
                        return true;
                }

                return false;
        }
    }
}

/// <summary>One value or operator of a leaf list, tested against one leaf value of the event.</summary>
internal abstract class Matcher
{
    public abstract bool Matches(JsonElement value);

    /// <summary>
    /// Whether a number equals <paramref name="number"/>: compared as decimals when both read as decimals without
    /// rounding (so large integer ids and long amounts are told apart, which doubles round together past 2^53), else as
    /// doubles (so 1e-30, which a decimal rounds to 0, is not 0).
    /// </summary>
    public static bool NumberEquals(JsonElement value, double number, decimal? exact) =>
        value.ValueKind == JsonValueKind.Number
        && value.TryGetDouble(out var d)
        && Compare(d, exact is null ? null : ExactDecimal(value), number, exact) == 0;

    /// <summary>
    /// How a number of the event orders against a number of the rule (negative, zero or positive): as decimals when
    /// both read as decimals without rounding (see <see cref="ExactDecimal"/>), else as doubles. Equality and the
    /// <c>numeric</c> comparisons share it, so a value equal to a bound is also neither above nor below it.
    /// </summary>
    public static int Compare(double value, decimal? valueExact, double number, decimal? numberExact) =>
        valueExact is { } v && numberExact is { } n ? v.CompareTo(n) : value.CompareTo(number);

    /// <summary>
    /// A string value as text, or null when it escapes half of a surrogate pair: valid JSON a send accepts, but no text a
    /// string test can look at, so no such test matches it (an exact value still compares its bytes).
    /// </summary>
    public static string? TryGetText(JsonElement value)
    {
        try
        {
            return value.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The number as a decimal, or null when a decimal would round it (<see cref="JsonNumbers.TryReadExactly(JsonElement, out decimal)"/>).</summary>
    public static decimal? ExactDecimal(JsonElement value) => JsonNumbers.TryReadExactly(value, out var m) ? m : null;
}

internal sealed class StringMatcher(string expected) : Matcher
{
    public string Expected { get; } = expected;

    public override bool Matches(JsonElement value) =>
        value.ValueKind == JsonValueKind.String && value.ValueEquals(Expected);
}

internal sealed class NumberMatcher(double expected, decimal? exact) : Matcher
{
    public double Expected { get; } = expected;

    public override bool Matches(JsonElement value) => NumberEquals(value, Expected, exact);
}

internal sealed class LiteralMatcher(JsonValueKind kind) : Matcher
{
    public override bool Matches(JsonElement value) => value.ValueKind == kind;
}

internal sealed class ExistsMatcher(bool exists) : Matcher
{
    public bool Exists { get; } = exists;

    // Reached only for a present leaf value; the absent case is decided by LeafPattern.
    public override bool Matches(JsonElement value) => Exists;
}

/// <summary>A test on string values only: prefix, suffix, equals-ignore-case, wildcard.</summary>
internal sealed class StringTestMatcher(Func<string, bool> test) : Matcher
{
    public Func<string, bool> Test { get; } = test;

    public override bool Matches(JsonElement value) =>
        value.ValueKind == JsonValueKind.String && TryGetText(value) is { } text && Test(text);
}

/// <summary>
/// <c>numeric</c>: every condition holds. Each bound keeps its exact decimal from the rule's JSON text (null where a
/// decimal could round it), so the comparisons are as exact as equality (<see cref="Matcher.Compare"/>).
/// </summary>
internal sealed class NumericMatcher(IReadOnlyList<(string Op, double Bound, decimal? Exact)> conditions) : Matcher
{
    public override bool Matches(JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var d))
            return false;
        var exact = ExactDecimal(value);
        foreach (var (op, bound, boundExact) in conditions)
        {
            var order = Compare(d, exact, bound, boundExact);
            var ok = op switch
            {
                "<" => order < 0,
                "<=" => order <= 0,
                ">" => order > 0,
                ">=" => order >= 0,
                _ => order == 0,
            };
            if (!ok)
                return false;
        }

        return true;
    }
}

internal sealed class CidrMatcher(IPNetwork network) : Matcher
{
    public override bool Matches(JsonElement value) =>
        value.ValueKind == JsonValueKind.String
        && TryParseAddress(TryGetText(value), out var address)
        && address.AddressFamily == network.BaseAddress.AddressFamily
        && network.Contains(address);

    /// <summary>
    /// An IP address as written today: IPv4 as four decimal octets without leading zeros, IPv6 as hexadecimal groups
    /// and colons (an IPv4 tail allowed). <see cref="IPAddress.TryParse(string?, out IPAddress?)"/> also takes the old
    /// shorthands ("10.1", "167772161", "0xA.0.0.1"), reads "010" as octal 8, and takes an endpoint ("[2001:db8::5]:443")
    /// or a zone ("fe80::1%eth0") as its address: none of them is an address in an event.
    /// </summary>
    public static bool TryParseAddress(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        var written = text.Contains(':', StringComparison.Ordinal) ? IsColonHex(text) : IsDottedQuad(text);
        return written && IPAddress.TryParse(text, out address);
    }

    private static bool IsDottedQuad(string text)
    {
        var parts = text.Split('.');
        return parts.Length == 4 && parts.All(p => p.Length is >= 1 and <= 3 && p.All(char.IsAsciiDigit) && (p.Length == 1 || p[0] != '0') && int.Parse(p, System.Globalization.CultureInfo.InvariantCulture) <= 255);
    }

    private static bool IsColonHex(string text)
    {
        var lastColon = text.LastIndexOf(':');
        var tail = text[(lastColon + 1)..];
        return text[..lastColon].All(c => c == ':' || char.IsAsciiHexDigit(c))
            && (tail.All(char.IsAsciiHexDigit) || IsDottedQuad(tail));
    }
}

/// <summary>
/// <c>anything-but</c>: a present leaf value matches when none of the inner matchers does. With a string test
/// (prefix, suffix, wildcard, equals-ignore-case) only string values are considered.
/// </summary>
internal sealed class AnythingButMatcher(IReadOnlyList<Matcher> excluded, bool stringsOnly) : Matcher
{
    public override bool Matches(JsonElement value)
    {
        if (stringsOnly && value.ValueKind != JsonValueKind.String)
            return false;
        foreach (var matcher in excluded)
        {
            if (matcher.Matches(value))
                return false;
        }

        return true;
    }
}

internal static class Wildcard
{
    /// <summary>Splits a wildcard pattern into literal segments around its unescaped <c>*</c>.</summary>
    public static List<string>? Compile(string pattern, out string? error)
    {
        error = null;
        var segments = new List<string>();
        var current = new System.Text.StringBuilder();
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '\\')
            {
                if (i + 1 < pattern.Length && pattern[i + 1] is '*' or '\\')
                {
                    current.Append(pattern[++i]);
                    continue;
                }

                error = "a backslash in a wildcard must escape '*' or '\\'";
                return null;
            }

            if (c == '*')
            {
                if (i + 1 < pattern.Length && pattern[i + 1] == '*')
                {
                    error = "a wildcard may not hold consecutive '*' characters";
                    return null;
                }

                segments.Add(current.ToString());
                current.Clear();
                continue;
            }

            current.Append(c);
        }

        segments.Add(current.ToString());
        return segments;
    }

    /// <summary>Whether the text matches the segments: literal segments joined by runs of any characters.</summary>
    public static bool Matches(IReadOnlyList<string> segments, string text, StringComparison comparison = StringComparison.Ordinal)
    {
        if (segments.Count == 1)
            return string.Equals(segments[0], text, comparison);
        var first = segments[0];
        var last = segments[^1];
        if (text.Length < first.Length + last.Length
            || !text.StartsWith(first, comparison)
            || !text.EndsWith(last, comparison))
            return false;
        var position = first.Length;
        var end = text.Length - last.Length;
        for (var i = 1; i < segments.Count - 1; i++)
        {
            var found = text.IndexOf(segments[i], position, end - position, comparison);
            if (found < 0)
                return false;
            position = found + segments[i].Length;
        }

        return true;
    }
}
