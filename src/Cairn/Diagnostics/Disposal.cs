namespace Cairn.Diagnostics;

/// <summary>Disposing what a decorator wraps, whichever way it is disposed.</summary>
internal static class Disposal
{
    /// <summary>Disposes <paramref name="wrapped"/> asynchronously when it can be, else synchronously; nothing when it is neither.</summary>
    public static async ValueTask DisposeAsync(object? wrapped)
    {
        switch (wrapped)
        {
            case IAsyncDisposable asyncDisposable:
                await asyncDisposable.DisposeAsync().ConfigureAwait(false);
                break;
            case IDisposable disposable:
                disposable.Dispose();
                break;
        }
    }

    /// <summary>
    /// Disposes <paramref name="wrapped"/> synchronously when it can be, else waits for its asynchronous disposal (a
    /// store or transport that closes only asynchronously, in a container disposed synchronously); nothing when it is neither.
    /// </summary>
    public static void Dispose(object? wrapped)
    {
        switch (wrapped)
        {
            case IDisposable disposable:
                disposable.Dispose();
                break;
            case IAsyncDisposable asyncDisposable:
                asyncDisposable.DisposeAsync().AsTask().GetAwaiter().GetResult();
                break;
        }
    }
}
