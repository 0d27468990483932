namespace Cairn.Envelopes;

/// <summary>
/// The two URI forms CloudEvents' envelope takes: <c>source</c> is a URI reference (RFC 3986; a relative one such as
/// <c>/orders</c> is allowed), <c>dataschema</c> an absolute URI. A consumer in another language reads them with its
/// CloudEvents SDK, which refuses an event whose attributes are not of these forms.
/// </summary>
internal static class UriText
{
    /// <summary>What a refusal says a <c>source</c> must be.</summary>
    public const string ReferenceRule = "a URI reference (RFC 3986: no spaces) of 1 to 2048 characters, with no " + StoredText.Refused;

    /// <summary>What a refusal says a <c>dataschema</c> must be.</summary>
    public const string AbsoluteRule = "an absolute URI (RFC 3986: a scheme and ':' first, such as https://example.com/order.json or urn:example:order:1; no spaces) of 1 to 2048 characters, with no " + StoredText.Refused;

    /// <summary>Whether <paramref name="value"/> is a URI reference of at most 2048 characters.</summary>
    public static bool IsReference(string? value) =>
        !string.IsNullOrEmpty(value) && value.Length <= 2048 && !StoredText.Refuses(value)
            && HasUriCharacters(value) && Uri.TryCreate(value, UriKind.RelativeOrAbsolute, out _);

    /// <summary>
    /// Whether every character is one RFC 3986 allows (unreserved, reserved, a <c>%</c> before two hex digits) or beyond
    /// ASCII (an IRI's, RFC 3987): <see cref="Uri"/> itself takes spaces, <c>&lt; &gt; " { } | \ ^ `</c> and a bare
    /// <c>%</c>, which other readers (Java's <c>java.net.URI</c>, say) refuse.
    /// </summary>
    private static bool HasUriCharacters(string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c == '%')
            {
                if (i + 2 >= value.Length || !char.IsAsciiHexDigit(value[i + 1]) || !char.IsAsciiHexDigit(value[i + 2]))
                {
                    return false;
                }

                i += 2;
            }
            else if (c <= ' ' || char.IsWhiteSpace(c) || c is '"' or '<' or '>' or '\\' or '^' or '`' or '{' or '|' or '}' or '\u007F')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Whether <paramref name="value"/> is an absolute URI of at most 2048 characters.</summary>
    /// <remarks>
    /// The scheme is checked here, not left to <see cref="Uri"/>: on Unix <c>Uri.TryCreate</c> takes <c>/path</c> as an
    /// absolute file URI, which is a relative reference to every other reader.
    /// </remarks>
    public static bool IsAbsolute(string? value) =>
        IsReference(value) && HasScheme(value!) && Uri.TryCreate(value, UriKind.Absolute, out _);

    /// <summary>
    /// Whether <paramref name="value"/> may be a <c>dataschema</c>: an absolute URI, or one of Cairn's own
    /// <c>urn:cairn:schema:&lt;type&gt;:&lt;version&gt;</c>, which names the type as it is (a type name may hold
    /// characters a URI may not, such as <c>{</c>) and is checked against the schema registry instead.
    /// </summary>
    public static bool IsDataSchema(string? value) =>
        IsAbsolute(value) || (value is { Length: <= 2048 } && !StoredText.Refuses(value) && Schemas.SchemaReference.TryParse(value, out _));

    private static bool HasScheme(string value)
    {
        var colon = value.IndexOf(':', StringComparison.Ordinal);
        if (colon < 1 || !char.IsAsciiLetter(value[0]))
        {
            return false;
        }

        foreach (var c in value.AsSpan(1, colon - 1))
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '+' or '-' or '.'))
            {
                return false;
            }
        }

        return true;
    }
}
