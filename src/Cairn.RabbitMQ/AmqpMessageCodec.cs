using System.Globalization;
using System.Text;
using Cairn.Envelopes;
using Cairn.Messaging;
using RabbitMQ.Client;

namespace Cairn.RabbitMQ;

/// <summary>
/// Maps a Cairn message to an AMQP 0-9-1 message and back, in CloudEvents' AMQP binding, binary content mode: the data
/// is the body, <c>datacontenttype</c> is the <c>content-type</c> property, and every other attribute and extension is
/// an application property (a header) named <c>cloudEvents:&lt;attribute&gt;</c>. The id and correlation id are also the
/// <c>message-id</c> and <c>correlation-id</c> properties and the type the <c>type</c> property, for tools that read
/// only those. <c>time</c> is an RFC 3339 string, because an AMQP 0-9-1 timestamp keeps only whole seconds. What
/// only Cairn reads (receive counts, the last failure, dead-letter details) travels in <c>cairn-*</c> headers.
/// </summary>
internal static partial class AmqpMessageCodec
{
    public const string Prefix = "cloudEvents:";

    /// <summary>
    /// The binding's other prefix, for clients that cannot put <c>:</c> in a property name (Spring AMQP's, say): read as
    /// <see cref="Prefix"/>; Cairn writes only that one.
    /// </summary>
    public const string UnderscorePrefix = "cloudEvents_";

    /// <summary>
    /// The header prefix of a metadata entry whose key is no CloudEvents extension name (<c>tenant-id</c>): CloudEvents
    /// names attributes in lower-case a–z and 0–9 only, so such a key is no <see cref="Prefix"/> header, which a
    /// CloudEvents reader would take for an attribute; Cairn reads it back as metadata all the same.
    /// </summary>
    public const string MetadataPrefix = "cairn-metadata:";
    public const string SpecVersion = Prefix + "specversion";
    public const string Id = Prefix + "id";
    public const string Type = Prefix + "type";
    public const string Source = Prefix + "source";
    public const string Time = Prefix + "time";
    public const string Subject = Prefix + "subject";
    public const string DataSchema = Prefix + "dataschema";
    public const string CorrelationId = Prefix + "correlationid";
    public const string CausationId = Prefix + "causationid";
    public const string TraceParent = Prefix + "traceparent";

    /// <summary>The receives of earlier copies of the message (a release or return republishes it).</summary>
    public const string Receives = "cairn-receives";
    public const string FirstReceivedAt = "cairn-first-received-at";
    public const string LastReceivedAt = "cairn-last-received-at";
    public const string LeaseExpired = "cairn-lease-expired";
    public const string EnqueuedAt = "cairn-enqueued-at";
    public const string FailureType = "cairn-failure-type";
    public const string FailureMessage = "cairn-failure-message";
    public const string FailureStack = "cairn-failure-stack";
    public const string DeadLetterReason = "cairn-dead-letter-reason";
    public const string DeadLetteredAt = "cairn-dead-lettered-at";
    public const string DeadLetterSequence = "cairn-dead-letter-sequence";
    public const string DeadLetterQueue = "cairn-dead-letter-queue";
    public const string Redrives = "cairn-redrives";

    /// <summary>Which redrive published this copy: a redrive that meets its own copy dead-lettered again leaves it.</summary>
    public const string RedriveRun = "cairn-redrive-run";

    /// <summary>A message's group key, which a standard queue keeps without ordering by it, as every backend does.</summary>
    public const string GroupKey = "cairn-group-key";

    /// <summary>Set by quorum queues on a redelivery: how many times this copy was delivered before.</summary>
    public const string DeliveryCount = "x-delivery-count";

    /// <summary>
    /// The most bytes a message's own attributes and metadata may take as AMQP headers. RabbitMQ takes a message's
    /// properties in one content-header frame (128 KiB by default, its <c>frame_max</c>) and closes the whole connection
    /// over a larger one, so a send whose headers could not fit is refused at its commit; the rest of the frame is left
    /// for what Cairn adds on the way (receive counts, a failure, a dead letter's reason, all capped).
    /// </summary>
    public const int MaxMessageHeaderBytes = 48 * 1024;

    /// <summary>The longest failure message kept in a header, in characters (a stack trace gets twice as many).</summary>
    public const int MaxFailureTextLength = 4096;

    /// <summary>
    /// Why RabbitMQ could not take a message's attributes and metadata, or null when it can: over
    /// <see cref="MaxMessageHeaderBytes"/> as headers in all (counted as the AMQP field table encodes them, with room
    /// for the attributes Cairn fills in), a metadata key whose header name is over AMQP's 255 bytes, or a content type
    /// over the 255 bytes of its property.
    /// </summary>
    public static string? HeaderFault(OutgoingMessage message) =>
        HeaderFault(message.Id, [message.Type, message.Source ?? new string(' ', 2048), message.Subject, message.DataSchema, message.CorrelationId, message.CausationId, message.TraceParent, message.GroupKey], message.Metadata, message.ContentType, MaxMessageHeaderBytes);

    /// <summary>
    /// The same for a message taken from an outbox, as the relay is about to publish it: one the commit's check never
    /// saw (a FIFO queue's dead letter redriven to a queue in RabbitMQ) would close the publishing connection. Its limit
    /// is <see cref="OutboxHeaderAllowance"/> above the commit's, so nothing a commit accepted is refused here.
    /// </summary>
    public static string? HeaderFault(Message message) =>
        HeaderFault(message.Id, [message.Type, message.Source, message.Subject, message.DataSchema, message.CorrelationId, message.CausationId, message.TraceParent, message.GroupKey], message.Metadata, message.ContentType, MaxMessageHeaderBytes + OutboxHeaderAllowance);

    /// <summary>
    /// What a stored message's headers may count beyond what its commit counted: the commit sees the message before its
    /// correlation and causation ids (a handler's context, up to 256 characters each, the correlation id twice), its trace
    /// parent and the store's source are filled in. The frame still has room for the failure headers a release adds.
    /// </summary>
    public const int OutboxHeaderAllowance = 8 * 1024;

    private static string? HeaderFault(MessageId id, string?[] attributes, IReadOnlyDictionary<string, string>? metadata, string contentType, int limit)
    {
        // The fixed part: spec version, id (twice), time, enqueued-at, content type, the names and the table's framing;
        // the type and the correlation id are written twice (as CloudEvents' and Cairn's own headers).
        var bytes = 512L;
        foreach (var value in attributes.Concat([attributes[0], attributes[4]]))
        {
            bytes += value is null ? 0 : 32 + Encoding.UTF8.GetByteCount(value);
        }

        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            var header = MetadataHeader(key ?? "");
            var name = Encoding.UTF8.GetByteCount(header);
            if (name > 255)
            {
                var prefix = header[..^(key ?? "").Length];
                return $"Message {id} has the metadata key '{key}', which is {name - prefix.Length} bytes in UTF-8; RabbitMQ takes header names of at most 255 bytes, '{prefix}' and the key together.";
            }

            bytes += 6 + name + Encoding.UTF8.GetByteCount(value ?? "");
        }

        if (!FitsShortString(contentType))
        {
            // The content type has no header to fall back on: CloudEvents' AMQP binding carries it as the property alone.
            return $"Message {id} has a content type of {Encoding.UTF8.GetByteCount(contentType)} bytes in UTF-8; RabbitMQ's content-type property holds at most 255.";
        }

        return bytes > limit
            ? $"Message {id} has attributes and metadata of about {bytes} bytes as AMQP headers, over the {limit} that fit RabbitMQ's content-header frame with room for Cairn's own; move large values into the data."
            : null;
    }

    /// <summary>
    /// The most bytes the headers of a copy Cairn publishes of a delivery (a release's, a dead letter's, a redrive's) may
    /// take. Another publisher's message may come with headers close to RabbitMQ's <c>frame_max</c> (128 KiB); with
    /// Cairn's own added, its copy would pass it, RabbitMQ would close the publishing connection, and the message could
    /// never be released or dead-lettered. A message Cairn sent stays far below (<see cref="MaxMessageHeaderBytes"/> and
    /// <see cref="OutboxHeaderAllowance"/>, with its failure headers capped).
    /// </summary>
    public const int MaxCopyHeaderBytes = 96 * 1024;

    /// <summary>On a copy whose headers were cut to fit (<see cref="FitCopy"/>): the names of those left out.</summary>
    public const string DroppedHeaders = "cairn-dropped-headers";

    /// <summary>
    /// Cuts a copy's headers to <see cref="MaxCopyHeaderBytes"/> when they are over it: another publisher's own headers
    /// go first, then CloudEvents extension attributes, the largest first in each; the attributes a reader needs and
    /// Cairn's own headers stay. The names left out are listed in <see cref="DroppedHeaders"/>.
    /// </summary>
    public static void FitCopy(IDictionary<string, object?> headers)
    {
        var bytes = headers.Sum(h => EntryBytes(h.Key, h.Value));
        if (bytes <= MaxCopyHeaderBytes)
        {
            return;
        }

        var candidates = headers
            .Where(h => !IsAttribute(h.Key) && (!h.Key.StartsWith("cairn-", StringComparison.Ordinal) || IsMetadata(h.Key)))
            .Select(h => (h.Key, Bytes: EntryBytes(h.Key, h.Value), Extension: h.Key.StartsWith(Prefix, StringComparison.Ordinal) || IsMetadata(h.Key)))
            .OrderBy(h => h.Extension)
            .ThenByDescending(h => h.Bytes)
            .ToList();
        var dropped = new List<string>();
        foreach (var (key, size, _) in candidates)
        {
            if (bytes <= MaxCopyHeaderBytes)
            {
                break;
            }

            headers.Remove(key);
            bytes -= size;
            dropped.Add(key);
        }

        headers[DroppedHeaders] = Capped(string.Join(", ", dropped), 1024);
    }

    /// <summary>About how many bytes an entry takes in an AMQP field table: its name, its type tag and its value.</summary>
    private static long EntryBytes(string key, object? value) => 1 + Encoding.UTF8.GetByteCount(key) + 1 + ValueBytes(value);

    private static long ValueBytes(object? value) => value switch
    {
        null => 0,
        string s => 4 + Encoding.UTF8.GetByteCount(s),
        byte[] b => 4 + b.Length,
        ReadOnlyMemory<byte> m => 4 + m.Length,
        IDictionary<string, object?> table => 4 + table.Sum(e => EntryBytes(e.Key, e.Value)),
        System.Collections.IEnumerable list => 4 + list.Cast<object?>().Sum(v => 1 + ValueBytes(v)),
        bool or byte or sbyte => 1,
        short or ushort => 2,
        int or uint or float => 4,
        decimal => 5,
        _ => 8,
    };

    /// <summary>Text cut to <paramref name="max"/> characters, for a header that must stay within the frame.</summary>
    public static string Capped(string text, int max) => text.Length <= max ? text : text[..max] + "…";

    /// <summary>The AMQP properties of a message taken from the outbox, as the relay publishes it.</summary>
    public static BasicProperties ToProperties(Message message, DateTimeOffset enqueuedAt)
    {
        var headers = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            [SpecVersion] = "1.0",
            [Id] = message.Id.ToString(),
            [Type] = message.Type,
            [Source] = message.Source,
            [Time] = message.Time.ToString("O", CultureInfo.InvariantCulture),
            [CorrelationId] = message.CorrelationId,
            [EnqueuedAt] = enqueuedAt.ToString("O", CultureInfo.InvariantCulture),
        };
        Optional(headers, Subject, message.Subject);
        Optional(headers, DataSchema, message.DataSchema);
        Optional(headers, CausationId, message.CausationId);
        Optional(headers, TraceParent, message.TraceParent);
        Optional(headers, GroupKey, message.GroupKey);
        foreach (var (key, value) in message.Metadata)
        {
            headers[MetadataHeader(key)] = value;
        }

        // The type and correlation id are headers already; as properties (short strings of at most 255 bytes, which
        // an attribute of 256 characters may pass in UTF-8) only when they fit, so that no message fails its publish.
        return new BasicProperties
        {
            ContentType = message.ContentType,
            MessageId = message.Id.ToString(),
            CorrelationId = FitsShortString(message.CorrelationId) ? message.CorrelationId : null,
            Type = FitsShortString(message.Type) ? message.Type : null,
            Timestamp = new AmqpTimestamp(message.Time.ToUnixTimeSeconds()),
            DeliveryMode = DeliveryModes.Persistent,
            Headers = headers,
        };
    }

    /// <summary>Whether a value fits an AMQP short string (a property, a header's name): at most 255 bytes in UTF-8.</summary>
    public static bool FitsShortString(string? value) => value is null || (value.Length <= 85 || Encoding.UTF8.GetByteCount(value) <= 255);

    /// <summary>
    /// A copy of received properties, to republish a message with some of Cairn's headers changed. What another
    /// publisher set stays (its content encoding, priority, reply-to, app id); what describes the old copy goes: the
    /// broker's <c>x-</c> headers, the per-message expiration (a dead letter must not expire in its queue) and the user id
    /// (RabbitMQ refuses a publish whose user id is not the connection's user).
    /// </summary>
    public static BasicProperties Copy(IReadOnlyBasicProperties properties)
    {
        var headers = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (properties.Headers is { } received)
        {
            foreach (var (key, value) in received)
            {
                // The broker's own headers describe the old copy, not the new one.
                if (!key.StartsWith("x-", StringComparison.Ordinal))
                {
                    headers[key] = value;
                }
            }
        }

        var copy = new BasicProperties
        {
            ContentType = properties.ContentType,
            ContentEncoding = properties.ContentEncoding,
            ReplyTo = properties.ReplyTo,
            AppId = properties.AppId,
            MessageId = properties.MessageId,
            CorrelationId = properties.CorrelationId,
            Type = properties.Type,
            Timestamp = properties.Timestamp,
            DeliveryMode = DeliveryModes.Persistent,
            Headers = headers,
        };
        if (properties.IsPriorityPresent())
        {
            copy.Priority = properties.Priority;
        }

        return copy;
    }

    /// <summary>
    /// Reads the message back from a delivery; a message that is not a CloudEvent Cairn can read yields null and why,
    /// never an exception: another publisher's headers may hold anything (an empty id, a timestamp in milliseconds), and
    /// the delivery must then go to the dead letters as unreadable, saying why, rather than stay unsettled. CloudEvents'
    /// <c>time</c> is optional: without it (and without an AMQP timestamp) the message's time is
    /// <paramref name="timeIfAbsent"/>, when there is one.
    /// </summary>
    public static Message? ToMessage(IReadOnlyBasicProperties properties, ReadOnlyMemory<byte> body, DateTimeOffset? timeIfAbsent, out string? fault)
    {
        var headers = WithColonPrefix(properties.Headers);
        fault = null;
        if (headers is null || GetString(headers, Id) is not { } idText)
        {
            fault = Missing(headers, Id);
            return null;
        }

        if (!Guid.TryParse(idText, out var id) || id == Guid.Empty)
        {
            fault = $"its {Id} '{Capped(idText, 64)}' is not a GUID other than zero, as Cairn's message ids are";
            return null;
        }

        if (GetString(headers, Type) is not { } type)
        {
            fault = Missing(headers, Type);
            return null;
        }

        // Absent, it is taken as 1.0 (some publishers leave it out); another version's attributes may mean other things.
        if (headers.TryGetValue(SpecVersion, out var specVersion) && specVersion is not null && AsString(specVersion) is var version && version != "1.0")
        {
            fault = $"its {SpecVersion} '{Capped(version ?? "", 64)}' is not 1.0, the CloudEvents version Cairn reads";
            return null;
        }

        DateTimeOffset time;
        if (GetTime(headers, Time) is { } given)
        {
            time = given;
        }
        else if (headers.TryGetValue(Time, out var timeValue) && timeValue is not null)
        {
            fault = $"its {Time} '{Capped(AsString(timeValue) ?? "", 64)}' is not a time";
            return null;
        }
        else if (properties.IsTimestampPresent() && properties.Timestamp.UnixTime != 0)
        {
            if (FromUnixSeconds(properties.Timestamp.UnixTime) is not { } stamped)
            {
                fault = $"its AMQP timestamp {properties.Timestamp.UnixTime} is out of range (milliseconds where seconds belong?)";
                return null;
            }

            time = stamped;
        }
        else if (timeIfAbsent is { } fallback)
        {
            time = fallback;
        }
        else
        {
            fault = $"no {Time} header nor AMQP timestamp";
            return null;
        }

        Dictionary<string, string>? metadata = null;
        foreach (var (key, value) in headers)
        {
            if (key.StartsWith(Prefix, StringComparison.Ordinal) && !IsAttribute(key) && AsString(value) is { } text)
            {
                (metadata ??= new Dictionary<string, string>(StringComparer.Ordinal))[key[Prefix.Length..]] = text;
            }
            else if (key.StartsWith(MetadataPrefix, StringComparison.Ordinal) && key.Length > MetadataPrefix.Length && AsString(value) is { } entry)
            {
                (metadata ??= new Dictionary<string, string>(StringComparer.Ordinal))[key[MetadataPrefix.Length..]] = entry;
            }
        }

        try
        {
            return new Message(new MessageId(id), type, GetString(headers, Source) ?? "", time, properties.ContentType ?? "application/octet-stream", body.ToArray())
            {
                Subject = GetString(headers, Subject),
                DataSchema = GetString(headers, DataSchema),
                CorrelationId = GetString(headers, CorrelationId),
                CausationId = GetString(headers, CausationId),
                TraceParent = GetString(headers, TraceParent),
                GroupKey = GetString(headers, GroupKey),
                Metadata = metadata ?? (IReadOnlyDictionary<string, string>)new Dictionary<string, string>(),
            };
        }
        catch (Exception ex) when (ex is ArgumentException or Cairn.EventStore.CairnException)
        {
            fault = ex.Message;
            return null;
        }
    }

    /// <summary>Why a required attribute could not be read: absent, or not a string (an AMQP table or array).</summary>
    private static string Missing(IDictionary<string, object?>? headers, string key) =>
        headers is not null && headers.TryGetValue(key, out var value) && value is not null
            ? $"its {key} is an AMQP table or array, not a string"
            : $"no {key} header";

    /// <summary>
    /// The headers with every attribute named under <see cref="UnderscorePrefix"/> named under <see cref="Prefix"/>
    /// instead (where both name one attribute, the colon's wins); the same headers when none is.
    /// </summary>
    private static IDictionary<string, object?>? WithColonPrefix(IDictionary<string, object?>? headers)
    {
        if (headers is null || !headers.Keys.Any(k => k.StartsWith(UnderscorePrefix, StringComparison.Ordinal)))
        {
            return headers;
        }

        var named = new Dictionary<string, object?>(headers.Count, StringComparer.Ordinal);
        foreach (var (key, value) in headers)
        {
            if (!key.StartsWith(UnderscorePrefix, StringComparison.Ordinal))
            {
                named[key] = value;
            }
        }

        foreach (var (key, value) in headers)
        {
            if (key.StartsWith(UnderscorePrefix, StringComparison.Ordinal))
            {
                named.TryAdd(Prefix + key[UnderscorePrefix.Length..], value);
            }
        }

        return named;
    }

    /// <summary>An AMQP timestamp as a time, or null when it is out of range (milliseconds taken for seconds, say).</summary>
    private static DateTimeOffset? FromUnixSeconds(long seconds) =>
        seconds >= DateTimeOffset.MinValue.ToUnixTimeSeconds() && seconds <= DateTimeOffset.MaxValue.ToUnixTimeSeconds()
            ? DateTimeOffset.FromUnixTimeSeconds(seconds)
            : null;

    public static FailureInfo? GetFailure(IDictionary<string, object?>? headers) =>
        headers is not null && GetString(headers, FailureType) is { } type
            ? new FailureInfo(type, GetString(headers, FailureMessage) ?? "", GetString(headers, FailureStack))
            : null;

    public static void SetFailure(IDictionary<string, object?> headers, FailureInfo? failure)
    {
        if (failure is null)
        {
            return;
        }

        headers[FailureType] = Capped(failure.Type, 512);
        headers[FailureMessage] = Capped(failure.Message, MaxFailureTextLength);

        // A failure without a stack trace replaces the last one's whole, as every backend keeps it.
        headers.Remove(FailureStack);
        Optional(headers, FailureStack, failure.StackTrace is { } stack ? Capped(stack, 2 * MaxFailureTextLength) : null);
    }

    public static string? GetString(IDictionary<string, object?>? headers, string key) =>
        headers is not null && headers.TryGetValue(key, out var value) ? AsString(value) : null;

    public static long GetLong(IDictionary<string, object?>? headers, string key) =>
        headers is not null && headers.TryGetValue(key, out var value)
            ? value switch
            {
                long l => l,
                int i => i,
                short s => s,
                byte b => b,
                sbyte sb => sb,
                uint ui => ui,
                ushort us => us,
                ulong ul => (long)ul,
                _ => long.TryParse(AsString(value), NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed : 0,
            }
            : 0;

    /// <summary>
    /// A count Cairn keeps in a header (receives, redrives), between 0 and <see cref="int.MaxValue"/> whatever another
    /// client put there: a negative or huge value must not make a receive count below one or wrap past a queue's maximum.
    /// </summary>
    public static int GetCount(IDictionary<string, object?>? headers, string key) =>
        headers is not null && headers.TryGetValue(key, out var value) && value is ulong huge
            ? (int)Math.Min(huge, int.MaxValue)
            : (int)Math.Clamp(GetLong(headers, key), 0, int.MaxValue);

    /// <summary>
    /// A time header: Cairn writes the round-trip format, which has a fast exact parse; any other text must be RFC 3339
    /// (a date, <c>T</c>, a time, an optional fraction and an offset or <c>Z</c>): text without an offset would be read in
    /// the machine's own zone, one message meaning other instants on other hosts.
    /// </summary>
    public static DateTimeOffset? GetTime(IDictionary<string, object?>? headers, string key) =>
        headers is not null && headers.TryGetValue(key, out var value) && value is AmqpTimestamp timestamp
            ? FromUnixSeconds(timestamp.UnixTime)
            : GetString(headers, key) is { } text
            && (DateTimeOffset.TryParseExact(text, "O", CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var time)
                || TryParseRfc3339(text, out time))
            ? time
            : null;

    /// <summary>RFC 3339 date-time text; a fraction past the 100 ns .NET keeps (a producer's nanoseconds) is cut there.</summary>
    private static bool TryParseRfc3339(string text, out DateTimeOffset time)
    {
        time = default;
        var match = Rfc3339().Match(text);
        if (!match.Success)
        {
            return false;
        }

        var datetime = match.Groups["datetime"].Value.ToUpperInvariant();
        var fraction = match.Groups["fraction"].Value;
        if (datetime.EndsWith(":60", StringComparison.Ordinal))
        {
            // A leap second (RFC 3339 allows :60), which .NET cannot hold: read as the last instant of the second before.
            datetime = string.Concat(datetime.AsSpan(0, datetime.Length - 2), "59");
            fraction = ".9999999";
        }

        var normalized = string.Concat(datetime, fraction.Length > 8 ? fraction[..8] : fraction, match.Groups["offset"].Value.ToUpperInvariant());
        return DateTimeOffset.TryParseExact(
            normalized,
            ["yyyy-MM-dd'T'HH:mm:ssK", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK"],
            CultureInfo.InvariantCulture,
            DateTimeStyles.None,
            out time);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^(?<datetime>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?<fraction>\.[0-9]+)?(?<offset>Z|[+-][0-9]{2}:[0-9]{2})$", System.Text.RegularExpressions.RegexOptions.IgnoreCase | System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex Rfc3339();

    public static string Format(DateTimeOffset time) => time.ToString("O", CultureInfo.InvariantCulture);

    /// <summary>The header of a metadata entry: a CloudEvents extension attribute when its key may name one.</summary>
    internal static string MetadataHeader(string key) => IsExtensionName(key) ? Prefix + key : MetadataPrefix + key;

    /// <summary>CloudEvents' rule for attribute names: lower-case ASCII letters and digits, at least one.</summary>
    private static bool IsExtensionName(string key) => key.Length > 0 && key.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9'));

    private static bool IsMetadata(string key) => key.StartsWith(MetadataPrefix, StringComparison.Ordinal);

    private static bool IsAttribute(string key) =>
        key is SpecVersion or Id or Type or Source or Time or Subject or DataSchema or CorrelationId or CausationId or TraceParent;

    private static void Optional(IDictionary<string, object?> headers, string key, string? value)
    {
        if (value is not null)
        {
            headers[key] = value;
        }
    }

    // AMQP 0-9-1 header strings arrive as bytes. Other values are read as their canonical CloudEvents strings, as the
    // AMQP binding asks of a receiver when another publisher sends an attribute as a native AMQP value. A table or an
    // array is no CloudEvents attribute type: it reads as none.
    private static string? AsString(object? value) => value switch
    {
        null => null,
        string s => s,
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        ReadOnlyMemory<byte> memory => Encoding.UTF8.GetString(memory.Span),
        System.Collections.IDictionary or System.Collections.IList => null,
        bool flag => flag ? "true" : "false",
        AmqpTimestamp timestamp => FromUnixSeconds(timestamp.UnixTime) is { } time ? Format(time) : timestamp.UnixTime.ToString(CultureInfo.InvariantCulture),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
