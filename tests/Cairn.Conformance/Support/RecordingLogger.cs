using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Cairn.Conformance.Support;

/// <summary>Keeps everything a component logs, to check what it reported and which path it took.</summary>
public sealed class RecordingLogger<TCategory> : ILogger<TCategory>
{
    /// <summary>Every entry, in the order logged.</summary>
    public ConcurrentQueue<(LogLevel Level, Exception? Exception, string Message)> Entries { get; } = new();

    /// <inheritdoc />
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    /// <inheritdoc />
    public bool IsEnabled(LogLevel logLevel) => true;

    /// <inheritdoc />
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, exception, formatter(state, exception)));
}
