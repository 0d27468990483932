namespace Cairn.EventStore;

/// <summary>
/// Wakes waiters when the head of the log moves. Backends call <see cref="Advance"/> after each commit; live
/// subscriptions await <see cref="WaitAsync"/> instead of polling.
/// </summary>
internal sealed class AppendSignal(TimeSpan fallbackPoll)
{
    /// <summary>The longest wait a timer takes (about 49.7 days); a poll interval past it means no polling.</summary>
    private static readonly TimeSpan LongestTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly TimeSpan _poll = fallbackPoll > LongestTimer ? Timeout.InfiniteTimeSpan : fallbackPoll;
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _head;
    private string? _closedBy;

    /// <summary>The last head position announced.</summary>
    public long Head => Volatile.Read(ref _head);

    /// <summary>Announces a new head and wakes every waiter.</summary>
    public void Advance(long head) => Release(head);

    /// <summary>
    /// Wakes every waiter without announcing a head: something may have been committed elsewhere (another process's
    /// append was notified), and each waiter reads again to see.
    /// </summary>
    public void Pulse() => Release(null);

    /// <summary>
    /// Ends every wait, those in progress and those to come, with <see cref="ObjectDisposedException"/> naming
    /// <paramref name="owner"/>: its store was disposed, and nothing will be appended through it again.
    /// </summary>
    public void Close(string owner)
    {
        TaskCompletionSource released;
        lock (this)
        {
            if (_closedBy is not null)
            {
                return;
            }

            _closedBy = owner;
            released = _next;
        }

        released.TrySetException(new ObjectDisposedException(owner));
    }

    /// <summary>Wakes every waiter, having moved the head to <paramref name="head"/> when given; a head not past the last announced wakes none.</summary>
    private void Release(long? head)
    {
        TaskCompletionSource released;
        lock (this)
        {
            if (head is { } next)
            {
                if (next <= _head)
                {
                    return;
                }

                _head = next;
            }

            released = _next;
            _next = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        released.TrySetResult();
    }

    /// <summary>Completes when the head passes <paramref name="position"/>, or after the fallback poll interval.</summary>
    public async Task WaitAsync(long position, CancellationToken cancellationToken)
    {
        Task next;
        lock (this)
        {
            if (_head > position)
            {
                return;
            }

            if (_closedBy is { } owner)
            {
                throw new ObjectDisposedException(owner);
            }

            next = _next.Task;
        }

        try
        {
            await next.WaitAsync(_poll, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The fallback poll: the caller re-reads, which catches commits made by other processes.
        }
    }
}
