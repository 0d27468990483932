using Cairn.Envelopes;

namespace Cairn.Messaging;

/// <summary>
/// How every backend carries out a redrive: in steps of at most <see cref="MaxStep"/> dead letters (fewer when a rate
/// is asked, about ten steps a second), each step one write of the backend, paced so the total never runs ahead of the
/// rate.
/// </summary>
internal static class RedriveSteps
{
    /// <summary>The most dead letters one step moves.</summary>
    public const int MaxStep = 500;

    /// <summary>
    /// Runs the steps: <paramref name="step"/> moves, after the sequence it is given, the next dead letters (the
    /// chosen ids when given), at most the step size, and returns how many moved and the last sequence looked at.
    /// </summary>
    public static async Task<int> RunAsync(
        RedriveRequest request,
        TimeProvider time,
        Func<long, IReadOnlyList<MessageId>?, int, Task<(int Moved, long LastSequence)>> step,
        CancellationToken cancellationToken)
    {
        request.Validate();
        var size = request.MessagesPerSecond is { } rate ? (int)Math.Clamp(Math.Ceiling(rate / 10), 1, MaxStep) : MaxStep;
        var started = time.GetTimestamp();
        var moved = 0;
        var after = 0L;
        var ids = request.MessageIds?.Distinct().ToArray();
        var offset = 0;
        while (true)
        {
            MessageId[]? chosen = null;
            if (ids is not null)
            {
                if (offset >= ids.Length)
                {
                    break;
                }

                chosen = ids[offset..Math.Min(ids.Length, offset + size)];
                offset += chosen.Length;
            }

            var (count, last) = await step(after, chosen, size).ConfigureAwait(false);
            moved += count;
            after = last;
            if (ids is null && count < size)
            {
                break;
            }

            if (request.MessagesPerSecond is { } perSecond && count > 0)
            {
                // Pace the next step so the total never runs ahead of the rate.
                var due = TimeSpan.FromSeconds(moved / perSecond) - time.GetElapsedTime(started);
                if (due > TimeSpan.Zero)
                {
                    await Task.Delay(due, time, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        return moved;
    }
}
