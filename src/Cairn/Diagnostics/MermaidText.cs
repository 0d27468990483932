using System.Text.RegularExpressions;

namespace Cairn.Diagnostics;

/// <summary>Text inside a quoted Mermaid label, as the charts of flows and traces write it.</summary>
internal static partial class MermaidText
{
    /// <summary>
    /// The text as a label shows it: '#' first (Mermaid decodes "#123;" as a character), then quotes and angle brackets
    /// as entity codes, and line breaks as the label's own.
    /// </summary>
    public static string Label(string text) => LineBreaks().Replace(
        text
            .Replace("#", "#35;", StringComparison.Ordinal)
            .Replace("\"", "#quot;", StringComparison.Ordinal)
            .Replace("<", "#lt;", StringComparison.Ordinal)
            .Replace(">", "#gt;", StringComparison.Ordinal),
        "<br/>");

    /// <summary>Every kind of line break: CR LF, CR, LF, NEL and the Unicode line and paragraph separators.</summary>
    [GeneratedRegex("\r\n|[\n\r\u0085\u2028\u2029]")]
    public static partial Regex LineBreaks();
}
