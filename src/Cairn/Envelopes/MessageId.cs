using System.Security.Cryptography;

namespace Cairn.Envelopes;

/// <summary>
/// The unique id of an event or message (the CloudEvents <c>id</c>). New ids are version 7 GUIDs, so they sort
/// roughly by creation time and index well.
/// </summary>
public readonly record struct MessageId
{
    /// <summary>Wraps a GUID, refusing the empty one.</summary>
    public MessageId(Guid value)
    {
        if (value == Guid.Empty)
        {
            throw new ArgumentException("A message id cannot be the empty GUID.", nameof(value));
        }

        Value = value;
    }

    /// <summary>The id as a GUID.</summary>
    public Guid Value { get; }

    /// <summary>A new, time-ordered id.</summary>
    public static MessageId New() => new(Version7.New(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));

    /// <summary>Parses an id in any of the GUID formats.</summary>
    public static MessageId Parse(string value) => new(Guid.Parse(value));

    /// <inheritdoc />
    public override string ToString() => Value.ToString("D");

    /// <summary>Whether <paramref name="text"/> is this id as <see cref="ToString"/> writes it, without making that string.</summary>
    internal bool IsWrittenAs(string? text)
    {
        Span<char> own = stackalloc char[36];
        return text is { Length: 36 } && Value.TryFormat(own, out _, "D") && text.AsSpan().SequenceEqual(own);
    }

    /// <summary>Wraps a GUID.</summary>
    public static implicit operator MessageId(Guid value) => new(value);

    /// <summary>
    /// Version 7 GUIDs (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. The random bits come from a
    /// buffer of each thread's, filled by the cryptographic generator for 256 ids at a time; <c>Guid.CreateVersion7</c>
    /// reads the kernel's generator for every id, a system call per event and message.
    /// </summary>
    internal static class Version7
    {
        private const int RandomBytesPerId = 10;
        private const int IdsPerFill = 256;

        [ThreadStatic]
        private static byte[]? t_random;

        [ThreadStatic]
        private static int t_next;

        /// <summary>A version 7 GUID of the given Unix time in milliseconds.</summary>
        public static Guid New(long unixMilliseconds)
        {
            var random = t_random;
            if (random is null || t_next == random.Length)
            {
                random = t_random ??= new byte[RandomBytesPerId * IdsPerFill];
                RandomNumberGenerator.Fill(random);
                t_next = 0;
            }

            var bits = random.AsSpan(t_next, RandomBytesPerId);
            t_next += RandomBytesPerId;

            return TimeFirst(unixMilliseconds, 7, bits);
        }
    }

    /// <summary>
    /// An id derived from <paramref name="key"/>: the same key and time give the same id, so work done again (a decision
    /// taken anew) sends the same ids. Laid out as a version 7 GUID is, with <paramref name="time"/>'s Unix milliseconds
    /// first and 74 bits of the key's SHA-256 hash after them, and marked version 8 (RFC 9562's custom layout). The time
    /// comes first so derived ids sort by it as new ones do: every index keyed by message id (the inbox, the queues)
    /// takes them near its right edge, where a hash alone would put each at a random page of the index.
    /// </summary>
    internal static MessageId Derive(string key, DateTimeOffset time)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key), hash);
        return new MessageId(TimeFirst(time.ToUnixTimeMilliseconds(), 8, hash[..10]));
    }

    /// <summary>
    /// The RFC 9562 layout of versions 7 and 8, big-endian: 48 bits of Unix milliseconds, the version, then the variant
    /// and the rest of <paramref name="bits"/> (ten bytes, of which 74 bits are used).
    /// </summary>
    private static Guid TimeFirst(long unixMilliseconds, int version, ReadOnlySpan<byte> bits)
    {
        Span<byte> id = stackalloc byte[16];
        id[0] = (byte)(unixMilliseconds >> 40);
        id[1] = (byte)(unixMilliseconds >> 32);
        id[2] = (byte)(unixMilliseconds >> 24);
        id[3] = (byte)(unixMilliseconds >> 16);
        id[4] = (byte)(unixMilliseconds >> 8);
        id[5] = (byte)unixMilliseconds;
        id[6] = (byte)((version << 4) | (bits[0] & 0x0F));
        id[7] = bits[1];
        id[8] = (byte)(0x80 | (bits[2] & 0x3F));
        bits[3..10].CopyTo(id[9..]);
        return new Guid(id, bigEndian: true);
    }
}
