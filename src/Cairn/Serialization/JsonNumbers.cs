using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Cairn.Serialization;

/// <summary>When a JSON number can be compared as a decimal, which filter rules and schema checks both need.</summary>
internal static class JsonNumbers
{
    /// <summary>The most places after the point a decimal holds.</summary>
    private const int DecimalDigits = 28;

    /// <summary>The digits of a decimal's largest mantissa (2^96 - 1, 79228162514264337593543950335).</summary>
    private const int MantissaDigits = 29;

    private static readonly UInt128 MaxMantissa = UInt128.Parse("79228162514264337593543950335", CultureInfo.InvariantCulture);

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
    /// Whether a decimal reads a JSON number's text without rounding: it needs at most 28 places after the point, and
    /// its digits as a whole number (the significant ones, and the zeros an exponent adds) fit a decimal's 96-bit
    /// mantissa, up to 29 digits (<c>10m / 3m</c> is written with 29). 1e-30, or 25 digits starting at the sixth place,
    /// would be rounded; 1e20, 0.000001 or 79228162514264337593543950335 would not.
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
        if (places > DecimalDigits || start == i)
        {
            return false;
        }

        var mantissaDigits = significant + Math.Max(0, -places);
        return mantissaDigits < MantissaDigits
            || (mantissaDigits == MantissaDigits && MantissaOf(text, significantStart, significant) <= MaxMantissa);
    }

    /// <summary>The number's significant digits, from the <paramref name="first"/>th digit, padded with zeros to 29 digits.</summary>
    private static UInt128 MantissaOf(ReadOnlySpan<byte> text, int first, int significant)
    {
        UInt128 mantissa = 0;
        var digit = 0;
        var taken = 0;
        for (var i = 0; i < text.Length && taken < significant; i++)
        {
            if (!IsDigit(text[i]))
            {
                if (text[i] is (byte)'e' or (byte)'E')
                {
                    break;
                }

                continue;
            }

            if (digit++ >= first)
            {
                mantissa = (mantissa * 10) + (uint)(text[i] - '0');
                taken++;
            }
        }

        for (; taken < MantissaDigits; taken++)
        {
            mantissa *= 10;
        }

        return mantissa;
    }

    private static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';
}
