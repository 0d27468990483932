namespace Cairn.Envelopes;

/// <summary>
/// The check every name and attribute Cairn stores goes through: no control characters (U+0000–U+001F and
/// U+007F–U+009F, those <see cref="char.IsControl(char)"/> names), and no unpaired UTF-16 surrogate, which has no
/// UTF-8 form (PostgreSQL refuses one, SQLite would store U+FFFD in its place). Vectorised range searches first, since
/// the check runs for every message and event's attributes.
/// </summary>
internal static class StoredText
{
    /// <summary>What a refusal names: the characters <see cref="Refuses(string)"/> refuses.</summary>
    public const string Refused = "control characters or unpaired surrogates";

    /// <summary>Whether <paramref name="value"/> holds a control character or an unpaired surrogate.</summary>
    public static bool Refuses(string value) => Refuses(value.AsSpan());

    /// <inheritdoc cref="Refuses(string)"/>
    public static bool Refuses(ReadOnlySpan<char> value) =>
        value.ContainsAnyInRange('\u0000', '\u001F') || value.ContainsAnyInRange('\u007F', '\u009F')
        || HasUnpairedSurrogate(value);

    /// <summary>
    /// Free text (a dead letter's reason, often an exception's message) as every backend can store it: a NUL, which
    /// PostgreSQL's text cannot hold, and an unpaired surrogate become U+FFFD; the same string when it has neither.
    /// </summary>
    public static string Storable(string value)
    {
        if (!value.Contains('\0', StringComparison.Ordinal) && !HasUnpairedSurrogate(value))
        {
            return value;
        }

        var chars = value.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (char.IsHighSurrogate(chars[i]) && i + 1 < chars.Length && char.IsLowSurrogate(chars[i + 1]))
            {
                i++;
            }
            else if (chars[i] == '\0' || char.IsSurrogate(chars[i]))
            {
                chars[i] = '\uFFFD';
            }
        }

        return new string(chars);
    }

    /// <summary>
    /// Whether <paramref name="value"/> holds an unpaired surrogate: the check for free text (a metadata value), where
    /// control characters may stand.
    /// </summary>
    public static bool HasUnpairedSurrogate(ReadOnlySpan<char> value)
    {
        if (!value.ContainsAnyInRange('\uD800', '\uDFFF'))
        {
            return false;
        }

        for (var i = 0; i < value.Length; i++)
        {
            if (char.IsHighSurrogate(value[i]) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(value[i]))
            {
                return true;
            }
        }

        return false;
    }
}
