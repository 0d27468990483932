using System.Diagnostics;

namespace Cairn.Envelopes;

/// <summary>
/// The ambient cause of the work in progress: whatever is appended or sent while a context is current carries its
/// correlation id, and the id of the message being handled as its causation id. Handlers get one set for them;
/// application code can open one with <see cref="Begin(string?, string?)"/> (for an HTTP request, say).
/// </summary>
public sealed class MessageContext
{
    private static readonly AsyncLocal<MessageContext?> CurrentContext = new();

    private MessageContext(string correlationId, string? causationId, string? traceParent, MessageContext? parent)
    {
        CorrelationId = correlationId;
        CausationId = causationId;
        TraceParent = traceParent;
        Parent = parent;
    }

    /// <summary>The correlation id shared by everything one original request caused.</summary>
    public string CorrelationId { get; }

    /// <summary>The id of the message whose handling is in progress, if any.</summary>
    public string? CausationId { get; }

    /// <summary>
    /// The trace of the message being handled when no span of Cairn's continues it (nothing listens to Cairn's
    /// sources): what is sent meanwhile still carries it, so a trace is not cut at the first hop.
    /// </summary>
    internal string? TraceParent { get; }

    internal MessageContext? Parent { get; }

    /// <summary>Whether its scope was disposed: a context disposed out of order is passed over when an inner one ends.</summary>
    private volatile bool _ended;

    /// <summary>The context of the current async flow, or null.</summary>
    public static MessageContext? Current => CurrentContext.Value;

    /// <summary>
    /// Makes a context current until the returned scope is disposed. Without a correlation id, the current one is
    /// kept, or a new one is made.
    /// </summary>
    /// <exception cref="ArgumentException">An id is empty, longer than 256 characters, or holds control characters or
    /// unpaired surrogates: every event and message appended or sent under the context would carry it, and no backend
    /// stores it.</exception>
    public static IDisposable Begin(string? correlationId = null, string? causationId = null)
    {
        Check(correlationId, nameof(correlationId));
        Check(causationId, nameof(causationId));
        return Begin(correlationId, causationId, null);

        static void Check(string? id, string name)
        {
            if (id is not null && !IsStorable(id))
            {
                throw new ArgumentException($"A message context's {name} is 1 to {MaxIdLength} characters with no {StoredText.Refused}.", name);
            }
        }
    }

    /// <summary>The longest correlation or causation id, and trace parent, an event or message carries.</summary>
    private const int MaxIdLength = 256;

    private static bool IsStorable(string value) => value.Length is > 0 and <= MaxIdLength && !StoredText.Refuses(value);

    /// <summary>
    /// As <see cref="Begin(string?, string?)"/>, carrying the handled message's trace when no span continues it. The
    /// values come from a message being handled, which may have come from outside Cairn (another RabbitMQ publisher): one
    /// no backend could store is left out, as if the message had none, rather than failing every append and send of
    /// its handler.
    /// </summary>
    internal static IDisposable Begin(string? correlationId, string? causationId, string? traceParent)
    {
        correlationId = correlationId is not null && IsStorable(correlationId) ? correlationId : null;
        causationId = causationId is not null && IsStorable(causationId) ? causationId : null;
        traceParent = traceParent is not null && IsStorable(traceParent) ? traceParent : null;
        var parent = CurrentContext.Value;
        var context = new MessageContext(
            correlationId ?? parent?.CorrelationId ?? MessageId.New().ToString(),
            causationId,
            traceParent ?? parent?.TraceParent,
            parent);
        CurrentContext.Value = context;
        return new Scope(context);
    }

    /// <summary>
    /// The W3C <c>traceparent</c> of the current activity; without one, that of the message being handled; null when
    /// nothing is traced.
    /// </summary>
    public static string? CurrentTraceParent()
    {
        var activity = Activity.Current;
        // A handled message's own, when no span continues it, only in W3C's form: another publisher's malformed one is
        // not passed on, where every send would be refused for it.
        return activity is { IdFormat: ActivityIdFormat.W3C } ? activity.Id
            : CurrentContext.Value?.TraceParent is { } handled && TraceParentText.IsValid(handled) ? handled : null;
    }

    private sealed class Scope(MessageContext context) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            context._ended = true;
            if (CurrentContext.Value == context)
            {
                // The nearest enclosing context still open: one whose scope was disposed before this one (out of
                // order) must not become current again.
                var parent = context.Parent;
                while (parent is { _ended: true })
                {
                    parent = parent.Parent;
                }

                CurrentContext.Value = parent;
            }
        }
    }

    /// <summary>
    /// Makes no context current until the returned scope is disposed: for work that carries the envelopes of what it
    /// reads (a replay), which the caller's context must not fill in.
    /// </summary>
    internal static IDisposable Detach()
    {
        var saved = CurrentContext.Value;
        CurrentContext.Value = null;
        return new Detached(saved);
    }

    private sealed class Detached(MessageContext? saved) : IDisposable
    {
        public void Dispose() => CurrentContext.Value = saved;
    }
}
