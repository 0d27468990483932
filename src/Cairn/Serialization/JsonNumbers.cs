using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Cairn.Serialization;

/// <summary>When a JSON number can be compared as a decimal, which filter rules and schema checks both need.</summary>
internal static class JsonNumbers
{
    /// <summary>The most significant digits, and the most places after the point, a decimal holds without rounding.</summary>
    private const int DecimalDigits = 28;

    /// <summary>The number as a decimal when a decimal holds it exactly; false when reading it would round it.</summary>
    public static bool TryReadExactly(JsonElement number, out decimal value)
    {
        value = default;
        return number.ValueKind == JsonValueKind.Number && FitsDecimal(JsonMarshal.GetRawUtf8Value(number)) && number.TryGetDecimal(out value);
    }

    /// <summary>As <see cref="TryReadExactly(JsonElement, out decimal)"/>, for a number's JSON text.</summary>
    public static bool TryReadExactly(string text, out decimal value)
    {
        value = default;
        var utf8 = System.Text.Encoding.UTF8.GetBytes(text);
        return FitsDecimal(utf8) && decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>
    /// Whether a JSON number's text has at most 28 significant digits and needs at most 28 places after the point: then
    /// a decimal reads it without rounding (when it is in range at all, which the read itself says). 1e-30, or 25 digits
    /// starting at the sixth place, would be rounded; 1e20 or 0.000001 would not.
    /// </summary>
    private static bool FitsDecimal(ReadOnlySpan<byte> text)
    {
        var i = 0;
        if (i < text.Length && text[i] == (byte)'-')
        {
            i++;
        }

        // The digits without the point, and how many of them follow the point.
        var start = i;
        var significantStart = -1;
        var lastNonZero = -1;
        var count = 0;
        var afterPoint = 0;
        var inFraction = false;
        for (; i < text.Length && (IsDigit(text[i]) || text[i] == (byte)'.'); i++)
        {
            if (text[i] == (byte)'.')
            {
                inFraction = true;
                continue;
            }

            if (inFraction)
            {
                afterPoint++;
            }

            if (text[i] != (byte)'0')
            {
                significantStart = significantStart < 0 ? count : significantStart;
                lastNonZero = count;
            }

            count++;
        }

        if (significantStart < 0)
        {
            // Zero, however written.
            return true;
        }

        long exponent = 0;
        if (i < text.Length && (text[i] == (byte)'e' || text[i] == (byte)'E'))
        {
            i++;
            var negative = i < text.Length && text[i] == (byte)'-';
            if (i < text.Length && (text[i] == (byte)'-' || text[i] == (byte)'+'))
            {
                i++;
            }

            for (; i < text.Length && IsDigit(text[i]); i++)
            {
                // Past any decimal's reach long before it could overflow.
                exponent = Math.Min(exponent * 10 + (text[i] - '0'), 1_000_000);
            }

            exponent = negative ? -exponent : exponent;
        }

        var significant = lastNonZero - significantStart + 1;

        // The places after the point the last significant digit needs: those it had, less the exponent, less the zeros after it.
        var places = afterPoint - exponent - (count - 1 - lastNonZero);
        return significant <= DecimalDigits && places <= DecimalDigits && start < i;
    }

    private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';
}
