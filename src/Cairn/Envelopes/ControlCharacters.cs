using System.Buffers;

namespace Cairn.Envelopes;

/// <summary>
/// The check every name and attribute Cairn stores goes through: no control characters (U+0000–U+001F and
/// U+007F–U+009F, those <see cref="char.IsControl(char)"/> names). A vectorised search, since the check runs for every
/// message and event's attributes.
/// </summary>
internal static class ControlCharacters
{
    private static readonly SearchValues<char> Controls = SearchValues.Create(
        "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u0009\u000A\u000B\u000C\u000D\u000E\u000F" +
        "\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001A\u001B\u001C\u001D\u001E\u001F" +
        "\u007F\u0080\u0081\u0082\u0083\u0084\u0085\u0086\u0087\u0088\u0089\u008A\u008B\u008C\u008D\u008E\u008F" +
        "\u0090\u0091\u0092\u0093\u0094\u0095\u0096\u0097\u0098\u0099\u009A\u009B\u009C\u009D\u009E\u009F");

    /// <summary>Whether <paramref name="value"/> holds a control character.</summary>
    public static bool In(string value) => value.AsSpan().ContainsAny(Controls);
}
