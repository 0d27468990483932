namespace Cairn.Envelopes;

/// <summary>
/// The check every name and attribute Cairn stores goes through: no control characters (U+0000–U+001F and
/// U+007F–U+009F, those <see cref="char.IsControl(char)"/> names). Vectorised range searches, since the check runs for
/// every message and event's attributes.
/// </summary>
internal static class ControlCharacters
{
    /// <summary>Whether <paramref name="value"/> holds a control character.</summary>
    public static bool In(string value) =>
        value.AsSpan().ContainsAnyInRange('\u0000', '\u001F') || value.AsSpan().ContainsAnyInRange('\u007F', '\u009F');
}
