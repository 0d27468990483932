namespace Cairn.Serialization;

/// <summary>When a JSON number can be compared as a decimal, which filter rules and schema checks both need.</summary>
internal static class JsonNumbers
{
    /// <summary>
    /// Whether a decimal reads the number (here as a double) without rounding it away: not when its magnitude is below
    /// 10^-12, whose digits may run past a decimal's 28 places (a decimal reads 1e-30 as 0). A decimal holds every other
    /// number it reads to 28 significant digits, more than a double's 17.
    /// </summary>
    public static bool DecimalReadsExactly(double asDouble) => asDouble == 0 || Math.Abs(asDouble) >= 1e-12;
}
