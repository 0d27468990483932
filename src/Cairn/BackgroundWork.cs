namespace Cairn;

/// <summary>Starts the long-running loops of Cairn's workers (consumers, runners, routes, subscriptions, writers).</summary>
internal static class BackgroundWork
{
    /// <summary>
    /// Runs <paramref name="loop"/> on the thread pool without the caller's execution context: a loop started inside a
    /// span (a host's start-up, a request) or a message context would otherwise carry them into all its work for its
    /// whole life, making every span it starts for a message without a trace parent a child of that one.
    /// </summary>
    public static Task Start(Func<Task> loop)
    {
        using (ExecutionContext.SuppressFlow())
        {
            return Task.Run(loop, CancellationToken.None);
        }
    }
}
