using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Cairn.Envelopes;
using Cairn.EventStore;

namespace Cairn.Serialization;

/// <summary>
/// Turns typed events into <see cref="EventData"/> and recorded events back into objects, through the
/// <see cref="EventTypeRegistry"/> and System.Text.Json. For trimming and speed, give it options whose
/// <see cref="JsonSerializerOptions.TypeInfoResolver"/> is a source-generated <c>JsonSerializerContext</c>.
/// </summary>
public sealed class EventSerializer
{
    private readonly JsonSerializerOptions _options;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Type, JsonTypeInfo> _typeInfos = new();

    /// <summary>Creates a serializer over a registry and JSON options (web defaults when null).</summary>
    public EventSerializer(EventTypeRegistry registry, JsonSerializerOptions? options = null)
    {
        Registry = registry;
        // A copy: the caller's options (shared with ASP.NET, say) are not made read-only behind its back.
        _options = options is null ? new JsonSerializerOptions(JsonSerializerDefaults.Web) : new JsonSerializerOptions(options);
        _options.TypeInfoResolver ??= new DefaultJsonTypeInfoResolver();
        _options.MakeReadOnly();
    }

    /// <summary>The registry of stable type names.</summary>
    public EventTypeRegistry Registry { get; }

    /// <summary>The JSON options in use.</summary>
    public JsonSerializerOptions Options => _options;

    /// <summary>Serializes an event under its registered name, with a new id unless one is given.</summary>
    public EventData ToEventData(object @event, MessageId? id = null, IReadOnlyList<string>? tags = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(@event);
        var type = @event.GetType();
        var name = Registry.GetName(type);
        var data = JsonSerializer.SerializeToUtf8Bytes(@event, TypeInfo(type));
        return new EventData(id ?? MessageId.New(), name, data)
        {
            Tags = tags ?? [],
            Metadata = metadata,
        };
    }

    /// <summary>Deserializes a recorded event into the type registered for its name.</summary>
    public object Deserialize(RecordedEvent recorded)
    {
        var typeInfo = TypeInfo(Registry.GetType(recorded.Type));
        try
        {
            return JsonSerializer.Deserialize(recorded.Data.Span, typeInfo)
                ?? throw new EventDeserializationException(recorded, "the data is JSON null", null);
        }
        catch (JsonException ex)
        {
            throw new EventDeserializationException(recorded, ex.Message, ex);
        }
    }

    /// <summary>Serializes a message under its registered name, with a new id unless one is given.</summary>
    public Messaging.OutgoingMessage ToOutgoingMessage(object message, MessageId? id = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        var type = message.GetType();
        return new Messaging.OutgoingMessage(id ?? MessageId.New(), Registry.GetName(type), JsonSerializer.SerializeToUtf8Bytes(message, TypeInfo(type)));
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
            value = JsonSerializer.Deserialize(message.Data.Span, TypeInfo(type!));
        }
        catch (JsonException ex)
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
        catch (NotSupportedException ex)
        {
            // A source-generated resolver that does not list the type.
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

/// <summary>The JSON options know no contract for an event type: add it to the source-generated context.</summary>
public sealed class EventSerializationException(Type type, Exception inner)
    : CairnException($"The JSON options have no contract for the event type {type.FullName}; add [JsonSerializable(typeof({type.Name}))] to the source-generated context.", inner)
{
    /// <summary>The CLR type without a contract.</summary>
    public Type EventType { get; } = type;
}
