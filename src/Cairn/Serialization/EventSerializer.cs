using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Schemas;

namespace Cairn.Serialization;

/// <summary>
/// Turns typed events into <see cref="EventData"/> and recorded events back into objects, through the
/// <see cref="EventTypeRegistry"/> and System.Text.Json. For trimming and speed, give it options whose
/// <see cref="JsonSerializerOptions.TypeInfoResolver"/> is a source-generated <c>JsonSerializerContext</c>.
/// <para>
/// What it writes names its type's version in the envelope's <c>dataschema</c>
/// (<c>urn:cairn:schema:order.placed:2</c>). What it reads at an earlier version is upcast to the class's version
/// first, so readers only ever see the current shape; one without a <c>dataschema</c> is version 1.
/// </para>
/// </summary>
public sealed class EventSerializer
{
    private readonly JsonSerializerOptions _options;
    private readonly ConcurrentDictionary<Type, JsonTypeInfo> _typeInfos = new();
    private readonly ConcurrentDictionary<string, string> _dataSchemas = new(StringComparer.Ordinal);

    /// <summary>Creates a serializer over a registry and JSON options (web defaults when null), without upcasters.</summary>
    public EventSerializer(EventTypeRegistry registry, JsonSerializerOptions? options = null)
        : this(registry, options, null)
    {
    }

    /// <summary>Creates a serializer over a registry, JSON options (web defaults when null) and upcasters.</summary>
    public EventSerializer(EventTypeRegistry registry, JsonSerializerOptions? options, UpcasterChains? upcasters)
    {
        ArgumentNullException.ThrowIfNull(registry);
        Registry = registry;
        Upcasters = upcasters ?? UpcasterChains.Empty;
        // A copy: the caller's options (shared with ASP.NET, say) are not made read-only behind its back.
        _options = options is null ? new JsonSerializerOptions(JsonSerializerDefaults.Web) : new JsonSerializerOptions(options);
        _options.TypeInfoResolver ??= new DefaultJsonTypeInfoResolver();
        _options.MakeReadOnly();
    }

    /// <summary>The registry of stable type names.</summary>
    public EventTypeRegistry Registry { get; }

    /// <summary>The upcasters applied to data written with an earlier version of its type.</summary>
    public UpcasterChains Upcasters { get; }

    /// <summary>The JSON options in use.</summary>
    public JsonSerializerOptions Options => _options;

    /// <summary>Serializes an event under its registered name, with a new id unless one is given.</summary>
    public EventData ToEventData(object @event, MessageId? id = null, IReadOnlyList<string>? tags = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(@event);
        var type = @event.GetType();
        var name = Registry.GetName(type);
        var data = Write(@event, type, name);
        return new EventData(id ?? MessageId.New(), name, data)
        {
            Tags = tags ?? [],
            Metadata = metadata,
            DataSchema = DataSchemaOf(name),
        };
    }

    /// <summary>
    /// The <c>dataschema</c> written for a type name: its current version's. Kept once the name is registered only: asked
    /// before (a message read before its class was registered), version 1 would otherwise stand for good.
    /// </summary>
    public string DataSchemaOf(string eventType)
    {
        if (_dataSchemas.TryGetValue(eventType, out var cached))
        {
            return cached;
        }

        // Registered first, then its version: the registry writes a version before its name.
        var registered = Registry.TryGetType(eventType, out _);
        var dataSchema = SchemaReference.Format(eventType, Registry.GetVersion(eventType));
        return registered ? _dataSchemas.GetOrAdd(eventType, dataSchema) : dataSchema;
    }

    /// <summary>
    /// The version of its type that a stored event or a message was written with: the one its <c>dataschema</c> names,
    /// 1 without one, and the current one for a <c>dataschema</c> that is not Cairn's (another producer's URI).
    /// </summary>
    /// <exception cref="UnknownSchemaVersionException">The <c>dataschema</c> names another type, or is of Cairn's form but names no version.</exception>
    public int VersionOf(string eventType, string? dataSchema, string what) => VersionOf(eventType, dataSchema, static what => what, what);

    private int VersionOf<TSubject>(string eventType, string? dataSchema, Func<TSubject, string> describe, TSubject subject)
    {
        if (dataSchema is null)
        {
            return 1;
        }

        var current = Registry.GetVersion(eventType);
        if (string.Equals(dataSchema, DataSchemaOf(eventType), StringComparison.Ordinal))
        {
            return current;
        }

        if (!SchemaReference.TryParse(dataSchema, out var reference))
        {
            // Another producer's URI is read as the current version. One of Cairn's form that names no version (0, a
            // negative or an overlong number) is no other producer's: read as the current version, its upcasters
            // would be passed over and its data misread.
            return SchemaReference.FaultOf(dataSchema) is { } fault
                ? throw new UnknownSchemaVersionException(describe(subject), eventType, dataSchema, current, fault)
                : current;
        }

        return string.Equals(reference.EventType, eventType, StringComparison.Ordinal)
            ? reference.Version
            : throw new UnknownSchemaVersionException(describe(subject), eventType, reference.Version, current, $"its dataschema '{dataSchema}' names the type '{reference.EventType}'");
    }

    /// <summary>Deserializes a recorded event into the type registered for its name, upcast to the class's version.</summary>
    /// <exception cref="UnknownEventTypeException">No class is registered for the event's type; the message names the event.</exception>
    /// <exception cref="UnknownSchemaVersionException">The event was written with a version later than the class's.</exception>
    /// <exception cref="UpcastingException">An upcaster failed; the message names the event, the type and the versions.</exception>
    public object Deserialize(RecordedEvent recorded)
    {
        ArgumentNullException.ThrowIfNull(recorded);
        if (!Registry.TryGetType(recorded.Type, out var type))
        {
            throw new UnknownEventTypeException(recorded.Type, $"no CLR type is registered for the event type '{recorded.Type}' of {Describe(recorded)}");
        }

        var typeInfo = TypeInfo(type!);
        try
        {
            var value = ReadCurrent(recorded.Type, recorded.DataSchema, recorded.Data.Span, typeInfo, Describe, recorded);
            return value ?? throw new EventDeserializationException(recorded, "the data is JSON null", null);
        }
        catch (Exception ex) when (IsDataRefused(ex))
        {
            throw new EventDeserializationException(recorded, ex.Message, ex);
        }
    }

    /// <summary>
    /// Reads data at its written version as the class's. The subject (the event or the message) is described
    /// only when something fails: a read of the current version allocates nothing beyond its object.
    /// </summary>
    private object? ReadCurrent<TSubject>(string eventType, string? dataSchema, ReadOnlySpan<byte> data, JsonTypeInfo typeInfo, Func<TSubject, string> describe, TSubject subject)
    {
        var current = Registry.GetVersion(eventType);
        var version = dataSchema is null && current == 1 ? 1 : VersionOf(eventType, dataSchema, describe, subject);
        if (version == current)
        {
            return JsonSerializer.Deserialize(data, typeInfo);
        }

        if (version > current)
        {
            throw new UnknownSchemaVersionException(describe(subject), eventType, version, current, "it was written by a later version of the code; deploy that version here too, or add its class");
        }

        var upcast = Upcasters.Apply(eventType, version, current, data, _options, describe(subject));
        return upcast.Deserialize(typeInfo);
    }

    /// <summary>
    /// Whether an exception out of reading stored data is the data's refusal: malformed JSON, or the class itself
    /// refusing what it was given (an invariant in its constructor or a setter). Cairn's own failures (an unknown
    /// version, an upcaster's) already name the event and pass through.
    /// </summary>
    private static bool IsDataRefused(Exception ex) => ex is not (CairnException or OperationCanceledException or OutOfMemoryException);

    private static string Describe(RecordedEvent recorded) =>
        string.Create(CultureInfo.InvariantCulture, $"event {recorded.Id} at {recorded.Stream}@{recorded.Version}");

    /// <summary>Serializes a message under its registered name, with a new id unless one is given.</summary>
    public Messaging.OutgoingMessage ToOutgoingMessage(object message, MessageId? id = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        var type = message.GetType();
        var name = Registry.GetName(type);
        return new Messaging.OutgoingMessage(id ?? MessageId.New(), name, Write(message, type, name))
        {
            DataSchema = DataSchemaOf(name),
        };
    }

    /// <summary>
    /// The value's JSON, or an <see cref="EventSerializationException"/> naming its type when System.Text.Json cannot
    /// write it (a NaN without named floating-point literals, a dictionary keyed by a record, a converter that throws).
    /// </summary>
    private byte[] Write(object value, Type type, string name)
    {
        var typeInfo = TypeInfo(type);
        try
        {
            return JsonSerializer.SerializeToUtf8Bytes(value, typeInfo);
        }
        catch (Exception ex) when (IsDataRefused(ex))
        {
            throw new EventSerializationException(type, $"'{name}' value", ex);
        }
    }

    /// <summary>Deserializes a message into the type registered for its type name, checking it is a <typeparamref name="T"/>.</summary>
    /// <exception cref="Messaging.Consumers.MessageDeserializationException">The type is unknown or the data does not fit it.</exception>
    public T Deserialize<T>(Messaging.Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (!Registry.TryGetType(message.Type, out var type))
        {
            throw new Messaging.Consumers.MessageDeserializationException(message, $"no class is registered for the type '{message.Type}'", null);
        }

        object? value;
        try
        {
            value = ReadCurrent(message.Type, message.DataSchema, message.Data.Span, TypeInfo(type!), static m => string.Create(CultureInfo.InvariantCulture, $"message {m.Id}"), message);
        }
        catch (Exception ex) when (IsDataRefused(ex))
        {
            throw new Messaging.Consumers.MessageDeserializationException(message, ex.Message, ex);
        }

        return value switch
        {
            T typed => typed,
            null => throw new Messaging.Consumers.MessageDeserializationException(message, "the data is JSON null", null),
            _ => throw new Messaging.Consumers.MessageDeserializationException(message, $"its registered type {type!.Name} is not a {typeof(T).Name}", null),
        };
    }

    private JsonTypeInfo TypeInfo(Type type)
    {
        // Cached here: GetTypeInfo checks the type on every call, a measurable share of a projection rebuild.
        if (_typeInfos.TryGetValue(type, out var cached))
        {
            return cached;
        }

        try
        {
            return _typeInfos.GetOrAdd(type, _options.GetTypeInfo(type));
        }
        catch (Exception ex) when (ex is NotSupportedException or InvalidOperationException)
        {
            // A source-generated resolver that does not list the type, or a class System.Text.Json cannot map (two
            // members under one JSON name, say).
            throw new EventSerializationException(type, ex);
        }
    }

    /// <summary>Deserializes a recorded event and checks it is a <typeparamref name="T"/>.</summary>
    public T Deserialize<T>(RecordedEvent recorded) => Deserialize(recorded) is T typed
        ? typed
        : throw new EventDeserializationException(recorded, $"its registered type is not a {typeof(T).Name}", null);
}

/// <summary>A stored event could not be turned into its registered CLR type.</summary>
public sealed class EventDeserializationException(RecordedEvent recorded, string reason, Exception? inner)
    : CairnException($"Event {recorded.Id} ({recorded.Type}, {recorded.Stream}@{recorded.Version}) could not be deserialized: {reason}", inner)
{
    /// <summary>The event that failed.</summary>
    public RecordedEvent Event { get; } = recorded;
}

/// <summary>
/// The JSON options cannot map an event type: no contract for it (add it to the source-generated context), or a class
/// System.Text.Json refuses (two members under one JSON name, say); or a value of it could not be written as JSON.
/// </summary>
public sealed class EventSerializationException : CairnException
{
    /// <summary>The JSON options cannot map <paramref name="type"/> at all.</summary>
    public EventSerializationException(Type type, Exception inner)
        : base(
            inner is NotSupportedException
                ? $"The JSON options have no contract for the event type {type.FullName}; add [JsonSerializable(typeof({type.Name}))] to the source-generated context."
                : $"The JSON options cannot map the event type {type.FullName}: {inner.Message}",
            inner)
    {
        EventType = type;
    }

    /// <summary>A value of <paramref name="type"/>, registered as <paramref name="name"/>, could not be written as JSON.</summary>
    internal EventSerializationException(Type type, string name, Exception inner)
        : base($"The {name} ({type.FullName}) could not be written as JSON: {inner.Message}", inner)
    {
        EventType = type;
    }

    /// <summary>The CLR type that could not be mapped or written.</summary>
    public Type EventType { get; }
}
