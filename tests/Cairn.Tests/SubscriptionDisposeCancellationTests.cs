using Cairn.Conformance.Support;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.Logging;

namespace Cairn.Tests;

/// <summary>
/// Disposing a catch-up subscription whose handler honours its cancellation: the disposal is a stop, not a failure.
/// </summary>
public sealed class SubscriptionDisposeCancellationTests
{
    /// <summary>Signals the first entry saying the run has stopped (cleanly or for good), and keeps every entry.</summary>
    private sealed class StopSignallingLogger : ILogger<CatchUpSubscription>
    {
        public TaskCompletionSource<(LogLevel Level, string Message)> Stopped { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public System.Collections.Concurrent.ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            Entries.Enqueue((logLevel, message));
            if (logLevel >= LogLevel.Error || message.Contains("stopped at position", StringComparison.Ordinal))
            {
                Stopped.TrySetResult((logLevel, message));
            }
        }
    }

    // CatchUpSubscription.DisposeAsync cancels the handler's token (_abort) and awaits that cancellation before it
    // cancels the run's stop token (_stop, in StopRunAsync). A handler that honours its token throws
    // OperationCanceledException while no stop is asked yet, so RunAsync's
    // `catch (OperationCanceledException) when (stop.IsCancellationRequested)` does not take it: the disposal is counted
    // as a failure (failure metric, Faulted status, error log; under MaxRetries 0 "failed ... and has stopped for
    // good"), and the status left after the disposal shows a failure and the cancellation as its last error. Before the
    // change the disposal cancelled the stop token, which was also the handler's, and the run ended cleanly.
    //
    // Made deterministic by holding the abort token's cancellation (a callback registered on the handler's token)
    // until the run has logged how it ended: what the run decides then is what it decides whenever the stop's
    // cancellation comes after the handler's exception reaches RunAsync, a race the disposal otherwise usually wins.
    [Fact]
    public async Task disposing_a_subscription_whose_handler_honours_its_token_records_no_failure()
    {
        var store = new InMemoryEventStore();
        await store.AppendToStreamAsync(new StreamName("order-1"), ExpectedVersion.NoStream, TestEvents.Many(1));
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var logger = new StopSignallingLogger();

        async ValueTask Handle(RecordedEvent e, CancellationToken cancellationToken)
        {
            // A handler waiting on I/O that listens to its token: it throws as the token fires.
            var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            // Not disposed in the handler: disposing a registration waits for its callback, which waits for the run.
            cancellationToken.Register(() =>
            {
                cancelled.TrySetCanceled(cancellationToken);

                // Hold the cancellation until the run has ended one way or the other (bounded, never a hang).
                logger.Stopped.Task.Wait(TimeSpan.FromSeconds(30));
            });
            entered.TrySetResult();
            await cancelled.Task.ConfigureAwait(false);
        }

        var options = new SubscriptionOptions { Name = "honours-token", MaxRetries = 0 };
        var subscription = new CatchUpSubscription(store, new InMemoryCheckpointStore(), options, Handle, logger);
        await subscription.StartAsync(default);
        await entered.Task.Bounded();

        await subscription.DisposeAsync();
        await subscription.Completion.Bounded();

        var status = subscription.Status;
        var errors = string.Join("\n", logger.Entries.Where(e => e.Level >= LogLevel.Error).Select(e => $"{e.Level}: {e.Message}"));
        Assert.True(status.LastError is null, $"the disposal was recorded as a failure: {status.LastError}\n{errors}");
        Assert.Equal(0, status.Failures);
        Assert.Equal(SubscriptionState.Stopped, status.State);
    }
}
