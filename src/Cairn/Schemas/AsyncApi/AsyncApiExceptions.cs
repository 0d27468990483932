using System.Globalization;
using Cairn.EventStore;

namespace Cairn.Schemas;

/// <summary>
/// Two different schema documents were given for one version of an event type: the generator cannot tell which one
/// describes the messages, so it writes nothing. (The same document given twice is one schema.)
/// </summary>
public sealed class AsyncApiDuplicateSchemaException(string eventType, int version)
    : CairnException(string.Create(CultureInfo.InvariantCulture, $"Two different schemas were given for '{eventType}' version {version}; a registered version has one document."))
{
    /// <summary>The event type.</summary>
    public string EventType { get; } = eventType;

    /// <summary>The version given twice.</summary>
    public int Version { get; } = version;
}

/// <summary>The input of the AsyncAPI generator breaks a rule: the field and the rule are named.</summary>
public sealed class AsyncApiInputException(string field, string reason)
    : CairnException($"AsyncAPI input, {field}: {reason}.")
{
    /// <summary>Where the fault is, such as <c>Schemas[3]</c> or <c>Consumers[0].MessageTypes[1]</c>.</summary>
    public string Field { get; } = field;

    /// <summary>The rule that was broken.</summary>
    public string Reason { get; } = reason;
}
