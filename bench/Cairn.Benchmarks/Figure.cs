using System.Globalization;
using System.Text.Json;

namespace Cairn.Benchmarks;

/// <summary>A target a figure is judged against.</summary>
/// <param name="Text">How the target reads in the table.</param>
/// <param name="IsMet">Whether a figure meets it.</param>
/// <param name="NeedsBaseline">True when it is judged against the baseline, so a run without one cannot judge it.</param>
internal sealed record Target(string Text, Func<Figure, bool> IsMet, bool NeedsBaseline = false);

/// <summary>
/// One measured figure: Cairn's value and the same-run baseline's (null when the workload has no baseline).
/// </summary>
internal sealed record Figure(string Id, string Title, double Value, string Unit, double? Baseline, Target? Target = null, string? Note = null)
{
    public double? Ratio => Baseline is > 0 ? Value / Baseline.Value : null;

    public string Met => Target is null || (Target.NeedsBaseline && Baseline is null) ? "-" : Target.IsMet(this) ? "met" : "MISSED";

    public static Target AtLeast(double value, string unit) =>
        new($">= {FormatTarget(value)} {unit}", f => f.Value >= value);

    public static Target Below(double value, string unit) =>
        new($"< {FormatTarget(value)} {unit}", f => f.Value < value);

    public static Target RatioAtLeast(double ratio, string? aim = null) =>
        new($">= {ratio:0}x baseline{(aim is null ? "" : $" ({aim})")}", f => f.Ratio is { } r && r >= ratio, NeedsBaseline: true);

    /// <summary>For figures where less is better (latencies): at most <paramref name="ratio"/> times the baseline.</summary>
    public static Target RatioAtMost(double ratio) =>
        new(string.Create(CultureInfo.InvariantCulture, $"<= {ratio:0.0#}x baseline"), f => f.Ratio is { } r && r <= ratio, NeedsBaseline: true);

    /// <summary>Both targets at once.</summary>
    public static Target Both(Target first, Target second) =>
        new($"{first.Text} and {second.Text}", f => first.IsMet(f) && second.IsMet(f), first.NeedsBaseline || second.NeedsBaseline);

    public static string Format(double value) =>
        value.ToString(value >= 100 ? "#,0" : value >= 10 ? "#,0.0" : "0.00", CultureInfo.InvariantCulture);

    private static string FormatTarget(double value) => value.ToString("#,0.##", CultureInfo.InvariantCulture);

    public static string FormatRatio(double? ratio) =>
        ratio is { } r ? r.ToString("0.00", CultureInfo.InvariantCulture) + "x" : "-";

    /// <summary>Writes the figures as a JSON array of <c>{ id, value, unit, baseline, ratio }</c>.</summary>
    public static void WriteJson(string path, IReadOnlyList<Figure> figures)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartArray();
        foreach (var f in figures)
        {
            json.WriteStartObject();
            json.WriteString("id", f.Id);
            json.WriteNumber("value", Math.Round(f.Value, 3));
            json.WriteString("unit", f.Unit);
            if (f.Baseline is { } b)
            {
                json.WriteNumber("baseline", Math.Round(b, 3));
            }
            else
            {
                json.WriteNull("baseline");
            }

            if (f.Ratio is { } r)
            {
                json.WriteNumber("ratio", Math.Round(r, 3));
            }
            else
            {
                json.WriteNull("ratio");
            }

            json.WriteEndObject();
        }

        json.WriteEndArray();
    }

    /// <summary>Reads back what <see cref="WriteJson"/> wrote (the child process's W5 figures).</summary>
    public static List<(string Id, double Value, string Unit)> ReadJson(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var figures = new List<(string, double, string)>();
        foreach (var item in document.RootElement.EnumerateArray())
        {
            figures.Add((item.GetProperty("id").GetString()!, item.GetProperty("value").GetDouble(), item.GetProperty("unit").GetString()!));
        }

        return figures;
    }

    /// <summary>Prints the figures as a readable table.</summary>
    public static void PrintTable(TextWriter output, IReadOnlyList<Figure> figures)
    {
        string[] header = ["id", "workload", "Cairn", "baseline", "ratio", "unit", "target", "met"];
        var rows = figures.Select(f => new[]
        {
            f.Id,
            f.Title,
            Format(f.Value),
            f.Baseline is { } b ? Format(b) : "-",
            FormatRatio(f.Ratio),
            f.Unit,
            f.Target?.Text ?? "-",
            f.Met,
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        bool[] right = [false, false, true, true, true, false, false, false];

        string Line(string[] cells) => string.Join("  ", cells.Select((c, i) => right[i] ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd();

        output.WriteLine(Line(header));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in rows)
        {
            output.WriteLine(Line(row));
        }

        foreach (var f in figures.Where(f => f.Note is not null))
        {
            output.WriteLine($"  {f.Id}: {f.Note}");
        }
    }
}
