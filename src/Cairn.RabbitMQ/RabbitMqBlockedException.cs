using Cairn.EventStore;

namespace Cairn.RabbitMQ;

/// <summary>
/// RabbitMQ has blocked this process's publishing connection during one of its resource alarms (memory or disk), and
/// an operation that must publish at once was refused rather than left waiting. Sends are not refused: they wait in the
/// outbox until the alarm clears.
/// </summary>
public sealed class RabbitMqBlockedException(string reason)
    : CairnException($"RabbitMQ has blocked publishing ({reason}, one of its resource alarms); try again once the alarm clears.")
{
    /// <summary>The reason RabbitMQ gave, such as <c>low on memory</c>.</summary>
    public string Reason { get; } = reason;
}
