using System.Globalization;

namespace Cairn.Benchmarks;

/// <summary>Progress lines on stdout, as each measurement ends.</summary>
internal static class Log
{
    public static void Line(string text) => Console.WriteLine(text);

    public static void Rate(string id, string side, Rate rate, string unit)
    {
        var conflicts = rate.ConflictsPerSecond > 0
            ? string.Create(CultureInfo.InvariantCulture, $", {rate.ConflictsPerSecond:#,0} conflicts/s")
            : "";
        Line(string.Create(CultureInfo.InvariantCulture,
            $"  {id,-6} {side,-8} {rate.PerSecond,12:#,0} {unit}/s  ({rate.Count:#,0} {unit} in {rate.Seconds:0.0} s{conflicts})"));
    }
}
