using System.Buffers;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;

namespace Cairn.Sqlite;

/// <summary>
/// Packs a queued message's envelope into one column, as <see cref="EnvelopeCodec"/> does for events. Layout: a format
/// byte (1), a flags byte, the send time's ticks, type, source and content type, then each optional attribute whose
/// flag is set, in this order: data schema, subject, correlation id, causation id, traceparent, group key, metadata.
/// </summary>
internal static class MessageCodec
{
    private const byte Format = 1;

    [Flags]
    private enum Fields : byte
    {
        None = 0,
        DataSchema = 1,
        Subject = 2,
        CorrelationId = 4,
        CausationId = 8,
        TraceParent = 16,
        GroupKey = 32,
        Metadata = 64,
    }

    public static void Write(ArrayBufferWriter<byte> buffer, PreparedMessage m, long timeTicks)
    {
        buffer.ResetWrittenCount();
        var fields = Fields.None;
        if (m.DataSchema is not null) fields |= Fields.DataSchema;
        if (m.Subject is not null) fields |= Fields.Subject;
        if (m.CorrelationId is not null) fields |= Fields.CorrelationId;
        if (m.CausationId is not null) fields |= Fields.CausationId;
        if (m.TraceParent is not null) fields |= Fields.TraceParent;
        if (m.GroupKey is not null) fields |= Fields.GroupKey;
        if (m.Metadata is { Count: > 0 }) fields |= Fields.Metadata;
        var head = buffer.GetSpan(12);
        head[0] = Format;
        head[1] = (byte)fields;
        buffer.Advance(2 + EnvelopeCodec.WriteVarint(head[2..], timeTicks));
        EnvelopeCodec.WriteText(buffer, m.Type);
        EnvelopeCodec.WriteText(buffer, m.Source);
        EnvelopeCodec.WriteText(buffer, m.ContentType);
        EnvelopeCodec.WriteText(buffer, m.DataSchema);
        EnvelopeCodec.WriteText(buffer, m.Subject);
        EnvelopeCodec.WriteText(buffer, m.CorrelationId);
        EnvelopeCodec.WriteText(buffer, m.CausationId);
        EnvelopeCodec.WriteText(buffer, m.TraceParent);
        EnvelopeCodec.WriteText(buffer, m.GroupKey);
        if (m.Metadata is { Count: > 0 })
        {
            EnvelopeCodec.WriteBytes(buffer, JsonSerializer.SerializeToUtf8Bytes(m.Metadata, CairnJsonContext.Default.IReadOnlyDictionaryStringString));
        }
    }

    public static Message Read(MessageId id, ReadOnlySpan<byte> envelope, ReadOnlyMemory<byte> data)
    {
        if (envelope.Length < 2 || envelope[0] != Format)
        {
            throw new CairnException($"A message envelope has format {(envelope.Length == 0 ? "(empty)" : envelope[0])}; this Cairn reads format {Format}.");
        }

        var fields = (Fields)envelope[1];
        var at = 2;
        var time = EnvelopeCodec.ReadVarint(envelope, ref at);
        var type = EnvelopeCodec.ReadText(envelope, ref at);
        var source = EnvelopeCodec.ReadText(envelope, ref at);
        var contentType = EnvelopeCodec.ReadText(envelope, ref at);
        var dataSchema = Optional(envelope, fields, Fields.DataSchema, ref at);
        var subject = Optional(envelope, fields, Fields.Subject, ref at);
        var correlation = Optional(envelope, fields, Fields.CorrelationId, ref at);
        var causation = Optional(envelope, fields, Fields.CausationId, ref at);
        var traceParent = Optional(envelope, fields, Fields.TraceParent, ref at);
        var groupKey = Optional(envelope, fields, Fields.GroupKey, ref at);
        IReadOnlyDictionary<string, string>? metadata = null;
        if ((fields & Fields.Metadata) != 0)
        {
            metadata = JsonSerializer.Deserialize(EnvelopeCodec.ReadBytes(envelope, ref at), CairnJsonContext.Default.IReadOnlyDictionaryStringString);
        }

        return new Message(id, type, source, new DateTimeOffset(time, TimeSpan.Zero), contentType, data)
        {
            DataSchema = dataSchema,
            Subject = subject,
            CorrelationId = correlation,
            CausationId = causation,
            TraceParent = traceParent,
            GroupKey = groupKey,
            Metadata = metadata ?? Message.NoMetadata,
        };
    }

    private static string? Optional(ReadOnlySpan<byte> envelope, Fields fields, Fields field, ref int at) =>
        (fields & field) != 0 ? EnvelopeCodec.ReadText(envelope, ref at) : null;
}
