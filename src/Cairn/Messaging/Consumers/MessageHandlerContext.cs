using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Serialization;

namespace Cairn.Messaging.Consumers;

/// <summary>
/// What a handler is given: the delivery, the services of its scope, and a transaction for its effects. Appends, sends
/// and publishes made here are not written at once: they commit together with the acknowledgement and the inbox
/// record when the handler returns, so a handler that throws leaves nothing behind, and a repeat has no second effect.
/// Whatever is sent carries the handled message's correlation id, and its id as causation; what is gathered inside a
/// <see cref="MessageContext"/> the handler opens itself carries that context's.
/// </summary>
public sealed class MessageHandlerContext
{
    private readonly EventSerializer? _serializer;
    private readonly MessageContext? _handling;
    private List<Action>? _onCommitted;

    internal MessageHandlerContext(Delivery delivery, string consumer, IServiceProvider services, EventSerializer? serializer)
    {
        Delivery = delivery;
        Consumer = consumer;
        Services = services;
        _serializer = serializer;
        _handling = MessageContext.Current;
    }

    /// <summary>The delivery being handled.</summary>
    public Delivery Delivery { get; }

    /// <summary>The message being handled.</summary>
    public Message Message => Delivery.Message;

    /// <summary>The consumer's name (its inbox key).</summary>
    public string Consumer { get; }

    /// <summary>The services of the handling's scope.</summary>
    public IServiceProvider Services { get; }

    /// <summary>The effects gathered so far; committed with the acknowledgement.</summary>
    public MessageTransaction Transaction { get; } = new();

    /// <summary>Appends events when the handling commits.</summary>
    public MessageHandlerContext Append(AppendRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (OwnContext() is { } own)
        {
            request = new AppendRequest(
                [.. request.Streams.Select(s => s with { Events = [.. s.Events.Select(e => e with { CorrelationId = e.CorrelationId ?? own.CorrelationId, CausationId = e.CausationId ?? own.CausationId })] })],
                request.Condition);
        }

        Transaction.Append(request);
        return this;
    }

    /// <summary>
    /// A <see cref="MessageContext"/> the handler opened itself, or null. Effects are written when the handling commits,
    /// in the handling's own context, so one opened around an append or send is taken now: what it gathers carries that
    /// context's correlation (and causation, when it names one).
    /// </summary>
    private MessageContext? OwnContext() => MessageContext.Current is { } current && !ReferenceEquals(current, _handling) ? current : null;

    /// <summary>Appends events to one stream when the handling commits.</summary>
    public MessageHandlerContext Append(StreamName stream, ExpectedVersion expectedVersion, params IReadOnlyList<EventData> events) =>
        Append(new AppendRequest(stream, expectedVersion, events));

    /// <summary>Appends objects, serialized under their registered type names, to one stream when the handling commits.</summary>
    public MessageHandlerContext AppendEvents(StreamName stream, ExpectedVersion expectedVersion, params IReadOnlyList<object> events)
    {
        ArgumentNullException.ThrowIfNull(events);
        return Append(new AppendRequest(stream, expectedVersion, [.. events.Select(e => Serializer.ToEventData(e))]));
    }

    /// <summary>Sends a message when the handling commits.</summary>
    public MessageHandlerContext Send(QueueName queue, OutgoingMessage message)
    {
        Transaction.Send(queue, InOwnContext(message));
        return this;
    }

    private OutgoingMessage InOwnContext(OutgoingMessage message) =>
        message is not null && OwnContext() is { } own
            ? message with { CorrelationId = message.CorrelationId ?? own.CorrelationId, CausationId = message.CausationId ?? own.CausationId }
            : message!;

    /// <summary>Sends an object, serialized under its registered type name, when the handling commits.</summary>
    public MessageHandlerContext Send(QueueName queue, object message) => Send(queue, Serializer.ToOutgoingMessage(message));

    /// <summary>Publishes a message when the handling commits.</summary>
    public MessageHandlerContext Publish(TopicName topic, OutgoingMessage message)
    {
        Transaction.Publish(topic, InOwnContext(message));
        return this;
    }

    /// <summary>Publishes an object, serialized under its registered type name, when the handling commits.</summary>
    public MessageHandlerContext Publish(TopicName topic, object message) => Publish(topic, Serializer.ToOutgoingMessage(message));

    /// <summary>
    /// Runs <paramref name="action"/> once the handling's effects have committed; not when the commit fails, nor when the
    /// inbox shows the message was already handled. For bookkeeping that must count only what was written; an action
    /// that throws is logged and does not make the handling a failure, since its effects are already committed.
    /// </summary>
    public MessageHandlerContext OnCommitted(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        (_onCommitted ??= []).Add(action);
        return this;
    }

    /// <summary>Runs the actions registered with <see cref="OnCommitted"/>.</summary>
    internal void Committed()
    {
        foreach (var action in _onCommitted ?? [])
        {
            action();
        }
    }

    /// <summary>Deserializes the message into the type registered for its type name.</summary>
    public T Read<T>() => Serializer.Deserialize<T>(Message);

    private EventSerializer Serializer => _serializer ?? throw new InvalidOperationException("No EventSerializer is registered: add Cairn with AddCairn to use typed messages.");
}
