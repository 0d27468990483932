using System.Text;
using System.Text.Json;
using Cairn.Envelopes;

namespace Cairn.EventStore;

/// <summary>
/// An event validated and with its envelope completed, ready for a backend to store. A null correlation id means the
/// event's own id, which <see cref="RecordedEvent.CorrelationId"/> reports on read.
/// </summary>
internal sealed record PreparedEvent(
    MessageId Id,
    string Type,
    ReadOnlyMemory<byte> Data,
    string ContentType,
    string? DataSchema,
    string Source,
    string? CorrelationId,
    string? CausationId,
    string? TraceParent,
    IReadOnlyList<string> Tags,
    IReadOnlyDictionary<string, string>? Metadata,
    byte[]? MetadataJson);

/// <summary>One stream's part of a prepared append.</summary>
internal sealed record PreparedStreamAppend(StreamName Stream, ExpectedVersion ExpectedVersion, IReadOnlyList<PreparedEvent> Events);

/// <summary>
/// An append request that passed every check that needs no storage: names, sizes, JSON, ids, tags. Preparing happens
/// on the caller's thread, so the envelope picks up the caller's <see cref="MessageContext"/> and activity, and a
/// backend's single writer spends no time on it.
/// </summary>
internal sealed record PreparedAppend(AppendRequest Request, IReadOnlyList<PreparedStreamAppend> Streams, int EventCount)
{
    public AppendCondition? Condition => Request.Condition;

    /// <summary>
    /// What the events take to send, in bytes: every event's data and metadata, and its envelope (its text attributes in
    /// UTF-8, its tags, and an allowance for its fixed-size values and length prefixes). Counted when first asked: only
    /// a backend with a limit on one statement's size asks.
    /// </summary>
    public long Bytes => _bytes ??= CountBytes();

    private long? _bytes;

    /// <summary>A copy (<c>with</c>) counts its own bytes: its events may differ.</summary>
    private PreparedAppend(PreparedAppend original)
    {
        Request = original.Request;
        Streams = original.Streams;
        EventCount = original.EventCount;
    }

    private long CountBytes()
    {
        var bytes = 0L;
        foreach (var part in Streams)
        {
            foreach (var e in part.Events)
            {
                bytes += e.Data.Length + (e.MetadataJson?.Length ?? 0) + EnvelopeBytes(e, part.Stream.Value);
            }
        }

        return bytes;
    }

    /// <summary>Validates a request and completes its envelopes; throws a typed error naming the first fault.</summary>
    public static PreparedAppend Prepare(AppendRequest request, EventStoreOptions options, bool allowSystemStreams = false)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Streams is null || request.Streams.Count == 0)
        {
            throw new ArgumentException("An append must name at least one stream.", nameof(request));
        }

        var context = MessageContext.Current;
        var traceParent = MessageContext.CurrentTraceParent();
        var ids = new HashSet<MessageId>();
        var streams = new HashSet<string>(StringComparer.Ordinal);
        var prepared = new PreparedStreamAppend[request.Streams.Count];
        var count = 0;
        for (var s = 0; s < request.Streams.Count; s++)
        {
            var append = request.Streams[s] ?? throw new ArgumentException($"The request's stream part {s} is null.", nameof(request));
            var stream = append.Stream;
            if (stream == default)
            {
                throw new InvalidStreamNameException(null, "the name is missing");
            }

            if (stream.IsSystem && !allowSystemStreams)
            {
                throw new InvalidStreamNameException(stream.Value, "names starting with '$' are reserved for Cairn's own streams");
            }

            if (!streams.Add(stream.Value))
            {
                throw new ArgumentException($"The stream '{stream}' appears twice in one append; put all its events in one part.", nameof(request));
            }

            if (append.Events is null || append.Events.Count == 0)
            {
                throw new ArgumentException($"The append to '{stream}' has no events.", nameof(request));
            }

            var events = new PreparedEvent[append.Events.Count];
            for (var i = 0; i < events.Length; i++)
            {
                var e = append.Events[i] ?? throw new ArgumentException($"The append to '{stream}' has a null event at index {i}.", nameof(request));
                if (e.Id.Value == Guid.Empty)
                {
                    throw new InvalidEventException($"The event at index {i} of the append to '{stream}' has no id.");
                }

                if (!ids.Add(e.Id))
                {
                    throw new DuplicateEventIdException(e.Id, "appears more than once in the same append");
                }

                events[i] = PrepareEvent(e, options, context, traceParent, allowSystemStreams);
            }

            prepared[s] = new PreparedStreamAppend(stream, append.ExpectedVersion, events);
            count += events.Length;
        }

        return new PreparedAppend(request, prepared, count);
    }

    /// <summary>
    /// What an event's envelope adds to its data and metadata on the wire: its stream's name (and category, at most as
    /// long), type, source, content type and optional attributes in UTF-8, its tags, and 128 bytes for its id, numbers
    /// and the length prefix of each value. A backend whose statement has a size limit (PostgreSQL's 1 GB message) would
    /// otherwise take an append of many small events with long names past it.
    /// </summary>
    private static long EnvelopeBytes(PreparedEvent e, string stream)
    {
        var bytes = 128L + 2L * Utf8(stream) + Utf8(e.Type) + Utf8(e.Source) + Utf8(e.ContentType) + Utf8(e.DataSchema)
            + Utf8(e.CorrelationId) + Utf8(e.CausationId) + Utf8(e.TraceParent);
        foreach (var tag in e.Tags)
        {
            bytes += Utf8(tag) + 8;
        }

        return bytes;

        static long Utf8(string? text) => text is null ? 0 : System.Text.Encoding.UTF8.GetByteCount(text);
    }

    private static PreparedEvent PrepareEvent(EventData e, EventStoreOptions options, MessageContext? context, string? traceParent, bool allowSystemTypes)
    {
        if (EventTypeNames.Validate(e.Type) is { } typeFault)
        {
            throw new InvalidEventException($"Event {e.Id} has an invalid type '{e.Type}': {typeFault}.");
        }

        if (e.Type[0] == '$' && !allowSystemTypes)
        {
            throw new InvalidEventException($"Event {e.Id} has the type '{e.Type}': types starting with '$' are reserved for Cairn's own events.");
        }

        if (string.IsNullOrWhiteSpace(e.ContentType))
        {
            throw new InvalidEventException($"Event {e.Id} of type '{e.Type}' has no content type.");
        }

        ValidateAttribute(e, nameof(EventData.ContentType), e.ContentType, 256);
        ValidateAttribute(e, nameof(EventData.Source), e.Source, 2048);
        ValidateAttribute(e, nameof(EventData.DataSchema), e.DataSchema, 2048);
        ValidateAttribute(e, nameof(EventData.CorrelationId), e.CorrelationId, 256);
        ValidateAttribute(e, nameof(EventData.CausationId), e.CausationId, 256);
        ValidateAttribute(e, nameof(EventData.TraceParent), e.TraceParent, 256);
        if (e.TraceParent is not null && !TraceParentText.IsValid(e.TraceParent))
        {
            throw new InvalidEventException($"Event {e.Id} has an invalid TraceParent '{e.TraceParent}': it must be {TraceParentText.Rule}.");
        }

        if (e.Source is not null && !UriText.IsReference(e.Source))
        {
            throw new InvalidEventException($"Event {e.Id} has an invalid Source '{e.Source}': it must be {UriText.ReferenceRule}.");
        }

        if (e.DataSchema is not null && !UriText.IsDataSchema(e.DataSchema))
        {
            throw new InvalidEventException($"Event {e.Id} has an invalid DataSchema '{e.DataSchema}': it must be {UriText.AbsoluteRule}.");
        }

        // Copies: what the caller changes after the call can never change a stored event. Repeated tags count once.
        string[] tags = [];
        if (e.Tags is { Count: > 0 })
        {
            foreach (var tag in e.Tags)
            {
                EventTags.Validate(tag);
            }

            tags = [.. e.Tags.Distinct(StringComparer.Ordinal)];
        }

        byte[]? metadataJson = null;
        if (e.Metadata is { Count: > 0 })
        {
            foreach (var (key, value) in e.Metadata)
            {
                if (string.IsNullOrEmpty(key) || key.Length > 256 || StoredText.Refuses(key) || value is null || StoredText.HasUnpairedSurrogate(value))
                {
                    throw new InvalidEventException($"Event {e.Id} has an invalid metadata entry '{key}': keys are 1 to 256 characters with no {StoredText.Refused}, and values are not null and hold no unpaired surrogates.");
                }
            }

            metadataJson = JsonSerializer.SerializeToUtf8Bytes(e.Metadata, CairnJsonContext.Default.IReadOnlyDictionaryStringString);
        }

        // Tags count as metadata does: without it an event of many long tags would be stored whatever its size.
        long size = e.Data.Length + (metadataJson?.Length ?? 0);
        foreach (var tag in tags)
        {
            size += Encoding.UTF8.GetByteCount(tag);
        }

        if (size > options.MaxEventSize)
        {
            throw new EventTooLargeException(e.Id, e.Type, size, options.MaxEventSize);
        }

        var dataSchema = e.DataSchema;
        if (IsJson(e.ContentType))
        {
            ValidateJson(e);
            dataSchema = options.Schemas?.Check(e.Type, dataSchema, e.Data, "event", e.Id) ?? dataSchema;
        }

        return new PreparedEvent(
            e.Id,
            e.Type,
            e.Data.ToArray(),
            e.ContentType,
            dataSchema,
            e.Source ?? options.Source,
            e.CorrelationId ?? context?.CorrelationId,
            e.CausationId ?? context?.CausationId,
            e.TraceParent ?? traceParent,
            tags,
            e.Metadata is { Count: > 0 } ? new Dictionary<string, string>(e.Metadata, StringComparer.Ordinal) : null,
            metadataJson);
    }

    /// <summary>Refuses an envelope attribute that is empty when set, too long, or holds control characters or unpaired surrogates.</summary>
    private static void ValidateAttribute(EventData e, string name, string? value, int maxLength)
    {
        if (value is null)
        {
            return;
        }

        if (value.Length == 0 || value.Length > maxLength || StoredText.Refuses(value))
        {
            throw new InvalidEventException($"Event {e.Id} has an invalid {name}: when set it is 1 to {maxLength} characters with no {StoredText.Refused}.");
        }
    }

    /// <summary>True for <c>application/json</c>, <c>text/json</c> and any <c>+json</c> type, parameters ignored.</summary>
    public static bool IsJson(string contentType)
    {
        var semicolon = contentType.IndexOf(';', StringComparison.Ordinal);
        var media = (semicolon < 0 ? contentType : contentType[..semicolon]).Trim();
        return media.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || media.Equals("text/json", StringComparison.OrdinalIgnoreCase)
            || media.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }

    private static void ValidateJson(EventData e)
    {
        if (JsonPayload.Fault(e.Data.Span) is { } fault)
        {
            throw new InvalidEventDataException(e.Id, e.Type, fault.Reason, fault.Error);
        }
    }
}

/// <summary>Checks that data declared as JSON holds exactly one well-formed JSON value.</summary>
internal static class JsonPayload
{
    /// <summary>The deepest nesting of arrays and objects data may have (System.Text.Json's default).</summary>
    public const int MaxDepth = 64;

    /// <summary>Why the bytes are not one JSON value, or null when they are.</summary>
    public static (string Reason, JsonException? Error)? Fault(ReadOnlySpan<byte> data)
    {
        try
        {
            var reader = new Utf8JsonReader(data, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = MaxDepth });
            if (!reader.Read())
            {
                return ("the data is empty", null);
            }

            reader.Skip();
            if (reader.Read())
            {
                return ($"unexpected content after the JSON value at byte {reader.TokenStartIndex}", null);
            }

            return null;
        }
        catch (JsonException ex)
        {
            return (ex.Message, ex);
        }
    }
}

/// <summary>Rules for event type names.</summary>
public static class EventTypeNames
{
    /// <summary>The longest type name accepted.</summary>
    public const int MaxLength = 256;

    /// <summary>
    /// Whether a type is Cairn's own (<c>cairn.*</c>, such as a workflow's history events): versioned with Cairn itself,
    /// so never flagged on a flow map nor registered in an application's schema registry.
    /// </summary>
    public static bool IsCairnOwn(string name) => name.StartsWith("cairn.", StringComparison.Ordinal);

    /// <summary>Why a type name is invalid, or null when it is valid.</summary>
    public static string? Validate(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "the type name is empty";
        }

        if (name.Length > MaxLength)
        {
            return $"the type name is over {MaxLength} characters";
        }

        foreach (var c in name)
        {
            if (char.IsControl(c) || char.IsWhiteSpace(c))
            {
                return "the type name contains white space or a control character";
            }
        }

        if (StoredText.Refuses(name))
        {
            return "the type name contains an unpaired surrogate";
        }

        return null;
    }
}
