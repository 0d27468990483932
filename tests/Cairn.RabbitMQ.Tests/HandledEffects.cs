using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging.Consumers;

namespace Cairn.RabbitMQ.Tests;

/// <summary>
/// The effect the hosted tests' consumers have: an event per handled message, in a stream of the message's own, which
/// commits with the inbox record and the acknowledgement; and how many times each message's effect was written.
/// </summary>
internal static class HandledEffects
{
    private const string Type = "message.handled";

    /// <summary>A consumer's handler that writes the effect.</summary>
    public static ValueTask HandleAsync(MessageHandlerContext context, CancellationToken cancellationToken)
    {
        context.Append(new StreamName($"effect-{context.Message.Id:N}"), ExpectedVersion.Any, new EventData(MessageId.New(), Type, context.Message.Data.ToArray()));
        return ValueTask.CompletedTask;
    }

    /// <summary>Each effect stream in the log, with how many effects it holds (1 when its message was handled once).</summary>
    public static async Task<Dictionary<string, int>> CountAsync(IEventStore store)
    {
        var effects = new Dictionary<string, int>();
        await foreach (var recorded in store.ReadAllAsync())
        {
            if (recorded.Type == Type)
            {
                effects[recorded.Stream.Value] = effects.GetValueOrDefault(recorded.Stream.Value) + 1;
            }
        }

        return effects;
    }
}
