using System.Buffers;
using System.Text.Json;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Messaging;

/// <summary>
/// A message validated and with its envelope completed on the sender's flow (so it picks up the sender's
/// <see cref="MessageContext"/> and activity), ready for a backend to store. A null correlation id means the message's
/// own id.
/// </summary>
internal sealed record PreparedMessage(
    MessageId Id,
    string Type,
    ReadOnlyMemory<byte> Data,
    string ContentType,
    string? DataSchema,
    string? Subject,
    string Source,
    string? CorrelationId,
    string? CausationId,
    string? TraceParent,
    IReadOnlyDictionary<string, string>? Metadata,
    string? GroupKey,
    string? DeduplicationId,
    TimeSpan? Delay,
    DateTimeOffset? DeliverAt)
{
    /// <summary>The bytes counted against a queue's size limit: data plus metadata's keys and values in UTF-8.</summary>
    public long Size => Data.Length + (Metadata?.Sum(kv => (long)System.Text.Encoding.UTF8.GetByteCount(kv.Key) + System.Text.Encoding.UTF8.GetByteCount(kv.Value)) ?? 0);

    /// <summary>Validates a message and completes its envelope; throws <see cref="InvalidMessageException"/> naming the fault.</summary>
    public static PreparedMessage Prepare(OutgoingMessage message, EventStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.Id.Value == Guid.Empty)
        {
            throw new InvalidMessageException("A message has no id.");
        }

        if (EventTypeNames.Validate(message.Type) is { } typeFault)
        {
            throw new InvalidMessageException($"Message {message.Id} has an invalid type '{message.Type}': {typeFault}.");
        }

        if (string.IsNullOrWhiteSpace(message.ContentType))
        {
            throw new InvalidMessageException($"Message {message.Id} of type '{message.Type}' has no content type.");
        }

        Attribute(message, nameof(OutgoingMessage.ContentType), message.ContentType, 256);
        Attribute(message, nameof(OutgoingMessage.Source), message.Source, 2048);
        Attribute(message, nameof(OutgoingMessage.DataSchema), message.DataSchema, 2048);
        Attribute(message, nameof(OutgoingMessage.Subject), message.Subject, 2048);
        Attribute(message, nameof(OutgoingMessage.CorrelationId), message.CorrelationId, 256);
        Attribute(message, nameof(OutgoingMessage.CausationId), message.CausationId, 256);
        Attribute(message, nameof(OutgoingMessage.TraceParent), message.TraceParent, 256);
        if (message.TraceParent is not null && !TraceParentText.IsValid(message.TraceParent))
        {
            throw new InvalidMessageException($"Message {message.Id} has an invalid TraceParent '{message.TraceParent}': it must be {TraceParentText.Rule}.");
        }

        // A stored event is published as it was stored, even with attributes written before these forms were checked.
        if (!message.IsStoredEvent)
        {
            if (message.Source is not null && !UriText.IsReference(message.Source))
            {
                throw new InvalidMessageException($"Message {message.Id} has an invalid Source '{message.Source}': it must be {UriText.ReferenceRule}.");
            }

            if (message.DataSchema is not null && !UriText.IsDataSchema(message.DataSchema))
            {
                throw new InvalidMessageException($"Message {message.Id} has an invalid DataSchema '{message.DataSchema}': it must be {UriText.AbsoluteRule}.");
            }
        }

        // As long as a stream name: an event route makes each event's stream its message's group.
        Attribute(message, nameof(OutgoingMessage.GroupKey), message.GroupKey, 256);
        Attribute(message, nameof(OutgoingMessage.DeduplicationId), message.DeduplicationId, 128);
        if (message.Delay is { } delay && (delay < TimeSpan.Zero || delay > TimeSpan.FromDays(365)))
        {
            throw new InvalidMessageException($"Message {message.Id} has a delay of {delay}; it must be between 0 and 365 days.");
        }

        Dictionary<string, string>? metadata = null;
        if (message.Metadata is { Count: > 0 })
        {
            metadata = new Dictionary<string, string>(message.Metadata.Count, StringComparer.Ordinal);
            foreach (var (key, value) in message.Metadata)
            {
                if (string.IsNullOrEmpty(key) || key.Length > 256 || StoredText.Refuses(key) || value is null || StoredText.HasUnpairedSurrogate(value))
                {
                    throw new InvalidMessageException($"Message {message.Id} has an invalid metadata entry '{key}': keys are 1 to 256 characters with no {StoredText.Refused}, and values are not null and hold no unpaired surrogates.");
                }

                if (PreparedMessageNames.IsReserved(key))
                {
                    throw new InvalidMessageException($"Message {message.Id} has the metadata key '{key}', which is an envelope attribute's name; choose another.");
                }

                metadata[key] = value;
            }
        }

        var dataSchema = message.DataSchema;
        if (PreparedAppend.IsJson(message.ContentType))
        {
            if (JsonPayload.Fault(message.Data.Span) is { } fault)
            {
                throw new InvalidMessageException($"Message {message.Id} of type '{message.Type}' declares JSON but its data is not: {fault.Reason}.");
            }

            // A stored event without a dataschema predates the registry: there is no version to check it against.
            if (!(message.IsStoredEvent && dataSchema is null))
            {
                dataSchema = options.Schemas?.Check(message.Type, dataSchema, message.Data, "message", message.Id) ?? dataSchema;
            }
        }

        var context = MessageContext.Current;
        return new PreparedMessage(
            message.Id,
            message.Type,
            message.Data.ToArray(),
            message.ContentType,
            dataSchema,
            message.Subject,
            message.Source ?? options.Source,
            message.CorrelationId ?? context?.CorrelationId,
            message.CausationId ?? context?.CausationId,
            message.TraceParent ?? MessageContext.CurrentTraceParent(),
            metadata,
            message.GroupKey,
            message.DeduplicationId,
            message.Delay,
            message.DeliverAt);
    }

    /// <summary>
    /// Why <paramref name="queue"/> refuses the message at a commit at <paramref name="commitTicks"/>, or null when it
    /// takes it: too large, no group key for a FIFO queue, or a delay reaching past the queue's retention, which would
    /// have it expire before anyone could receive it.
    /// </summary>
    public CairnException? RefusalBy(QueueDefinition queue, long commitTicks)
    {
        if (Size > queue.MaxMessageSize)
        {
            return new MessageTooLargeException(Id, queue.Name, Size, queue.MaxMessageSize);
        }

        if (queue.Fifo && GroupKey is null)
        {
            return new InvalidMessageException($"Message {Id} is sent to the FIFO queue '{queue.Name}' without a group key; FIFO queues order messages by group.");
        }

        var delay = TimeSpan.FromTicks(VisibleAtTicks(commitTicks, queue.DefaultDelay) - commitTicks);
        return delay >= queue.Retention
            ? new InvalidMessageException($"Message {Id} would become visible in queue '{queue.Name}' {delay} after it is sent, not within the queue's retention of {queue.Retention}: it would expire unreceived. Shorten its delay or lengthen the retention.")
            : null;
    }

    /// <summary>The moment the message becomes visible, given the commit time and the queue's default delay.</summary>
    public long VisibleAtTicks(long commitTicks, TimeSpan defaultDelay)
    {
        if (DeliverAt is { } at)
        {
            return Math.Max(commitTicks, at.UtcTicks);
        }

        return commitTicks + (Delay ?? defaultDelay).Ticks;
    }

    /// <summary>
    /// How <see cref="RenderDocument"/> reads the envelope back: one level deeper than data may nest, for the envelope
    /// around it, so every payload a send or an append accepts can be matched by a filter rule.
    /// </summary>
    internal static readonly JsonDocumentOptions RenderedOptions = new() { MaxDepth = JsonPayload.MaxDepth + 1 };

    /// <summary>The envelope (<see cref="RenderJson"/>) as a parsed document, for matching filter rules.</summary>
    public JsonDocument RenderDocument(DateTimeOffset time) => JsonDocument.Parse(RenderJson(time), RenderedOptions);

    /// <summary>
    /// The envelope as one JSON document, CloudEvents' structured form: attributes and extensions at the top, the payload
    /// under <c>data</c> (or <c>data_base64</c> when it is not JSON). Filter rules are matched against it.
    /// </summary>
    public byte[] RenderJson(DateTimeOffset time)
    {
        var buffer = new ArrayBufferWriter<byte>(Data.Length + 256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("specversion", "1.0");
            writer.WriteString("id", Id.ToString());
            writer.WriteString("type", Type);
            writer.WriteString("source", Source);
            writer.WriteString("time", time);
            writer.WriteString("datacontenttype", ContentType);
            if (Subject is not null) writer.WriteString("subject", Subject);
            if (DataSchema is not null) writer.WriteString("dataschema", DataSchema);
            writer.WriteString("correlationid", CorrelationId ?? Id.ToString());
            if (CausationId is not null) writer.WriteString("causationid", CausationId);
            if (TraceParent is not null) writer.WriteString("traceparent", TraceParent);
            if (Metadata is not null)
            {
                foreach (var (key, value) in Metadata)
                {
                    writer.WriteString(key, value);
                }
            }

            if (PreparedAppend.IsJson(ContentType))
            {
                writer.WritePropertyName("data");
                writer.WriteRawValue(Data.Span, skipInputValidation: true);
            }
            else
            {
                writer.WriteBase64String("data_base64", Data.Span);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void Attribute(OutgoingMessage message, string name, string? value, int maxLength)
    {
        if (value is not null && (value.Length == 0 || value.Length > maxLength || StoredText.Refuses(value)))
        {
            throw new InvalidMessageException($"Message {message.Id} has an invalid {name}: when set it is 1 to {maxLength} characters with no {StoredText.Refused}.");
        }
    }
}

/// <summary>The envelope's own attribute names, which metadata keys may not take.</summary>
internal static class PreparedMessageNames
{
    private static readonly HashSet<string> Reserved = new(StringComparer.OrdinalIgnoreCase)
    {
        "id", "type", "source", "time", "subject", "datacontenttype", "dataschema", "specversion",
        "correlationid", "causationid", "traceparent", "data", "data_base64",
    };

    public static bool IsReserved(string key) => Reserved.Contains(key);
}
