using System.Text;
using System.Text.Json;
using Cairn.EventStore;

namespace Cairn.Conformance.Support;

/// <summary>Small events for tests.</summary>
public static class TestEvents
{
    /// <summary>The type of the events made here unless another is given.</summary>
    public const string DefaultType = "test.happened";

    /// <summary>An event with the given JSON data.</summary>
    public static EventData Json(string json = "{}", string type = DefaultType) => new(type, Encoding.UTF8.GetBytes(json));

    /// <summary>An event carrying a number, so its order can be checked on read.</summary>
    public static EventData Numbered(int n, string type = DefaultType) => Json($"{{\"n\":{n}}}", type);

    /// <summary>Events numbered from <paramref name="first"/>.</summary>
    public static EventData[] Many(int count, int first = 0, string type = DefaultType) =>
        [.. Enumerable.Range(first, count).Select(n => Numbered(n, type))];

    /// <summary>The number an event made by <see cref="Numbered"/> carries.</summary>
    public static int NumberOf(RecordedEvent e)
    {
        using var doc = JsonDocument.Parse(e.Data);
        return doc.RootElement.GetProperty("n").GetInt32();
    }

    /// <summary>An event with tags.</summary>
    public static EventData Tagged(string type, params string[] tags) => Json("{}", type) with { Tags = tags };
}
