using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace Cairn.Benchmarks;

/// <summary>
/// The messages M1–M3 send: 200-byte JSON documents like the events' (<see cref="Payloads"/>), each carrying its own
/// number <c>n</c> (a ten-digit string at a fixed offset, so a consumer finds it without parsing) and a field
/// <c>k</c> = <c>n</c> mod 10 that M3's filter rules match on.
/// </summary>
internal static class MessagePayloads
{
    public const int Size = Payloads.Size;

    private const int Digits = 10;

    private static readonly byte[][] Templates = Enumerable.Range(0, 1024).Select(Template).ToArray();

    /// <summary>Where the ten digits of <c>n</c> start.</summary>
    private static readonly int NumberOffset = Encoding.UTF8.GetBytes(Head(0)).AsSpan().IndexOf("\"n\":\""u8) + 5;

    /// <summary>Where the one digit of <c>k</c> is.</summary>
    private static readonly int KeyOffset = Encoding.UTF8.GetBytes(Head(0)).AsSpan().IndexOf("\"k\":"u8) + 4;

    /// <summary>A new array holding the <paramref name="n"/>th document.</summary>
    public static byte[] Json(long n)
    {
        var bytes = (byte[])Templates[n & 1023].Clone();
        if (!Utf8Formatter.TryFormat(n, bytes.AsSpan(NumberOffset, Digits), out var written, new System.Buffers.StandardFormat('D', Digits)) || written != Digits)
        {
            throw new ArgumentOutOfRangeException(nameof(n), n, "A message number has at most ten digits.");
        }

        bytes[KeyOffset] = (byte)('0' + Key(n));
        return bytes;
    }

    /// <summary>The <c>k</c> field of the <paramref name="n"/>th document.</summary>
    public static int Key(long n) => (int)(n % 10);

    /// <summary>Reads <c>n</c> back from a document <see cref="Json"/> made.</summary>
    public static long Number(ReadOnlySpan<byte> json)
    {
        if (json.Length != Size || !Utf8Parser.TryParse(json.Slice(NumberOffset, Digits), out long n, out var consumed) || consumed != Digits)
        {
            throw new InvalidOperationException("A message was received that this benchmark did not send.");
        }

        return n;
    }

    private static string Head(int n) =>
        string.Create(CultureInfo.InvariantCulture, $"{{\"n\":\"{0:D10}\",\"k\":0,\"sku\":\"SKU-{n * 7919 % 100000:D5}\",\"quantity\":{n % 17 + 1},\"price\":{n % 1000}.{n % 100:D2},\"note\":\"");

    private static byte[] Template(int n)
    {
        const string Tail = "\"}";
        var head = Head(n);
        var text = head + new string((char)('a' + n % 26), Size - head.Length - Tail.Length) + Tail;
        var bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length != Size)
        {
            throw new InvalidOperationException($"Message payload {n} is {bytes.Length} bytes, not {Size}.");
        }

        return bytes;
    }
}
