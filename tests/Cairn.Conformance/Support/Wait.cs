using System.Diagnostics;

namespace Cairn.Conformance.Support;

/// <summary>
/// Bounded waits. The bounds only guard against a hang turning into a stuck run; no test relies on them for its
/// outcome.
/// </summary>
public static class Wait
{
    /// <summary>The failure guard on every wait.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Waits for a task, failing the test if it does not finish within <see cref="Timeout"/>.</summary>
    public static Task Bounded(this Task task) => task.WaitAsync(Timeout);

    /// <summary>Waits for a task, failing the test if it does not finish within <see cref="Timeout"/>.</summary>
    public static Task<T> Bounded<T>(this Task<T> task) => task.WaitAsync(Timeout);

    /// <summary>Waits until a condition holds (checked every few milliseconds), failing after <see cref="Timeout"/>.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what)
    {
        var started = Stopwatch.GetTimestamp();
        while (!condition())
        {
            if (Stopwatch.GetElapsedTime(started) > Timeout)
            {
                throw new TimeoutException($"Gave up waiting until {what}.");
            }

            await Task.Delay(2);
        }
    }

    /// <summary>Waits until an asynchronous condition holds, failing after <see cref="Timeout"/>.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var started = Stopwatch.GetTimestamp();
        while (!await condition())
        {
            if (Stopwatch.GetElapsedTime(started) > Timeout)
            {
                throw new TimeoutException($"Gave up waiting until {what}.");
            }

            await Task.Delay(2);
        }
    }
}
