using System.Diagnostics;
using Cairn.Conformance.Support;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;

namespace Cairn.Conformance.Messaging;

/// <summary>Hosted consumers: effects with the acknowledgement, retries, dead letters, the inbox, shutdown.</summary>
public abstract class ConsumerTests<TFixture>(TFixture fixture) : MessagingTests<TFixture>(fixture)
    where TFixture : class, IStoreFixture, new()
{
    private static readonly QueueName Work = "work";
    private static readonly QueueName Out = "out";

    private QueueConsumer Consumer(IMessageBroker broker, Func<MessageHandlerContext, CancellationToken, ValueTask> handler, Func<ConsumerOptions, ConsumerOptions>? configure = null)
    {
        var options = new ConsumerOptions(Work) { Concurrency = 1, ExtendLeaseWhileHandling = false, Retry = new RetryPolicy { ImmediateRetries = 0 } };
        return new QueueConsumer(broker, configure?.Invoke(options) ?? options, handler, timeProvider: Clock);
    }

    /// <summary>
    /// Moves the clock on in small steps until a condition holds: a consumer looks at its queue again when its own
    /// timer fires, and a timer armed while the clock moves falls due only on a later step.
    /// </summary>
    private Task AdvanceUntilAsync(Func<Task<bool>> condition, string what) =>
        Wait.UntilAsync(
            async () =>
            {
                if (await condition())
                {
                    return true;
                }

                Clock.Advance(TimeSpan.FromMilliseconds(100));
                return false;
            },
            what);

    private static Task UntilAsync(QueueConsumer consumer, Func<ConsumerStatus, bool> condition, string what) =>
        Wait.UntilAsync(() => condition(consumer.Status), what);

    [Fact]
    public async Task a_handled_message_commits_its_effects_with_its_acknowledgement()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work), new QueueDefinition(Out));
        await using var _ = sut;
        var stream = new StreamName("order-1");
        await using var consumer = Consumer(broker, (context, _) =>
        {
            context.Append(stream, ExpectedVersion.Any, TestEvents.Numbered(NumberOf(context.Message)));
            context.Send(Out, Numbered(NumberOf(context.Message) * 10));
            return ValueTask.CompletedTask;
        });
        await consumer.StartAsync(default);
        var sent = Numbered(4);
        using (MessageContext.Begin("flow-1"))
        {
            await broker.SendAsync(Work, sent);
        }

        await UntilAsync(consumer, s => s.Handled == 1, "the message is handled");
        Assert.Equal(new QueueStats { Queue = Work }, await broker.GetStatsAsync(Work, default));
        Assert.True(await broker.WasProcessedAsync(Work.Value, sent.Id, default));

        // Whatever the handler wrote carries the handled message as its cause, and the same correlation.
        var recorded = await sut.Store.ReadStreamAsync(stream).SingleAsync();
        Assert.Equal(("flow-1", sent.Id.ToString()), (recorded.CorrelationId, recorded.CausationId));
        var forwarded = Assert.Single(await ReceiveNowAsync(broker, Out));
        Assert.Equal(40, NumberOf(forwarded.Message));
        Assert.Equal(("flow-1", sent.Id.ToString()), (forwarded.Message.CorrelationId, forwarded.Message.CausationId));
    }

    [Fact]
    public async Task a_message_whose_handler_throws_is_never_acknowledged_and_its_effects_are_discarded()
    {
        // eShop's RabbitMQ bus acknowledged a message whose handler had thrown: it was lost.
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work), new QueueDefinition(Out));
        await using var _ = sut;
        var calls = 0;
        await using var consumer = Consumer(
            broker,
            (context, _) =>
            {
                context.Send(Out, Numbered(1));
                return ++calls <= 3 ? throw new InvalidOperationException("database down") : ValueTask.CompletedTask;
            },
            o => o with { Retry = new RetryPolicy { ImmediateRetries = 2, InitialDelay = TimeSpan.FromSeconds(10), Jitter = 0 } });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, Numbered(1));

        // Three attempts in the first receive (one plus two immediate retries), then given back for 10 s.
        await Wait.UntilAsync(async () => (await broker.GetStatsAsync(Work, default)).Delayed == 1, "the message is given back with a delay");
        Assert.Equal(3, calls);
        Assert.Equal(0, consumer.Status.Handled);
        Assert.Empty(await ReceiveNowAsync(broker, Out));

        await AdvanceUntilAsync(() => Task.FromResult(consumer.Status.Handled == 1), "the retry succeeds");
        Assert.Equal(4, calls);
        Assert.Single(await DrainAsync(broker, Out));
    }

    [Fact]
    public async Task a_poison_message_goes_to_the_dead_letter_queue_after_the_maximum_with_its_exception()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 3 });
        await using var _ = sut;
        await using var consumer = Consumer(
            broker,
            (_, _) => throw new FormatException("amount is not a number"),
            o => o with { Retry = new RetryPolicy { ImmediateRetries = 0, InitialDelay = TimeSpan.FromSeconds(1), BackoffFactor = 2, Jitter = 0 } });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, Numbered(1));

        // Backoff 1 s, then 2 s; the third failure dead-letters it.
        await AdvanceUntilAsync(async () => (await broker.GetStatsAsync(Work, default)).DeadLettered == 1, "the message is dead-lettered");
        var letter = Assert.Single(await broker.ListDeadLettersAsync(Work, 0, 10, default));
        Assert.Equal(3, letter.Attempts);
        Assert.Equal(typeof(FormatException).FullName, letter.Failure!.Type);
        Assert.Equal("amount is not a number", letter.Failure.Message);
        Assert.Equal(3, consumer.Status.Retried);

        // The consumer counts what the broker dead-lettered on its last allowed receive.
        await UntilAsync(consumer, s => s.DeadLettered == 1, "the consumer counts the dead letter");
    }

    [Fact]
    public async Task a_non_retryable_failure_is_dead_lettered_at_once()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var calls = 0;
        await using var consumer = Consumer(
            broker,
            (context, _) =>
            {
                calls++;
                return NumberOf(context.Message) == 1
                    ? throw new NonRetryableMessageException("order total is negative: '\0\uD800'")
                    : throw new ArgumentException("unknown currency", "currency");
            },
            o => o with { Retry = new RetryPolicy { ImmediateRetries = 5, NonRetryable = [typeof(ArgumentException)] } });
        await consumer.StartAsync(default);
        await broker.SendBatchAsync(Work, [Numbered(1), Numbered(2)]);

        await UntilAsync(consumer, s => s.DeadLettered == 2, "both are dead-lettered");
        Assert.Equal(2, calls);
        var letters = await broker.ListDeadLettersAsync(Work, 0, 10, default);
        Assert.Contains(letters, l => l.Reason.Contains("order total is negative: '\uFFFD\uFFFD'", StringComparison.Ordinal));
        Assert.Contains(letters, l => l.Failure!.Type == typeof(ArgumentException).FullName);
    }

    [Fact]
    public async Task a_handler_past_its_timeout_is_cancelled_and_its_message_given_back()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = Consumer(
            broker,
            async (_, ct) =>
            {
                started.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            },
            o => o with { HandlerTimeout = TimeSpan.FromSeconds(5), Retry = new RetryPolicy { ImmediateRetries = 3, InitialDelay = TimeSpan.FromSeconds(30), Jitter = 0 } });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, Numbered(1));
        await started.Task.Bounded();
        Clock.Advance(TimeSpan.FromSeconds(5));

        await Wait.UntilAsync(async () => (await broker.GetStatsAsync(Work, default)).Delayed == 1, "the message is given back");
        await consumer.StopAsync(default);
        Clock.Advance(TimeSpan.FromSeconds(30));
        var again = Assert.Single(await ReceiveNowAsync(broker, Work));
        Assert.Equal(typeof(HandlerTimeoutException).FullName, again.LastFailure!.Type);
    }

    [Fact]
    public async Task a_handler_that_outlives_its_lease_cannot_commit_and_leaves_no_effect()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Lease = TimeSpan.FromSeconds(10) }, new QueueDefinition(Out));
        await using var _ = sut;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var proceed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = Consumer(broker, async (context, ct) =>
        {
            started.TrySetResult();
            await proceed.Task.WaitAsync(ct);
            context.Send(Out, Numbered(99));
        }, o => o with { Prefetch = 1 });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, Numbered(1));
        await started.Task.Bounded();

        Clock.Advance(TimeSpan.FromSeconds(10));
        var taken = Assert.Single(await ReceiveNowAsync(broker, Work));
        proceed.SetResult();
        await UntilAsync(consumer, s => s.LeasesLost == 1, "the late commit is refused");
        Assert.Empty(await ReceiveNowAsync(broker, Out));
        Assert.False(await broker.WasProcessedAsync(Work.Value, taken.Message.Id, default));
        await broker.AcknowledgeAsync(taken.Lease);
    }

    [Fact]
    public async Task a_slow_handler_keeps_its_lease_renewed_so_no_one_else_gets_the_message()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Lease = TimeSpan.FromSeconds(10) });
        await using var _ = sut;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = Consumer(
            broker,
            async (_, ct) =>
            {
                started.TrySetResult();
                await finish.Task.WaitAsync(ct);
            },
            o => o with { Prefetch = 1, ExtendLeaseWhileHandling = true, HandlerTimeout = TimeSpan.FromMinutes(5) });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, Numbered(1));
        await started.Task.Bounded();

        // Two timers run while the handler works: its timeout, and the renewal due at half the lease. Each renewal
        // extends the lease to a full lease from now, then arms the next.
        await Wait.UntilAsync(() => Clock.ArmedTimers == 2, "the renewal is armed");
        for (var i = 0; i < 3; i++)
        {
            Clock.Advance(TimeSpan.FromSeconds(5));
            await Wait.UntilAsync(() => Clock.ArmedTimers == 2, "the lease is renewed");
        }

        // Fifteen seconds in, past the first lease: the message is still held.
        Assert.Empty(await ReceiveNowAsync(broker, Work));
        Assert.Equal(1, (await broker.GetStatsAsync(Work, default)).Leased);
        finish.SetResult();
        await UntilAsync(consumer, s => s.Handled == 1, "the message is handled");
        Assert.Equal(0, consumer.Status.LeasesLost);
    }

    [Fact]
    public async Task a_message_already_in_the_inbox_is_acknowledged_without_running_the_handler()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var sent = Numbered(1);
        await broker.CommitAsync(new MessageTransaction().MarkProcessed(Work.Value, sent.Id), default);
        var calls = 0;
        await using var consumer = Consumer(broker, (_, _) =>
        {
            calls++;
            return ValueTask.CompletedTask;
        });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, sent);
        await UntilAsync(consumer, s => s.Duplicates == 1, "the repeat is recognised");
        Assert.Equal(0, calls);
        Assert.Equal(new QueueStats { Queue = Work }, await broker.GetStatsAsync(Work, default));
    }

    [Fact]
    public async Task a_handling_whose_message_the_inbox_took_meanwhile_counts_as_a_duplicate_not_as_handled()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var sent = Numbered(1);

        // Another copy of the message commits while this one runs its handler (a redelivery handled in parallel): the
        // check before the handler found nothing, the commit finds the record and writes nothing but the acknowledgement.
        await using var consumer = Consumer(broker, async (_, _) =>
            await broker.CommitAsync(new MessageTransaction().MarkProcessed(Work.Value, sent.Id), default));
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, sent);
        await UntilAsync(consumer, s => s.Duplicates == 1, "the repeat is recognised at commit");

        // Stopped, so the handling is over and the counts are final.
        await consumer.StopAsync(default);
        Assert.Equal(0, consumer.Status.Handled);
        Assert.Equal(1, consumer.Status.Duplicates);
        Assert.Equal(new QueueStats { Queue = Work }, await broker.GetStatsAsync(Work, default));
    }

    [Fact]
    public async Task a_consumer_forgets_inbox_records_past_its_retention()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var old = MessageId.New();
        await broker.CommitAsync(new MessageTransaction().MarkProcessed(Work.Value, old), default);
        Clock.Advance(TimeSpan.FromMinutes(2));
        await using var consumer = Consumer(broker, (_, _) => ValueTask.CompletedTask, o => o with { InboxRetention = TimeSpan.FromMinutes(1) });
        await consumer.StartAsync(default);
        var sent = Numbered(1);
        await broker.SendAsync(Work, sent);
        await UntilAsync(consumer, s => s.Handled == 1, "the message is handled");
        await Wait.UntilAsync(async () => !await broker.WasProcessedAsync(Work.Value, old, default), "the old record is forgotten");
        Assert.True(await broker.WasProcessedAsync(Work.Value, sent.Id, default));
    }

    [Fact]
    public async Task a_typed_message_that_does_not_fit_is_dead_lettered_as_non_retryable()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var registry = new Cairn.Serialization.EventTypeRegistry().Register<Deposit>("deposit");
        var serializer = new Cairn.Serialization.EventSerializer(registry);
        var amounts = new List<decimal>();
        await using var consumer = new QueueConsumer(
            broker,
            new ConsumerOptions(Work) { Concurrency = 1, ExtendLeaseWhileHandling = false },
            (context, _) =>
            {
                amounts.Add(context.Read<Deposit>().Amount);
                return ValueTask.CompletedTask;
            },
            serializer: serializer,
            timeProvider: Clock);
        await consumer.StartAsync(default);
        await broker.SendBatchAsync(Work, [
            serializer.ToOutgoingMessage(new Deposit(12.5m)),
            new OutgoingMessage("deposit", "{\"Amount\":\"lots\"}"u8.ToArray()),
            new OutgoingMessage("unknown.type", "{}"u8.ToArray()),
        ]);

        await UntilAsync(consumer, s => s.Handled == 1 && s.DeadLettered == 2, "one is handled and two dead-lettered");
        Assert.Equal([12.5m], amounts);
        var letters = await broker.ListDeadLettersAsync(Work, 0, 10, default);
        Assert.All(letters, l => Assert.Equal(typeof(MessageDeserializationException).FullName, l.Failure!.Type));
    }

    [Fact]
    public async Task no_more_than_the_concurrency_limit_run_at_once()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        var running = 0;
        var peak = 0;
        var twoRunning = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var consumer = Consumer(
            broker,
            async (_, ct) =>
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref peak, now);
                if (now == 2)
                {
                    twoRunning.TrySetResult();
                }

                await release.Task.WaitAsync(ct);
                Interlocked.Decrement(ref running);
            },
            o => o with { Concurrency = 2, Prefetch = 4 });
        await consumer.StartAsync(default);
        await broker.SendBatchAsync(Work, Enumerable.Range(0, 8).Select(n => Numbered(n)));
        await twoRunning.Task.Bounded();
        await Wait.UntilAsync(async () => (await broker.GetStatsAsync(Work, default)).Leased == 4, "the prefetch is full");
        Assert.Equal(4, (await broker.GetStatsAsync(Work, default)).Visible);
        release.SetResult();
        await UntilAsync(consumer, s => s.Handled == 8, "all are handled");
        Assert.Equal(2, peak);
    }

    [Fact]
    public async Task a_fifo_queue_keeps_each_group_in_order_under_concurrency()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { Fifo = true });
        await using var _ = sut;
        var seen = new List<(string Group, int N)>();
        await using var consumer = Consumer(
            broker,
            async (context, _) =>
            {
                await Task.Yield();
                lock (seen)
                {
                    seen.Add((context.Message.GroupKey!, NumberOf(context.Message)));
                }
            },
            o => o with { Concurrency = 4 });
        await consumer.StartAsync(default);
        await broker.SendBatchAsync(Work, Enumerable.Range(0, 60).Select(n => Numbered(n) with { GroupKey = "g" + (n % 3) }));
        await UntilAsync(consumer, s => s.Handled == 60, "all are handled");
        foreach (var group in seen.GroupBy(s => s.Group))
        {
            var numbers = group.Select(s => s.N).ToList();
            Assert.Equal(numbers.Order(), numbers);
        }
    }

    [Fact]
    public async Task stopping_lets_in_flight_work_finish_and_gives_back_what_was_not_started()
    {
        // One allowed receive: what a stop gives back must not count as a failed one.
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 });
        await using var _ = sut;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handled = new List<int>();
        var consumer = Consumer(
            broker,
            async (context, ct) =>
            {
                started.TrySetResult();
                await finish.Task.WaitAsync(ct);
                handled.Add(NumberOf(context.Message));
            },
            o => o with { Concurrency = 1, Prefetch = 4 });
        await consumer.StartAsync(default);
        await broker.SendBatchAsync(Work, Enumerable.Range(0, 4).Select(n => Numbered(n)));
        await started.Task.Bounded();
        await Wait.UntilAsync(async () => (await broker.GetStatsAsync(Work, default)).Leased == 4, "the prefetch is full");

        var stopping = consumer.StopAsync(default);
        await Wait.UntilAsync(async () => (await broker.GetStatsAsync(Work, default)).Visible == 3, "the unstarted messages are given back");
        Assert.False(stopping.IsCompleted);
        finish.SetResult();
        await stopping.Bounded();
        Assert.Equal([0], handled);
        Assert.Equal(1, consumer.Status.Handled);
        var stats = await broker.GetStatsAsync(Work, default);
        Assert.Equal((3, 0), (stats.Visible, stats.DeadLettered));
        await consumer.DisposeAsync();
    }

    [Fact]
    public async Task a_stop_whose_time_is_up_cancels_handlers_and_gives_their_messages_back_untouched()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work) { MaxReceiveCount = 1 }, new QueueDefinition(Out));
        await using var _ = sut;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = Consumer(broker, async (context, ct) =>
        {
            context.Send(Out, Numbered(1));
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
        });
        await consumer.StartAsync(default);
        await broker.SendAsync(Work, Numbered(1));
        await started.Task.Bounded();
        using var expired = new CancellationTokenSource();
        await expired.CancelAsync();
        await consumer.StopAsync(expired.Token).Bounded();

        var stats = await broker.GetStatsAsync(Work, default);
        Assert.Equal((1, 0), (stats.Visible, stats.Leased));
        Assert.Empty(await ReceiveNowAsync(broker, Out));
        await consumer.DisposeAsync();
    }

    [Fact]
    public async Task handling_runs_in_a_span_that_continues_the_producers_trace()
    {
        var (sut, broker) = await CreateBrokerAsync(new QueueDefinition(Work));
        await using var _ = sut;
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name.StartsWith("Cairn", StringComparison.Ordinal) || s.Name == "test",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        using var source = new ActivitySource("test");
        string? traceInHandler = null;
        await using var consumer = Consumer(broker, (_, _) =>
        {
            traceInHandler = Activity.Current?.TraceId.ToString();
            return ValueTask.CompletedTask;
        });
        await consumer.StartAsync(default);
        string producerTrace;
        using (var producer = source.StartActivity("request"))
        {
            producerTrace = producer!.TraceId.ToString();
            await broker.SendAsync(Work, Numbered(1));
        }

        await UntilAsync(consumer, s => s.Handled == 1, "the message is handled");
        Assert.Equal(producerTrace, traceInHandler);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    /// <summary>A typed message.</summary>
    public sealed record Deposit(decimal Amount);
}
