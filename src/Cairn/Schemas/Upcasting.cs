using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Schemas;

/// <summary>
/// The upcasters of every event type, checked once: each goes one version forward, at most one per step, none for a
/// type that is not registered or beyond its current version, and a type's upcasters form one unbroken chain up to its
/// current version. Versions below a chain's start are read as they are, which the registry allows only where the next
/// version is backward compatible.
/// </summary>
public sealed class UpcasterChains
{
    private readonly Dictionary<string, Dictionary<int, Upcaster>> _byType;

    /// <summary>No upcasters.</summary>
    public static UpcasterChains Empty { get; } = new(new Dictionary<string, Dictionary<int, Upcaster>>(StringComparer.Ordinal));

    private UpcasterChains(Dictionary<string, Dictionary<int, Upcaster>> byType) => _byType = byType;

    /// <summary>Checks and indexes upcasters against the registered types.</summary>
    /// <exception cref="InvalidUpcasterException">An upcaster breaks a rule; the message names the type and versions.</exception>
    public static UpcasterChains Build(EventTypeRegistry types, IEnumerable<Upcaster> upcasters)
    {
        ArgumentNullException.ThrowIfNull(types);
        ArgumentNullException.ThrowIfNull(upcasters);
        var byType = new Dictionary<string, Dictionary<int, Upcaster>>(StringComparer.Ordinal);
        foreach (var upcaster in upcasters)
        {
            if (upcaster is null)
            {
                throw new ArgumentException("The upcasters include a null one.", nameof(upcasters));
            }

            var type = upcaster.EventType;
            if (!types.TryGetType(type, out _))
            {
                throw new InvalidUpcasterException(type, upcaster.From, upcaster.To, "no class is registered for that event type");
            }

            var current = types.GetVersion(type);
            if (upcaster.From < 1)
            {
                throw new InvalidUpcasterException(type, upcaster.From, upcaster.To, "versions start at 1");
            }

            if (upcaster.To <= upcaster.From)
            {
                throw new InvalidUpcasterException(type, upcaster.From, upcaster.To, "it goes back, and a chain that goes back is a cycle; an upcaster goes from a version to the next");
            }

            if (upcaster.To != upcaster.From + 1)
            {
                throw new InvalidUpcasterException(type, upcaster.From, upcaster.To, string.Create(CultureInfo.InvariantCulture, $"it skips versions; an upcaster goes from a version to the next ({upcaster.From} to {upcaster.From + 1})"));
            }

            if (upcaster.To > current)
            {
                throw new InvalidUpcasterException(type, upcaster.From, upcaster.To, string.Create(CultureInfo.InvariantCulture, $"the type's current version is {current}, so nothing reads version {upcaster.To}"));
            }

            var chain = byType.TryGetValue(type, out var c) ? c : byType[type] = [];
            if (!chain.TryAdd(upcaster.From, upcaster))
            {
                throw new InvalidUpcasterException(type, upcaster.From, upcaster.To, "two upcasters are declared for that step");
            }
        }

        foreach (var (type, chain) in byType)
        {
            var current = types.GetVersion(type);
            for (var version = chain.Keys.Min(); version < current; version++)
            {
                if (!chain.ContainsKey(version))
                {
                    throw new InvalidUpcasterException(type, version, version + 1, string.Create(CultureInfo.InvariantCulture,
                        $"the chain from version {chain.Keys.Min()} to {current} has no link from {version} to {version + 1}; add one (json => json when the shape did not change)"));
                }
            }
        }

        return new UpcasterChains(byType);
    }

    /// <summary>The oldest version a type's chain starts from, or null when it has no upcasters.</summary>
    public int? ChainStart(string eventType) =>
        _byType.TryGetValue(eventType, out var chain) ? chain.Keys.Min() : null;

    /// <summary>Whether an upcaster takes a type from <paramref name="version"/> to the next.</summary>
    public bool HasStep(string eventType, int version) =>
        _byType.TryGetValue(eventType, out var chain) && chain.ContainsKey(version);

    /// <summary>
    /// The data as nodes, a property named twice holding its last value, as the serializer reads it at the current
    /// version (<see cref="JsonNode.Parse(ReadOnlySpan{byte}, JsonNodeOptions?, JsonDocumentOptions)"/> refuses the name
    /// the first time an upcaster looks, which blamed the upcaster).
    /// </summary>
    private static JsonNode? LastValueWins(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var json = new JsonObject();
                foreach (var property in element.EnumerateObject())
                {
                    json[property.Name] = LastValueWins(property.Value);
                }

                return json;
            case JsonValueKind.Array:
                var array = new JsonArray();
                foreach (var item in element.EnumerateArray())
                {
                    array.Add(LastValueWins(item));
                }

                return array;
            case JsonValueKind.Null:
                return null;
            default:
                return JsonValue.Create(element);
        }
    }

    /// <summary>Every type with upcasters.</summary>
    public IEnumerable<string> EventTypes => _byType.Keys;

    /// <summary>
    /// Brings a version's data up to <paramref name="current"/>: each step with an upcaster applies it, a step without
    /// one passes the JSON on as it is.
    /// </summary>
    internal JsonObject Apply(string eventType, int version, int current, ReadOnlySpan<byte> data, JsonSerializerOptions options, string what)
    {
        JsonObject json;
        try
        {
            json = LastValueWins(JsonSerializer.Deserialize<JsonElement>(data)) as JsonObject
                ?? throw new UpcastingException(what, eventType, version, version + 1, "the data is not a JSON object", null);
        }
        catch (JsonException ex)
        {
            throw new UpcastingException(what, eventType, version, version + 1, "the data is not valid JSON: " + ex.Message, ex);
        }

        if (!_byType.TryGetValue(eventType, out var chain))
        {
            return json;
        }

        for (var step = version; step < current; step++)
        {
            if (!chain.TryGetValue(step, out var upcaster))
            {
                continue;
            }

            try
            {
                json = upcaster.Apply(json, options)
                    ?? throw new UpcastingException(what, eventType, step, step + 1, "the upcaster returned null", null);
            }
            catch (Exception ex) when (ex is not UpcastingException)
            {
                throw new UpcastingException(what, eventType, step, step + 1, ex.Message, ex);
            }
        }

        return json;
    }
}

/// <summary>An upcaster breaks a rule of the chain; refused when the host starts.</summary>
public sealed class InvalidUpcasterException(string eventType, int from, int to, string reason)
    : CairnException(string.Create(CultureInfo.InvariantCulture, $"The upcaster of '{eventType}' from version {from} to {to} is refused: {reason}."))
{
    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version the upcaster reads.</summary>
    public int From { get; } = from;

    /// <summary>The version it writes.</summary>
    public int To { get; } = to;
}

/// <summary>An upcaster failed on a stored event or a message; nothing is skipped, the read stops here.</summary>
public sealed class UpcastingException(string what, string eventType, int from, int to, string reason, Exception? inner)
    : CairnException(string.Create(CultureInfo.InvariantCulture, $"Upcasting {what} ('{eventType}') from version {from} to {to} failed: {reason}"), inner)
{
    /// <summary>The event or message that failed, as its id, type and place.</summary>
    public string Subject { get; } = what;

    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version the failing step reads.</summary>
    public int From { get; } = from;

    /// <summary>The version it writes.</summary>
    public int To { get; } = to;
}

/// <summary>
/// An event or message names a version of its type that this process cannot read: newer than the class's, unknown to
/// the registry, or its <c>dataschema</c> names another type, or is of Cairn's form but names no version (such as
/// <c>urn:cairn:schema:order.placed:0</c>).
/// </summary>
public sealed class UnknownSchemaVersionException : CairnException
{
    /// <summary>An event or message naming a version this process cannot read.</summary>
    public UnknownSchemaVersionException(string what, string eventType, int version, int current, string reason)
        : base(string.Create(CultureInfo.InvariantCulture, $"{what} is '{eventType}' version {version}, which this process cannot read ({ClassOf(current)}): {reason}."))
    {
        Subject = what;
        EventType = eventType;
        Version = version;
        CurrentVersion = current;
    }

    /// <summary>An event or message whose <c>dataschema</c> is of Cairn's form but malformed: it names no version.</summary>
    public UnknownSchemaVersionException(string what, string eventType, string dataSchema, int current, string reason)
        : base(string.Create(CultureInfo.InvariantCulture, $"{what} is '{eventType}' with the dataschema '{dataSchema}', which is of Cairn's form but names no version this process can read ({ClassOf(current)}): {reason}."))
    {
        Subject = what;
        EventType = eventType;
        DataSchema = dataSchema;
        CurrentVersion = current;
    }

    /// <summary>The event or message, as its id, type and place.</summary>
    public string Subject { get; }

    /// <summary>What the message says of the class: 0 is a type with no class in this process (a gateway's).</summary>
    private static string ClassOf(int current) =>
        current > 0 ? string.Create(CultureInfo.InvariantCulture, $"its class is version {current}") : "it has no class here";

    /// <summary>The event type.</summary>
    public string EventType { get; }

    /// <summary>The version named; 0 when the <c>dataschema</c> names none (<see cref="DataSchema"/> is set).</summary>
    public int Version { get; }

    /// <summary>The <c>dataschema</c> of Cairn's form that names no version; null when a version was named.</summary>
    public string? DataSchema { get; }

    /// <summary>The version of the class registered for the type.</summary>
    public int CurrentVersion { get; }
}
