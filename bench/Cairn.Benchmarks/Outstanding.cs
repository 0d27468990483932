namespace Cairn.Benchmarks;

/// <summary>
/// Waits for sends (M2) and appends (P2) that nobody awaits one by one, without holding on to their tasks: kept until
/// the end, tens of thousands of completed tasks (and what their state machines hold) would be promoted through the
/// GC's generations and lengthen the pauses the latencies measure.
/// </summary>
internal sealed class Outstanding
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _pending = 1;
    private Exception? _failure;

    public void Add(Task send)
    {
        Interlocked.Increment(ref _pending);
        send.ContinueWith(static (task, state) => ((Outstanding)state!).Finished(task), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Completes when every send added so far has; call once, after the last <see cref="Add"/>.</summary>
    public Task AllDoneAsync()
    {
        Finished(null);
        return _done.Task;
    }

    private void Finished(Task? send)
    {
        if (send is { IsFaulted: true })
        {
            Interlocked.CompareExchange(ref _failure, send.Exception, null);
        }

        if (Interlocked.Decrement(ref _pending) == 0)
        {
            if (_failure is { } failure)
            {
                _done.SetException(failure);
            }
            else
            {
                _done.SetResult();
            }
        }
    }
}
