using System.Collections.Concurrent;

namespace Cairn.Messaging;

/// <summary>
/// Wakes long-polling receivers of a queue when a commit puts a message in it, so a waiting receive costs no polling.
/// A receiver takes the signal's task before it looks at the queue, so a commit between its look and its wait still
/// wakes it.
/// </summary>
internal sealed class QueueSignal
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _next = new(StringComparer.Ordinal);
    private volatile bool _closed;

    /// <summary>A task that completes at the next pulse of the queue, or at once once the signal is closed.</summary>
    public Task NextAsync(string queue)
    {
        var next = _next.GetOrAdd(queue, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        if (_closed)
        {
            // Closed while this was being added: nothing would pulse it.
            Pulse(queue);
        }

        return next;
    }

    /// <summary>Wakes every receiver, now and from now on: the broker's store was disposed, and their next look fails.</summary>
    public void Close()
    {
        _closed = true;
        PulseAll();
    }

    /// <summary>Wakes every receiver waiting on the queue.</summary>
    public void Pulse(string queue)
    {
        if (_next.TryRemove(queue, out var released))
        {
            released.TrySetResult();
        }
    }

    /// <summary>Wakes every receiver of every queue: after a commit by another process, say.</summary>
    public void PulseAll()
    {
        foreach (var queue in _next.Keys)
        {
            Pulse(queue);
        }
    }
}
