using System.Collections.Concurrent;
using System.Reflection;
using Cairn.EventStore;

namespace Cairn.Serialization;

/// <summary>
/// Names an event class with a stable type name, such as <c>order.placed</c>, that is stored instead of the CLR
/// name, so the class can be renamed or moved without breaking stored events.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Struct, Inherited = false)]
public sealed class EventTypeAttribute(string name) : Attribute
{
    /// <summary>The stable type name.</summary>
    public string Name { get; } = name;
}

/// <summary>
/// The explicit map between CLR types and stable event type names. A name maps to one type and a type to one name;
/// a clash is refused when it is registered. Thread-safe.
/// </summary>
public sealed class EventTypeRegistry
{
    private readonly ConcurrentDictionary<string, Type> _byName = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Type, string> _byType = new();
    private readonly object _gate = new();

    /// <summary>Registers <typeparamref name="T"/> under <paramref name="name"/>.</summary>
    public EventTypeRegistry Register<T>(string name) => Register(typeof(T), name);

    /// <summary>Registers <typeparamref name="T"/> under the name of its <see cref="EventTypeAttribute"/>.</summary>
    public EventTypeRegistry Register<T>() => Register(typeof(T));

    /// <summary>Registers a type under the name of its <see cref="EventTypeAttribute"/>.</summary>
    public EventTypeRegistry Register(Type type)
    {
        var attribute = type.GetCustomAttribute<EventTypeAttribute>()
            ?? throw new ArgumentException($"The type {type.FullName} has no [EventType] attribute; register it with a name.", nameof(type));
        return Register(type, attribute.Name);
    }

    /// <summary>Registers a type under a stable name.</summary>
    public EventTypeRegistry Register(Type type, string name)
    {
        ArgumentNullException.ThrowIfNull(type);
        if (EventTypeNames.Validate(name) is { } fault)
        {
            throw new ArgumentException($"'{name}' is not a valid event type name for {type.FullName}: {fault}.", nameof(name));
        }

        if (name[0] == '$')
        {
            throw new ArgumentException($"'{name}' starts with '$', which is reserved for Cairn's own events.", nameof(name));
        }

        lock (_gate)
        {
            if (_byName.TryGetValue(name, out var existing) && existing != type)
            {
                throw new ArgumentException($"The event type name '{name}' is already registered for {existing.FullName}; {type.FullName} needs another.", nameof(name));
            }

            if (_byType.TryGetValue(type, out var existingName) && existingName != name)
            {
                throw new ArgumentException($"{type.FullName} is already registered as '{existingName}'.", nameof(type));
            }

            _byName[name] = type;
            _byType[type] = name;
        }

        return this;
    }

    /// <summary>Registers every type in the assembly that carries <see cref="EventTypeAttribute"/>.</summary>
    public EventTypeRegistry RegisterAssembly(Assembly assembly)
    {
        foreach (var type in assembly.GetTypes())
        {
            if (type.GetCustomAttribute<EventTypeAttribute>() is { } attribute)
            {
                Register(type, attribute.Name);
            }
        }

        return this;
    }

    /// <summary>The stable name of a type; <see cref="UnknownEventTypeException"/> when it is not registered.</summary>
    public string GetName(Type type) =>
        _byType.TryGetValue(type, out var name) ? name : throw new UnknownEventTypeException(type.FullName ?? type.Name, $"the CLR type {type.FullName} is not registered as an event type; register it with a stable name");

    /// <summary>The type registered under a name; <see cref="UnknownEventTypeException"/> when there is none.</summary>
    public Type GetType(string name) =>
        _byName.TryGetValue(name, out var type) ? type : throw new UnknownEventTypeException(name, $"no CLR type is registered for the event type '{name}'");

    /// <summary>Tries to find the type registered under a name.</summary>
    public bool TryGetType(string name, out Type? type) => _byName.TryGetValue(name, out type);

    /// <summary>Tries to find the name of a type.</summary>
    public bool TryGetName(Type type, out string? name) => _byType.TryGetValue(type, out name);

    /// <summary>Every registered name and type.</summary>
    public IReadOnlyDictionary<string, Type> Registrations => new Dictionary<string, Type>(_byName, StringComparer.Ordinal);
}

/// <summary>An event type is not registered: no CLR type for a stored name, or no name for a CLR type.</summary>
public sealed class UnknownEventTypeException(string eventType, string reason) : CairnException(reason + ".")
{
    /// <summary>The stored type name or the CLR type's name.</summary>
    public string EventType { get; } = eventType;
}
