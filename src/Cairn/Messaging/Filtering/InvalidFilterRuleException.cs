using Cairn.EventStore;

namespace Cairn.Messaging.Filtering;

/// <summary>A filter rule broke a rule of the EventBridge pattern language; it was not created.</summary>
public sealed class InvalidFilterRuleException : CairnException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="path">The JSON path of the fault in the rule, such as <c>$.detail.price[0].numeric</c>.</param>
    /// <param name="reason">The rule of the pattern language that was broken.</param>
    /// <param name="innerException">The cause, if any.</param>
    public InvalidFilterRuleException(string path, string reason, Exception? innerException = null)
        : base($"Invalid filter rule at {path}: {reason}.", innerException)
    {
        Path = path;
        Reason = reason;
    }

    /// <summary>The JSON path of the fault in the rule, such as <c>$.detail.price[0].numeric</c>.</summary>
    public string Path { get; }

    /// <summary>The rule of the pattern language that was broken.</summary>
    public string Reason { get; }
}
