using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// What the crash child writes and how the test reads it back: the events' ids and payloads, and the lines the child
/// prints on stdout. Every line ends with <see cref="LineEnd"/>, so a line cut short by the kill is recognised and
/// ignored rather than misread.
/// </summary>
public static partial class CrashProtocol
{
    /// <summary>Appends mixing single events, small batches, exact expected versions and multi-stream appends.</summary>
    public const string MixedMode = "mixed";

    /// <summary>Like <see cref="MixedMode"/>, with one writer appending <see cref="HugeBatchSize"/> events at a time.</summary>
    public const string HugeMode = "huge";

    /// <summary>The type of every event the child appends.</summary>
    public const string EventType = "crash.appended";

    /// <summary>The number of events in one huge append.</summary>
    public const int HugeBatchSize = 5000;

    /// <summary>The end of every complete line.</summary>
    public const string LineEnd = " .";

    /// <summary>Printed once the store is open, before the first append.</summary>
    public const string Ready = "ready" + LineEnd;

    /// <summary>
    /// The id of the event at <paramref name="index"/> of a batch: the batch id with the index folded into its first
    /// four bytes, so the test can name every id of a batch from the batch id alone.
    /// </summary>
    public static MessageId EventId(Guid batch, int index)
    {
        Span<byte> bytes = stackalloc byte[16];
        batch.TryWriteBytes(bytes);
        BinaryPrimitives.WriteInt32LittleEndian(bytes, BinaryPrimitives.ReadInt32LittleEndian(bytes) ^ index);
        return new MessageId(new Guid(bytes));
    }

    /// <summary>Builds an event of a batch: its id, and a payload naming its batch, its index and the batch's size.</summary>
    public static EventData Event(Guid batch, int index, int size, int padding)
    {
        var buffer = new ArrayBufferWriter<byte>(96 + padding);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("batch", batch.ToString("N"));
            json.WriteNumber("index", index);
            json.WriteNumber("size", size);
            json.WriteString("pad", new string('x', padding));
            json.WriteEndObject();
        }

        return new EventData(EventId(batch, index), EventType, buffer.WrittenSpan.ToArray());
    }

    /// <summary>Reads back what <see cref="Event"/> wrote into a payload.</summary>
    public static (Guid Batch, int Index, int Size) ReadPayload(ReadOnlySpan<byte> data)
    {
        var json = new Utf8JsonReader(data);
        Guid? batch = null;
        int? index = null, size = null;
        while (json.Read())
        {
            if (json.TokenType != JsonTokenType.PropertyName || json.CurrentDepth != 1)
            {
                continue;
            }

            var property = json.GetString();
            json.Read();
            switch (property)
            {
                case "batch":
                    batch = Guid.ParseExact(json.GetString()!, "N");
                    break;
                case "index":
                    index = json.GetInt32();
                    break;
                case "size":
                    size = json.GetInt32();
                    break;
            }
        }

        return batch is { } b && index is { } i && size is { } n ? (b, i, n) : throw new FormatException("The payload names no batch, index and size.");
    }

    /// <summary>The line printed once a huge append is handed to the store, before it is acknowledged.</summary>
    public static string Pending(Guid batch, int size) => FormattableString.Invariant($"pending {batch:N} {size}{LineEnd}");

    /// <summary>The line printed every millisecond or so while a huge append waits for its acknowledgement.</summary>
    public static string Waiting(Guid batch) => FormattableString.Invariant($"waiting {batch:N}{LineEnd}");

    /// <summary>The line printed once an append is acknowledged: the batch and where the store said it wrote it.</summary>
    public static string Ack(Guid batch, string kind, int size, AppendResult result)
    {
        var streams = string.Join(',', result.Streams.Select(s => FormattableString.Invariant($"{s.Stream}:{s.FirstVersion}:{s.LastVersion}")));
        return FormattableString.Invariant($"ack {batch:N} {kind} {size} {result.FirstPosition.Value} {result.LastPosition.Value} {streams}{LineEnd}");
    }

    /// <summary>Reads an acknowledgement line; null for any other line, complete or not.</summary>
    public static AckedBatch? ParseAck(string line)
    {
        var parts = line.Split(' ');
        if (parts is not ["ack", var batch, var kind, var size, var first, var last, var streams, "."])
        {
            return null;
        }

        return new AckedBatch(
            Guid.ParseExact(batch, "N"),
            kind,
            int.Parse(size, CultureInfo.InvariantCulture),
            long.Parse(first, CultureInfo.InvariantCulture),
            long.Parse(last, CultureInfo.InvariantCulture),
            [.. streams.Split(',').Select(s => s.Split(':')).Select(s => new StreamRange(s[0], long.Parse(s[1], CultureInfo.InvariantCulture), long.Parse(s[2], CultureInfo.InvariantCulture)))]);
    }

    /// <summary>Reads a pending line; null for any other line, complete or not.</summary>
    public static Guid? ParsePending(string line) =>
        line.Split(' ') is ["pending", var batch, _, "."] ? Guid.ParseExact(batch, "N") : null;

    /// <summary>Reads a waiting line; null for any other line, complete or not.</summary>
    public static Guid? ParseWaiting(string line) =>
        line.Split(' ') is ["waiting", var batch, "."] ? Guid.ParseExact(batch, "N") : null;
}

/// <summary>An append the child saw acknowledged, and where the store said it landed.</summary>
/// <param name="Batch">The batch id, from which every event id follows.</param>
/// <param name="Kind">What sort of append it was, for the test's report.</param>
/// <param name="Size">The number of events, across all its streams.</param>
/// <param name="FirstPosition">The global position of its first event.</param>
/// <param name="LastPosition">The global position of its last event.</param>
/// <param name="Streams">The versions written per stream, in the order of the request (and of the batch's indexes).</param>
public sealed record AckedBatch(Guid Batch, string Kind, int Size, long FirstPosition, long LastPosition, IReadOnlyList<StreamRange> Streams);

/// <summary>The versions an append wrote to one stream.</summary>
public sealed record StreamRange(string Stream, long FirstVersion, long LastVersion);
