using System.Globalization;
using System.Text;

namespace Cairn.Schemas;

/// <summary>
/// The keys of a generated AsyncAPI document. AsyncAPI requires component keys to match
/// <c>^[a-zA-Z0-9\.\-_]+$</c>, so every name is escaped the same way wherever it becomes a key: letters, digits,
/// <c>.</c> and <c>-</c> stay; <c>_</c> becomes <c>__</c>; any other character becomes <c>_</c> and the two
/// upper-case hex digits of each of its UTF-8 bytes (<c>:</c> is <c>_3A</c>); a lone surrogate, which has no UTF-8
/// form, becomes <c>_U</c> and the four hex digits of its code unit. The escape can be read back, so two names never
/// share a key.
/// </summary>
public static class AsyncApiKeys
{
    /// <summary>The key of the envelope's header schema in <c>components.schemas</c>.</summary>
    public const string EnvelopeSchema = "cairn.envelope";

    /// <summary>The key of the correlation id in <c>components.correlationIds</c>.</summary>
    public const string CorrelationId = "cairn.correlationid";

    /// <summary>Escapes a name into the characters AsyncAPI keys allow.</summary>
    public static string Escape(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-'))
        {
            return name;
        }

        var escaped = new StringBuilder(name.Length + 8);
        Span<byte> bytes = stackalloc byte[4];
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsAsciiLetterOrDigit(c) || c is '.' or '-')
            {
                escaped.Append(c);
            }
            else if (c == '_')
            {
                escaped.Append("__");
            }
            else if (char.IsSurrogate(c) && !(char.IsHighSurrogate(c) && i + 1 < name.Length && char.IsLowSurrogate(name[i + 1])))
            {
                // A lone surrogate has no UTF-8 form: its UTF-16 code unit, after a 'U' that no hex digit is.
                escaped.Append("_U").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
            }
            else
            {
                // A surrogate pair is one character: escape its four UTF-8 bytes together.
                var length = char.IsHighSurrogate(c) && i + 1 < name.Length && char.IsLowSurrogate(name[i + 1]) ? 2 : 1;
                var written = Encoding.UTF8.GetBytes(name.AsSpan(i, length), bytes);
                foreach (var b in bytes[..written])
                {
                    escaped.Append('_').Append(b.ToString("X2", CultureInfo.InvariantCulture));
                }

                i += length - 1;
            }
        }

        return escaped.ToString();
    }

    /// <summary>
    /// The key of one version of an event type, in <c>components.messages</c>, <c>components.schemas</c> and the
    /// channels' messages: <c>&lt;type&gt;.v&lt;version&gt;</c>, such as <c>order.placed.v2</c>.
    /// </summary>
    public static string Version(string eventType, int version)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(version, 1);
        return string.Create(CultureInfo.InvariantCulture, $"{Escape(eventType)}.v{version}");
    }

    /// <summary>The key of a message type with no registered schema: <c>&lt;type&gt;.unversioned</c>.</summary>
    public static string Unversioned(string eventType) => Escape(eventType) + ".unversioned";

    /// <summary>The id of a queue's or a topic's channel: <c>queue.&lt;name&gt;</c> or <c>topic.&lt;name&gt;</c>.</summary>
    public static string Channel(AsyncApiDestination destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        return (destination.Kind == AsyncApiChannelKind.Queue ? "queue." : "topic.") + Escape(destination.Name);
    }

    /// <summary>
    /// A part of a key made of several names (a workflow's and its step's), escaped with its dots too, so that the dots
    /// between the parts are the only ones and two pairs of names never meet in one key.
    /// </summary>
    internal static string Part(string name) => Escape(name).Replace(".", "_2E", StringComparison.Ordinal);
}
