namespace Cairn.Conformance.Support;

/// <summary>Asserts that a call refuses through the task it returns, which <c>Assert.ThrowsAsync(() => call())</c> cannot tell.</summary>
public static class ThroughTask
{
    /// <summary>Makes the call, fails if the call itself throws, then expects its task to fail with <paramref name="expected"/> (or a subtype).</summary>
    public static async Task RefusedAsync(Func<Task> call, Type expected)
    {
        ArgumentNullException.ThrowIfNull(call);
        Task task;
        try
        {
            task = call();
        }
        catch (Exception e)
        {
            Assert.Fail($"The call threw {e.GetType().Name} ({e.Message}) instead of returning a faulted task.");
            return;
        }

        var ex = await Assert.ThrowsAnyAsync<Exception>(() => task);
        Assert.IsAssignableFrom(expected, ex);
    }

    /// <summary>As <see cref="RefusedAsync(Func{Task}, Type)"/>, returning the refusal for a look at its details.</summary>
    public static async Task<T> RefusedAsync<T>(Func<Task> call)
        where T : Exception
    {
        ArgumentNullException.ThrowIfNull(call);
        Task task;
        try
        {
            task = call();
        }
        catch (Exception e)
        {
            Assert.Fail($"The call threw {e.GetType().Name} ({e.Message}) instead of returning a faulted task.");
            throw;
        }

        return await Assert.ThrowsAnyAsync<T>(() => task);
    }
}
