namespace Cairn;

/// <summary>
/// The task of a call refused before it began: every backend reports bad input and a cancelled token through the task
/// it returns, never by throwing from the call, so a caller that starts several calls and awaits them later (with
/// <c>Task.WhenAll</c>, say) meets the same thing on each backend.
/// </summary>
internal static class Refusal
{
    /// <summary>A cancelled task for the caller's own cancellation; a faulted one for anything else.</summary>
    public static Task<T> Of<T>(Exception error) =>
        error is OperationCanceledException { CancellationToken.IsCancellationRequested: true } cancelled
            ? Task.FromCanceled<T>(cancelled.CancellationToken)
            : Task.FromException<T>(error);

    /// <inheritdoc cref="Of{T}(Exception)"/>
    public static Task Of(Exception error) => Of<bool>(error);

    /// <inheritdoc cref="Of{T}(Exception)"/>
    public static ValueTask<T> ValueOf<T>(Exception error) => new(Of<T>(error));

    /// <inheritdoc cref="Of{T}(Exception)"/>
    public static ValueTask ValueOf(Exception error) => new(Of(error));

    /// <summary>
    /// A read refused before it began: the refusal comes as it is enumerated, where a stream read's comes, never from the
    /// call that made the read.
    /// </summary>
    public static async IAsyncEnumerable<T> Enumeration<T>(Exception error)
    {
        await Task.CompletedTask.ConfigureAwait(false);
        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        yield break;
    }
}
