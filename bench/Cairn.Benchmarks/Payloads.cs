using System.Globalization;
using System.Text;
using Cairn.EventStore;

namespace Cairn.Benchmarks;

/// <summary>The events every workload writes: 200-byte JSON documents, 1,024 different ones in rotation.</summary>
internal static class Payloads
{
    public const int Size = 200;
    public const string EventType = "bench.item-added";

    private static readonly byte[][] Documents = Enumerable.Range(0, 1024).Select(Document).ToArray();

    /// <summary>The <paramref name="n"/>th document (exactly <see cref="Size"/> bytes of valid JSON).</summary>
    public static byte[] Json(long n) => Documents[n & 1023];

    /// <summary>A new Cairn event (with a new id) carrying the <paramref name="n"/>th document.</summary>
    public static EventData Event(long n) => new(EventType, Json(n));

    private static byte[] Document(int n)
    {
        var head = string.Create(
            CultureInfo.InvariantCulture,
            $"{{\"itemId\":\"item-{n:D6}\",\"sku\":\"SKU-{n * 7919 % 100000:D5}\",\"quantity\":{n % 17 + 1},\"price\":{n % 1000}.{n % 100:D2},\"note\":\"");
        const string Tail = "\"}";
        var text = head + new string((char)('a' + n % 26), Size - head.Length - Tail.Length) + Tail;
        var bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length != Size)
        {
            throw new InvalidOperationException($"Payload {n} is {bytes.Length} bytes, not {Size}.");
        }

        return bytes;
    }
}
