using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.EventStore.InMemory;
using Cairn.Messaging;
using Cairn.Messaging.InMemory;
using Cairn.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Cairn.Tests;

/// <summary>Metrics, spans and logs: every capability is observable, and a failing subscription is never silent.</summary>
[Collection(nameof(DiagnosticsTests))]
public sealed class DiagnosticsTests : IDisposable
{
    private readonly TelemetryRecorder _telemetry = new(name => name.StartsWith("Cairn.", StringComparison.Ordinal));

    private ConcurrentQueue<Activity> Spans => _telemetry.Activities;

    public void Dispose() => _telemetry.Dispose();

    private long Total(string key) => _telemetry.Total(key);

    private static EventData Event() => new("thing.happened", Encoding.UTF8.GetBytes("{}"));

    [Fact]
    public async Task appends_committed_with_messages_are_counted_and_traced_as_any_append()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        await using var provider = services.BuildServiceProvider();
        var broker = provider.GetRequiredService<IMessageBroker>();
        await broker.DeclareQueueAsync("diag-outbox");
        var stream = new StreamName("diag-" + Guid.NewGuid().ToString("N"));
        var before = (ok: Total("cairn.eventstore.appends|outcome=ok"), conflict: Total("cairn.eventstore.conflicts"), events: Total("cairn.eventstore.events_appended"));

        await broker.AppendAndSendAsync(new AppendRequest(stream, ExpectedVersion.NoStream, [Event(), Event(), Event()]), "diag-outbox", new OutgoingMessage("thing.sent", Encoding.UTF8.GetBytes("{}")));
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => broker.AppendAndSendAsync(new AppendRequest(stream, ExpectedVersion.NoStream, [Event()]), "diag-outbox", new OutgoingMessage("thing.sent", Encoding.UTF8.GetBytes("{}"))));

        Assert.True(Total("cairn.eventstore.appends|outcome=ok") - before.ok >= 1);
        Assert.True(Total("cairn.eventstore.conflicts") - before.conflict >= 1);
        Assert.True(Total("cairn.eventstore.events_appended") - before.events >= 3);
        var appended = Assert.Single(Spans, a => a.OperationName == "cairn.append" && a.Status != ActivityStatusCode.Error && (string?)a.GetTagItem("cairn.stream") == stream.Value);
        Assert.Equal(3, appended.GetTagItem("cairn.events"));
        Assert.Contains(Spans, a => a.OperationName == "cairn.append" && a.Status == ActivityStatusCode.Error && (string?)a.GetTagItem("cairn.stream") == stream.Value);

        // The message carries the send's span, a child of the append's, in the same trace.
        var sent = Assert.Single(await broker.ReceiveAsync("diag-outbox", new ReceiveOptions { MaxMessages = 10 }, default)).Message;
        Assert.Contains(appended.TraceId.ToHexString(), sent.TraceParent, StringComparison.Ordinal);
    }

    [Fact]
    public async Task a_duplicate_append_committed_with_a_message_is_counted_as_a_duplicate()
    {
        var services = new ServiceCollection();
        services.AddCairn(o => o.UseInMemory());
        await using var provider = services.BuildServiceProvider();
        var broker = provider.GetRequiredService<IMessageBroker>();
        await broker.DeclareQueueAsync("diag-dup");
        var stream = new StreamName("diag-" + Guid.NewGuid().ToString("N"));
        EventData[] events = [Event(), Event()];
        await broker.AppendAndSendAsync(new AppendRequest(stream, ExpectedVersion.NoStream, events), "diag-dup", new OutgoingMessage("thing.sent", Encoding.UTF8.GetBytes("{}")));
        var before = Total("cairn.eventstore.appends|outcome=duplicate");

        // The same append retried (after a time-out, say): the store answers it as a duplicate.
        var retry = await broker.AppendAndSendAsync(new AppendRequest(stream, ExpectedVersion.NoStream, events), "diag-dup", new OutgoingMessage("thing.sent", Encoding.UTF8.GetBytes("{}")));
        Assert.True(Assert.Single(retry.Appends).WasDuplicate);
        Assert.True(Total("cairn.eventstore.appends|outcome=duplicate") - before >= 1);
        Assert.Contains(Spans, a => a.OperationName == "cairn.append" && (string?)a.GetTagItem("cairn.stream") == stream.Value && a.GetTagItem("cairn.position") is long);
    }

    // A commit the inbox refuses as a repeat writes nothing but its acknowledgements: its appends are not written, and
    // were counted as successful ones (outcome ok), so every redelivery racing its first handling showed as an append.
    [Fact]
    public async Task an_append_in_a_commit_the_inbox_refuses_is_counted_as_a_duplicate()
    {
        var broker = new InstrumentedMessageBroker(new InMemoryMessageBroker(new InMemoryEventStore(), new InMemoryCheckpointStore()));
        var id = MessageId.New();
        await broker.CommitAsync(new MessageTransaction().MarkProcessed("billing", id), default);
        var stream = new StreamName("diag-" + Guid.NewGuid().ToString("N"));
        var before = Total("cairn.eventstore.appends|outcome=duplicate");

        var result = await broker.CommitAsync(
            new MessageTransaction()
                .Append(new AppendRequest(stream, ExpectedVersion.NoStream, [Event()]))
                .MarkProcessed("billing", id),
            default);

        Assert.True(result.AlreadyProcessed);
        Assert.Empty(result.Appends);
        Assert.True(Total("cairn.eventstore.appends|outcome=duplicate") - before >= 1);
    }

    [Fact]
    public async Task appends_record_counts_outcomes_durations_and_a_span_each()
    {
        var store = new InstrumentedEventStore(new InMemoryEventStore());
        var stream = new StreamName("diag-" + Guid.NewGuid().ToString("N"));
        var before = (ok: Total("cairn.eventstore.appends|outcome=ok"), conflict: Total("cairn.eventstore.conflicts"), events: Total("cairn.eventstore.events_appended"));

        var first = new[] { Event(), Event() };
        await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, first);
        await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, first); // a retry: duplicate
        await Assert.ThrowsAsync<WrongExpectedVersionException>(() => store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, [Event()]));

        Assert.True(Total("cairn.eventstore.appends|outcome=ok") - before.ok >= 1);
        Assert.True(Total("cairn.eventstore.appends|outcome=duplicate") >= 1);
        Assert.True(Total("cairn.eventstore.conflicts") - before.conflict >= 1);
        Assert.True(Total("cairn.eventstore.events_appended") - before.events >= 2);
        Assert.True(Total("cairn.eventstore.append.duration|outcome=ok") >= 1);
        Assert.Contains(Spans, a => a.OperationName == "cairn.append" && (string?)a.GetTagItem("cairn.stream") == stream.Value);
        Assert.Contains(Spans, a => a.OperationName == "cairn.append" && a.Status == ActivityStatusCode.Error && (string?)a.GetTagItem("cairn.stream") == stream.Value);
    }

    [Fact]
    public async Task a_subscription_whose_handler_throws_reports_it_by_status_log_and_metric_then_resumes()
    {
        var store = new InMemoryEventStore();
        var stream = new StreamName("fail-" + Guid.NewGuid().ToString("N"));
        await store.AppendToStreamAsync(stream, ExpectedVersion.NoStream, [Event(), Event(), Event()]);
        var logger = new RecordingLogger<CatchUpSubscription>();
        var throwOnce = 1;
        var handled = new ConcurrentQueue<long>();
        var name = "failing-" + Guid.NewGuid().ToString("N");
        await using var subscription = new CatchUpSubscription(
            store,
            new InMemoryCheckpointStore(),
            new SubscriptionOptions { Name = name, RetryDelay = TimeSpan.Zero, MaxRetryDelay = TimeSpan.FromMilliseconds(1) },
            (e, _) =>
            {
                if (e.Version == 1 && Interlocked.Exchange(ref throwOnce, 0) == 1)
                {
                    throw new InvalidOperationException("boom");
                }

                handled.Enqueue(e.Version);
                return ValueTask.CompletedTask;
            },
            logger);

        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(new GlobalPosition(3), default).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, Total("cairn.subscription.failures|subscription=" + name));
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Error && e.Exception is SubscriptionHandlerException { Event.Version: 1 });
        Assert.IsType<SubscriptionHandlerException>(subscription.Status.LastError);
        Assert.NotNull(subscription.Status.LastErrorAt);
        Assert.Equal([0L, 1L, 2L], handled.Distinct());
        Assert.True(Total("cairn.subscription.events|subscription=" + name) >= 3);
        var handles = Spans.Where(a => a.OperationName == "cairn.subscription.handle" && (string?)a.GetTagItem("cairn.subscription") == name).ToList();
        var failed = Assert.Single(handles, a => a.Status == ActivityStatusCode.Error);
        Assert.Equal("boom", failed.StatusDescription);
        Assert.Contains(failed.Events, e => e.Name == "exception" && (string?)e.Tags.FirstOrDefault(t => t.Key == "exception.message").Value == "boom");
        Assert.Equal(3, handles.Count(a => a.Status == ActivityStatusCode.Unset && !a.Events.Any()));
    }

    [Fact]
    public async Task subscription_lag_is_observable_per_subscription()
    {
        var store = new InMemoryEventStore();
        var gate = new TaskCompletionSource();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var name = "lagging-" + Guid.NewGuid().ToString("N");
        await store.AppendToStreamAsync("lag-1", ExpectedVersion.NoStream, [Event(), Event(), Event(), Event()]);
        await using var subscription = new CatchUpSubscription(
            store,
            new InMemoryCheckpointStore(),
            new SubscriptionOptions { Name = name },
            async (e, ct) =>
            {
                entered.TrySetResult();
                await gate.Task.WaitAsync(ct);
            });

        // The reader learns the head before it reads a page, so once the first event is in the handler the
        // subscription knows it is four events behind.
        await subscription.StartAsync(default);
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        _telemetry.Clear();
        _telemetry.RecordObservableInstruments();
        Assert.Equal(4, Total("cairn.subscription.lag|subscription=" + name));
        gate.SetResult();
        await subscription.WaitForPositionAsync(new GlobalPosition(4), default).WaitAsync(TimeSpan.FromSeconds(30));
        _telemetry.Clear();
        _telemetry.RecordObservableInstruments();
        Assert.Equal(0, Total("cairn.subscription.lag|subscription=" + name));
    }

    // A subscription that reads nothing (it waits out a failure's pause, or it gave up) still lags by every event
    // appended meanwhile: its lag stood still at the failure, hiding the very stall it should signal.
    [Theory]
    [InlineData(0, SubscriptionState.Stopped)]
    [InlineData(5, SubscriptionState.Faulted)]
    public async Task a_failed_subscription_still_lags_by_every_event_appended_after(int maxRetries, SubscriptionState state)
    {
        var store = new InMemoryEventStore();
        var name = "failed-" + Guid.NewGuid().ToString("N");
        await store.AppendToStreamAsync("failed-1", ExpectedVersion.NoStream, [Event()]);
        await using var subscription = new CatchUpSubscription(
            store,
            new InMemoryCheckpointStore(),
            new SubscriptionOptions { Name = name, MaxRetries = maxRetries },
            (_, _) => throw new InvalidOperationException("the ledger is gone"),
            timeProvider: new ManualTimeProvider());
        await subscription.StartAsync(default);
        // A subscription not yet running reads as stopped too: the failure counted tells the two apart.
        await Wait.UntilAsync(() => subscription.Status.State == state && subscription.Status.Failures > 0, "the subscription failed");

        await store.AppendToStreamAsync("failed-2", ExpectedVersion.NoStream, [.. Enumerable.Range(0, 10).Select(_ => Event())]);

        await Wait.UntilAsync(
            () =>
            {
                _telemetry.Clear();
                _telemetry.RecordObservableInstruments();
                return Total("cairn.subscription.lag|subscription=" + name) == 11;
            },
            "the lag counts the events appended after the failure");
        Assert.Equal(state, subscription.Status.State);
    }

    [Fact]
    public async Task a_subscription_whose_store_fails_reports_it_and_resumes_from_its_checkpoint()
    {
        var inner = new InMemoryEventStore();
        await inner.AppendToStreamAsync("unreachable-1", ExpectedVersion.NoStream, [Event(), Event()]);
        var store = new FailingReadsStore(inner, failures: 1);
        var logger = new RecordingLogger<CatchUpSubscription>();
        var name = "unreachable-" + Guid.NewGuid().ToString("N");
        await using var subscription = new CatchUpSubscription(
            store,
            new InMemoryCheckpointStore(),
            new SubscriptionOptions { Name = name, RetryDelay = TimeSpan.Zero, MaxRetryDelay = TimeSpan.FromMilliseconds(1) },
            (_, _) => ValueTask.CompletedTask,
            logger);

        await subscription.StartAsync(default);
        await subscription.WaitForPositionAsync(new GlobalPosition(2), default).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, Total("cairn.subscription.failures|subscription=" + name));
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Error && e.Exception is IOException);
        Assert.IsType<IOException>(subscription.Status.LastError);
    }

    private sealed class FailingReadsStore(IEventStore inner, int failures) : IEventStore
    {
        private int _failures = failures;

        public IAsyncEnumerable<RecordedEvent> ReadAllAsync(GlobalPosition from, EventFilter filter, long maxCount, CancellationToken cancellationToken) =>
            Interlocked.Decrement(ref _failures) >= 0
                ? throw new IOException("the store is unreachable")
                : inner.ReadAllAsync(from, filter, maxCount, cancellationToken);

        public Task<AppendResult> AppendAsync(AppendRequest request, CancellationToken cancellationToken) => inner.AppendAsync(request, cancellationToken);

        public IAsyncEnumerable<RecordedEvent> ReadStreamAsync(StreamName stream, ReadDirection direction, long? fromVersion, long maxCount, CancellationToken cancellationToken) =>
            inner.ReadStreamAsync(stream, direction, fromVersion, maxCount, cancellationToken);

        public IAsyncEnumerable<RecordedEvent> ReadByQueryAsync(EventQuery query, GlobalPosition after, long maxCount, CancellationToken cancellationToken) =>
            inner.ReadByQueryAsync(query, after, maxCount, cancellationToken);

        public ValueTask<StreamInfo> GetStreamInfoAsync(StreamName stream, CancellationToken cancellationToken) => inner.GetStreamInfoAsync(stream, cancellationToken);

        public ValueTask<GlobalPosition> GetHeadPositionAsync(CancellationToken cancellationToken) => inner.GetHeadPositionAsync(cancellationToken);

        public Task WaitForAppendAsync(GlobalPosition position, CancellationToken cancellationToken) => inner.WaitForAppendAsync(position, cancellationToken);

        public Task SetStreamMetadataAsync(StreamName stream, StreamMetadata metadata, ExpectedVersion expectedMetadataVersion, CancellationToken cancellationToken) => inner.SetStreamMetadataAsync(stream, metadata, expectedMetadataVersion, cancellationToken);

        public Task DeleteStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) => inner.DeleteStreamAsync(stream, expectedVersion, cancellationToken);

        public Task TombstoneStreamAsync(StreamName stream, ExpectedVersion expectedVersion, CancellationToken cancellationToken) => inner.TombstoneStreamAsync(stream, expectedVersion, cancellationToken);
    }
}
