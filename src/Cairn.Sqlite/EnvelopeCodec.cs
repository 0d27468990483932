using System.Buffers;
using System.Text;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Sqlite;

/// <summary>
/// Packs an event's envelope into the one <c>envelope</c> column, so a read materialises an event from three
/// column values (position, envelope, data) instead of fifteen: each column read is a native call, and those calls
/// measured as most of the cost of reading <c>$all</c>. The columns SQL filters and indexes on (stream, version, id,
/// type, time) are also kept as columns of their own.
/// </summary>
/// <remarks>
/// Layout: a format byte (1), a flags byte, then 7-bit encoded stream id, version, type id, source id, content type
/// id and commit ticks, the 16-byte id, and for each flag set, a length-prefixed UTF-8 value in this order: data
/// schema, correlation id, causation id, traceparent, tags (a JSON array), metadata (a JSON object).
/// </remarks>
internal static class EnvelopeCodec
{
    private const byte Format = 1;

    [Flags]
    private enum Fields : byte
    {
        None = 0,
        DataSchema = 1,
        CorrelationId = 2,
        CausationId = 4,
        TraceParent = 8,
        Tags = 16,
        Metadata = 32,
    }

    public static void Write(ArrayBufferWriter<byte> buffer, long streamId, long version, long typeId, long sourceId, long contentTypeId, long timeTicks, PreparedEvent e)
    {
        buffer.ResetWrittenCount();
        var fields = Fields.None;
        if (e.DataSchema is not null) fields |= Fields.DataSchema;
        if (e.CorrelationId is not null) fields |= Fields.CorrelationId;
        if (e.CausationId is not null) fields |= Fields.CausationId;
        if (e.TraceParent is not null) fields |= Fields.TraceParent;
        if (e.Tags.Count > 0) fields |= Fields.Tags;
        if (e.MetadataJson is not null) fields |= Fields.Metadata;

        var head = buffer.GetSpan(2 + (6 * 10) + 16);
        head[0] = Format;
        head[1] = (byte)fields;
        var at = 2;
        at += WriteVarint(head[at..], streamId);
        at += WriteVarint(head[at..], version);
        at += WriteVarint(head[at..], typeId);
        at += WriteVarint(head[at..], sourceId);
        at += WriteVarint(head[at..], contentTypeId);
        at += WriteVarint(head[at..], timeTicks);
        SqliteRows.WriteId(e.Id, head.Slice(at, 16));
        buffer.Advance(at + 16);

        WriteText(buffer, e.DataSchema);
        WriteText(buffer, e.CorrelationId);
        WriteText(buffer, e.CausationId);
        WriteText(buffer, e.TraceParent);
        if (e.Tags.Count > 0)
        {
            WriteBytes(buffer, JsonSerializer.SerializeToUtf8Bytes(e.Tags.ToArray(), CairnJsonContext.Default.StringArray));
        }

        if (e.MetadataJson is not null)
        {
            WriteBytes(buffer, e.MetadataJson);
        }
    }

    /// <summary>The parts of an envelope a reader turns into a <see cref="RecordedEvent"/>.</summary>
    public ref struct Decoded
    {
        public long StreamId;
        public long Version;
        public long TypeId;
        public long SourceId;
        public long ContentTypeId;
        public long TimeTicks;
        public MessageId Id;
        public string? DataSchema;
        public string? CorrelationId;
        public string? CausationId;
        public string? TraceParent;
        public string[]? Tags;
        public IReadOnlyDictionary<string, string>? Metadata;
    }

    public static Decoded Read(ReadOnlySpan<byte> envelope)
    {
        if (envelope.Length < 2 || envelope[0] != Format)
        {
            throw new CairnException($"An event envelope has format {(envelope.Length == 0 ? "(empty)" : envelope[0])}; this Cairn reads format {Format}.");
        }

        var fields = (Fields)envelope[1];
        var at = 2;
        var decoded = new Decoded
        {
            StreamId = ReadVarint(envelope, ref at),
            Version = ReadVarint(envelope, ref at),
            TypeId = ReadVarint(envelope, ref at),
            SourceId = ReadVarint(envelope, ref at),
            ContentTypeId = ReadVarint(envelope, ref at),
            TimeTicks = ReadVarint(envelope, ref at),
        };
        decoded.Id = new MessageId(new Guid(envelope.Slice(at, 16), bigEndian: true));
        at += 16;
        if ((fields & Fields.DataSchema) != 0) decoded.DataSchema = ReadText(envelope, ref at);
        if ((fields & Fields.CorrelationId) != 0) decoded.CorrelationId = ReadText(envelope, ref at);
        if ((fields & Fields.CausationId) != 0) decoded.CausationId = ReadText(envelope, ref at);
        if ((fields & Fields.TraceParent) != 0) decoded.TraceParent = ReadText(envelope, ref at);
        if ((fields & Fields.Tags) != 0) decoded.Tags = JsonSerializer.Deserialize(ReadBytes(envelope, ref at), CairnJsonContext.Default.StringArray);
        if ((fields & Fields.Metadata) != 0) decoded.Metadata = JsonSerializer.Deserialize(ReadBytes(envelope, ref at), CairnJsonContext.Default.IReadOnlyDictionaryStringString);
        return decoded;
    }

    internal static void WriteText(ArrayBufferWriter<byte> buffer, string? value)
    {
        if (value is null)
        {
            return;
        }

        var length = Encoding.UTF8.GetByteCount(value);
        var span = buffer.GetSpan(10 + length);
        var at = WriteVarint(span, length);
        Encoding.UTF8.GetBytes(value, span[at..]);
        buffer.Advance(at + length);
    }

    internal static void WriteBytes(ArrayBufferWriter<byte> buffer, ReadOnlySpan<byte> value)
    {
        var span = buffer.GetSpan(10 + value.Length);
        var at = WriteVarint(span, value.Length);
        value.CopyTo(span[at..]);
        buffer.Advance(at + value.Length);
    }

    internal static string ReadText(ReadOnlySpan<byte> envelope, ref int at) => Encoding.UTF8.GetString(ReadBytes(envelope, ref at));

    internal static ReadOnlySpan<byte> ReadBytes(ReadOnlySpan<byte> envelope, ref int at)
    {
        var length = (int)ReadVarint(envelope, ref at);
        var bytes = envelope.Slice(at, length);
        at += length;
        return bytes;
    }

    internal static int WriteVarint(Span<byte> destination, long value)
    {
        var v = (ulong)value;
        var i = 0;
        while (v >= 0x80)
        {
            destination[i++] = (byte)(v | 0x80);
            v >>= 7;
        }

        destination[i++] = (byte)v;
        return i;
    }

    internal static long ReadVarint(ReadOnlySpan<byte> source, ref int at)
    {
        ulong value = 0;
        var shift = 0;
        while (true)
        {
            var b = source[at++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return (long)value;
            }

            shift += 7;
            if (shift > 63)
            {
                throw new CairnException("An event envelope holds a malformed number.");
            }
        }
    }
}
