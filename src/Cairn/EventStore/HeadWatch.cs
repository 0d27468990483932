using Microsoft.Extensions.Logging;

namespace Cairn.EventStore;

/// <summary>
/// Follows a store's head for a worker that reads nothing meanwhile (a subscription or a projection that failed), so
/// that its lag keeps counting what is appended: the signal to alert on.
/// </summary>
internal static class HeadWatch
{
    /// <summary>Reports each head to <paramref name="observe"/> until <paramref name="until"/> fires; a failed read is tried again after a second.</summary>
    public static async Task FollowAsync(IEventStore store, Action<long> observe, TimeProvider clock, ILogger logger, string worker, CancellationToken until)
    {
        while (!until.IsCancellationRequested)
        {
            try
            {
                var head = await store.GetHeadPositionAsync(until).ConfigureAwait(false);
                observe(head.Value);
                await store.WaitForAppendAsync(head, until).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (until.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                logger.LogDebug(ex, "{Worker} could not read the head while it reads nothing; it tries again in a second.", worker);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), clock, until).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>Raises <paramref name="target"/> to <paramref name="value"/>, never lowering it, whoever else raises it at once.</summary>
    public static void Raise(ref long target, long value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
