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
