using System.Collections.Concurrent;
using System.Reflection;
using Cairn.EventStore;

namespace Cairn.Serialization;

/// <summary>
/// Names an event class with a stable type name, such as <c>order.placed</c>, that is stored instead of the CLR
/// name, so the class can be renamed or moved without breaking stored events, and the version of the type's shape
/// that the class is.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Struct, Inherited = false)]
public sealed class EventTypeAttribute(string name) : Attribute
{
    /// <summary>The stable type name.</summary>
    public string Name { get; } = name;

    /// <summary>
    /// The version of the type's shape this class is, from 1 (the default). Raise it with each change of shape; events
    /// written with earlier versions are upcast to this one on read.
    /// </summary>
    public int Version { get; init; } = 1;
}

/// <summary>
/// The explicit map between CLR types and stable event type names. A name maps to one type (the class of its current
/// version) and a type to one name; a clash is refused when it is registered. Thread-safe.
/// </summary>
public sealed class EventTypeRegistry
{
    private readonly ConcurrentDictionary<string, Type> _byName = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Type, string> _byType = new();
    private readonly ConcurrentDictionary<string, int> _versions = new(StringComparer.Ordinal);
    private readonly object _gate = new();

    /// <summary>
    /// Registers <typeparamref name="T"/> under <paramref name="name"/>, as the type's version <paramref name="version"/>;
    /// without one, the version its <see cref="EventTypeAttribute"/> declares, else 1.
    /// </summary>
    public EventTypeRegistry Register<T>(string name, int? version = null) => Register(typeof(T), name, version);

    /// <summary>Registers <typeparamref name="T"/> under the name of its <see cref="EventTypeAttribute"/>.</summary>
    public EventTypeRegistry Register<T>() => Register(typeof(T));

    /// <summary>Registers a type under the name of its <see cref="EventTypeAttribute"/>.</summary>
    public EventTypeRegistry Register(Type type)
    {
        var attribute = type.GetCustomAttribute<EventTypeAttribute>()
            ?? throw new ArgumentException($"The type {type.FullName} has no [EventType] attribute; register it with a name.", nameof(type));
        return RegisterVersion(type, attribute.Name, attribute.Version);
    }

    /// <summary>
    /// Registers a type under a stable name, as the type's version <paramref name="version"/>; without one, the version
    /// its <see cref="EventTypeAttribute"/> declares when the attribute names this same type (a class marked version 2
    /// is not written as version 1 because its name was given), else 1: a version of another name's history says
    /// nothing of this one's. A version given explicitly wins over the attribute's.
    /// </summary>
    public EventTypeRegistry Register(Type type, string name, int? version = null)
    {
        ArgumentNullException.ThrowIfNull(type);
        var declared = type.GetCustomAttribute<EventTypeAttribute>() is { } attribute && string.Equals(attribute.Name, name, StringComparison.Ordinal)
            ? attribute.Version
            : 1;
        return RegisterVersion(type, name, version ?? declared);
    }

    private EventTypeRegistry RegisterVersion(Type type, string name, int version)
    {
        CheckShape(type, name, version);
        lock (_gate)
        {
            CheckAgainstRegistered(type, name, version);
            Add(type, name, version);
        }

        return this;
    }

    /// <summary>Refuses a registration that could never be valid, whatever else is registered.</summary>
    private static void CheckShape(Type type, string name, int version)
    {
        ArgumentNullException.ThrowIfNull(type);
        if (version < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(version), version, $"The version of the event type '{name}' ({type.FullName}) must be 1 or more.");
        }

        if (EventTypeNames.Validate(name) is { } fault)
        {
            throw new ArgumentException($"'{name}' is not a valid event type name for {type.FullName}: {fault}.", nameof(name));
        }

        if (name[0] == '$')
        {
            throw new ArgumentException($"'{name}' starts with '$', which is reserved for Cairn's own events.", nameof(name));
        }

        // Cairn's own types (a workflow's history) are versioned with Cairn: an application's type named so would never
        // be registered in the schema registry, nor its payloads validated.
        if (EventTypeNames.IsCairnOwn(name) && type.Assembly != typeof(EventTypeRegistry).Assembly)
        {
            throw new ArgumentException($"'{name}' starts with 'cairn.', which is reserved for Cairn's own types ({type.FullName} needs another name).", nameof(name));
        }

        if (type.ContainsGenericParameters)
        {
            throw new ArgumentException($"{type.FullName} is an open generic type, which has no instances to write or read: register a closed one ({type.Name.Split('`')[0]}<...> with its type arguments).", nameof(type));
        }
    }

    /// <summary>Refuses a registration that conflicts with one already made. Under the gate.</summary>
    private void CheckAgainstRegistered(Type type, string name, int version)
    {
        if (_byName.TryGetValue(name, out var existing) && existing != type)
        {
            throw new ArgumentException($"The event type name '{name}' is already registered for {existing.FullName}; {type.FullName} needs another.", nameof(name));
        }

        if (_byType.TryGetValue(type, out var existingName) && existingName != name)
        {
            throw new ArgumentException($"{type.FullName} is already registered as '{existingName}'.", nameof(type));
        }

        if (_versions.TryGetValue(name, out var existingVersion) && existingVersion != version)
        {
            throw new ArgumentException($"The event type '{name}' is already registered at version {existingVersion}; {type.FullName} cannot also be version {version}.", nameof(version));
        }

        if (_fixedBy is not null && existing is null)
        {
            throw new InvalidOperationException($"The event type '{name}' ({type.FullName}) cannot be registered now: {_fixedBy}. Register it in AddCairn's options.");
        }
    }

    /// <summary>
    /// Takes no new type from now on (a registration made already may be repeated): the host has started, and what it
    /// registered in the schema registry and validates was read from here then. <paramref name="why"/> says so in the refusal.
    /// </summary>
    internal void Fix(string why)
    {
        lock (_gate)
        {
            _fixedBy ??= why;
        }
    }

    /// <summary>Why new registrations are refused, once <see cref="Fix"/> was called.</summary>
    private string? _fixedBy;

    /// <summary>Records a checked registration. Under the gate.</summary>
    private void Add(Type type, string name, int version)
    {
        // The version first: readers take no lock, and one that finds the name must find its version.
        _versions[name] = version;
        _byName[name] = type;
        _byType[type] = name;
    }

    /// <summary>
    /// Registers every type in the assembly that carries <see cref="EventTypeAttribute"/>. Where several classes carry
    /// one name, the one with the highest version is registered; the others are earlier shapes, kept for typed upcasters.
    /// All or nothing: one that cannot be registered (two classes of one version, a name or class registered otherwise
    /// already) is refused before any of the assembly's is registered.
    /// </summary>
    public EventTypeRegistry RegisterAssembly(Assembly assembly)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        var current = assembly.GetTypes()
            .Select(type => (Type: type, Attribute: type.GetCustomAttribute<EventTypeAttribute>()))
            .Where(t => t.Attribute is not null)
            .GroupBy(t => t.Attribute!.Name, StringComparer.Ordinal);
        var chosen = new List<(Type Type, string Name, int Version)>();
        foreach (var classes in current)
        {
            var ordered = classes.OrderByDescending(t => t.Attribute!.Version).ToList();
            for (var i = 0; i < ordered.Count; i++)
            {
                // Earlier classes too: a typed upcaster from one of two classes of one version, or from a version 0,
                // would otherwise fail only at the host's start, as a step that cannot be.
                if (i > 0 && ordered[i - 1].Attribute!.Version == ordered[i].Attribute!.Version)
                {
                    throw new ArgumentException($"{ordered[i - 1].Type.FullName} and {ordered[i].Type.FullName} are both version {ordered[i].Attribute!.Version} of the event type '{classes.Key}'.", nameof(assembly));
                }

                CheckShape(ordered[i].Type, classes.Key, ordered[i].Attribute!.Version);
            }

            chosen.Add((ordered[0].Type, classes.Key, ordered[0].Attribute!.Version));
        }

        lock (_gate)
        {
            foreach (var (type, name, version) in chosen)
            {
                CheckAgainstRegistered(type, name, version);
            }

            foreach (var (type, name, version) in chosen)
            {
                Add(type, name, version);
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

    /// <summary>The current version of a registered type name (that of its registered class); 1 for a name not registered.</summary>
    public int GetVersion(string name) => _versions.TryGetValue(name, out var version) ? version : 1;

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
