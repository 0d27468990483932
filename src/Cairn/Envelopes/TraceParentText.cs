namespace Cairn.Envelopes;

/// <summary>
/// The W3C Trace Context form of a <c>traceparent</c>, which CloudEvents' distributed tracing extension carries:
/// <c>00-&lt;32 hex trace id&gt;-&lt;16 hex parent id&gt;-&lt;2 hex flags&gt;</c>, in lower case, neither id all zeros
/// (a later version may add fields after a <c>-</c>; version <c>ff</c> is invalid). Not <c>ActivityContext.TryParse</c>,
/// which reads a traceparent for a span to continue: it refuses a later version's added fields and takes any separator
/// after the version.
/// </summary>
internal static class TraceParentText
{
    /// <summary>What a refusal says a traceparent must be.</summary>
    public const string Rule = "W3C Trace Context: version-traceid-parentid-flags in lower-case hex, such as 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// <summary>Whether <paramref name="value"/> is a traceparent W3C Trace Context accepts.</summary>
    public static bool IsValid(string? value)
    {
        if (value is null || value.Length < 55 || (value.Length > 55 && (value[0..2] == "00" || value[55] != '-')))
        {
            return false;
        }

        return IsHex(value.AsSpan(0, 2)) && value[0..2] != "ff" && value[2] == '-'
            && IsHex(value.AsSpan(3, 32)) && !IsZeros(value.AsSpan(3, 32)) && value[35] == '-'
            && IsHex(value.AsSpan(36, 16)) && !IsZeros(value.AsSpan(36, 16)) && value[52] == '-'
            && IsHex(value.AsSpan(53, 2));
    }

    private static bool IsHex(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (c is not ((>= '0' and <= '9') or (>= 'a' and <= 'f')))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsZeros(ReadOnlySpan<char> text) => !text.ContainsAnyExcept('0');
}
