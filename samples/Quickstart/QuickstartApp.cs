using System.Text;
using Cairn.DependencyInjection;
using Cairn.Domain;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;
using Cairn.Serialization;
using Cairn.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Quickstart;

/// <summary>The quickstart, callable from a test so it cannot rot.</summary>
public static class QuickstartApp
{
    public static async Task RunAsync(string databasePath, TextWriter output, CancellationToken cancellationToken = default)
    {
        using var host = Build(databasePath, output);
        await RunAsync(host, cancellationToken);
    }

    /// <summary>
    /// The quickstart's host, built and not started: what <see cref="RunAsync(IHost, CancellationToken)"/> runs, and
    /// what Cairn's commands (<c>schemas check</c>, ...) read the event types and the registry from.
    /// </summary>
    public static IHost Build(string databasePath, TextWriter output)
    {
        // Handlers print from their own threads.
        output = TextWriter.Synchronized(output);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);

        // A consumer logs the poison message of step 9 as an error, with its stack trace; here the program prints the
        // dead letter itself instead.
        builder.Logging.AddFilter("Cairn.Messaging.Consumers.QueueConsumer", LogLevel.Critical);

        // 1. Register Cairn on the embedded SQLite store: one file, created on first use. Queues, topics, consumers,
        //    routes and read models live in the same file, and are declared when the host starts.
        var audit = new AuditLog(output);
        builder.Services.AddSingleton(audit);
        builder.Services.AddSingleton(output);
        builder.Services.AddSingleton<Mailer>();
        builder.Services
            .AddCairn(o =>
            {
                o.UseSqlite($"Data Source={databasePath}");
                o.EventTypes.RegisterAssembly(typeof(QuickstartApp).Assembly);
            })
            .AddSubscription<AuditLog>("audit-log", s => s.Filter(EventFilter.ForCategory("account")))
            // Every account event goes to the topic "accounts" through the log (the log is the outbox): the
            // application appends once and never publishes by hand.
            .AddTopic("accounts")
            .AddEventRoute("accounts-out", EventFilter.ForCategory("account"), "accounts")
            // Only large deposits reach the queue "large-deposits": the rule sees the envelope as JSON, the event's
            // data under "data".
            .AddQueue(LargeDepositHandler.Queue)
            .AddTopicSubscription("accounts", "large-deposits", LargeDepositHandler.Queue, """
                {"type": ["account.deposited"], "data": {"amount": [{"numeric": [">=", 1000]}]}}
                """)
            .AddConsumer<Deposited, LargeDepositHandler>(LargeDepositHandler.Queue)
            // The notices. A failure listed as non-retryable goes to the dead-letter queue at once; any other is
            // retried (twice at once, then after a growing delay) and dead-lettered when its third receive fails.
            .AddQueue(Mailer.Queue, q => q with { MaxReceiveCount = 3 })
            .AddConsumer(
                Mailer.Queue,
                (context, ct) => context.Services.GetRequiredService<Mailer>().SendAsync(context, ct),
                c => c with { Retry = c.Retry with { NonRetryable = [typeof(MissingTemplateException)] } })
            // A read model: account summaries, queried by id or on their indexed fields.
            .AddProjection<AccountSummaries>();
        return builder.Build();
    }

    /// <summary>Runs the quickstart on a host made by <see cref="Build"/>, printing to the output given there.</summary>
    public static async Task RunAsync(IHost host, CancellationToken cancellationToken = default)
    {
        var output = host.Services.GetRequiredService<TextWriter>();
        var audit = host.Services.GetRequiredService<AuditLog>();
        await host.StartAsync(cancellationToken);

        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var accounts = new DeciderHandler<AccountCommand, Account, AccountEvent>(store, serializer, AccountDecider.Decider);
        var stream = StreamName.For("account", "alice");

        // 2. Commands become events through the decider.
        await accounts.HandleAsync(stream, new OpenAccount("Alice"), cancellationToken);
        await accounts.HandleAsync(stream, new Deposit(100m), cancellationToken);
        var afterWithdrawal = await accounts.HandleAsync(stream, new Withdraw(30m), cancellationToken);
        output.WriteLine($"Balance after three commands: {afterWithdrawal.State.Balance}");

        // 3. A refused command writes nothing.
        try
        {
            await accounts.HandleAsync(stream, new Withdraw(1_000m), cancellationToken);
        }
        catch (AccountRuleException refused)
        {
            output.WriteLine($"Refused: {refused.Message}");
        }

        // 4. A conflict: two writers read version 2; the second append is refused with the versions named.
        var version = await store.GetStreamVersionAsync(stream, cancellationToken);
        await store.AppendToStreamAsync(stream, ExpectedVersion.Exactly(version!.Value), [serializer.ToEventData(new Deposited(5m))], cancellationToken);
        try
        {
            await store.AppendToStreamAsync(stream, ExpectedVersion.Exactly(version.Value), [serializer.ToEventData(new Deposited(7m))], cancellationToken);
        }
        catch (WrongExpectedVersionException conflict)
        {
            output.WriteLine($"Conflict: expected {conflict.Expected}, the stream is at {conflict.Actual}.");
        }

        // The decider handler reloads and decides again on a conflict, so this one simply lands.
        var deposit = await accounts.HandleAsync(stream, new Deposit(7m), cancellationToken);

        // 5. The read model is updated in the background: wait for the position the command returned (read your
        //    writes), then query it.
        var projections = host.Services.GetRequiredService<ProjectionMonitor>();
        var readModels = host.Services.GetRequiredService<ReadModels>();
        await projections.WaitForAsync(AccountSummaries.ProjectionName, deposit.Append!.LastPosition, TimeSpan.FromSeconds(30), cancellationToken);
        var summary = await readModels.LoadAsync<AccountSummary>(stream.Value, cancellationToken);
        output.WriteLine($"Read model at position {deposit.Append.LastPosition}: {summary!.Id} of {summary.Owner}, balance {summary.Balance}, {summary.Deposits} deposits");
        var wellOff = await readModels.Query<AccountSummary>()
            .Where("owner", "Alice")
            .Where("balance", QueryOperator.GreaterThanOrEqual, 50m)
            .OrderByDescending("balance")
            .ToListAsync(cancellationToken);
        output.WriteLine($"Accounts of Alice with a balance of 50 or more: {string.Join(", ", wellOff.Select(a => $"{a.Id} ({a.Balance})"))}");

        // 6. The stream is the audit history.
        output.WriteLine($"The stream {stream}:");
        await foreach (var e in store.ReadStreamAsync(stream, cancellationToken))
        {
            output.WriteLine($"  v{e.Version} #{e.Position} {e.Type,-18} {Encoding.UTF8.GetString(e.Data.Span)}");
        }

        // 7. State at an earlier point: as of version 1, before the withdrawal.
        var earlier = await accounts.LoadAsOfVersionAsync(stream, 1, cancellationToken);
        var now = await accounts.LoadAsync(stream, cancellationToken);
        output.WriteLine($"Balance as of version 1: {earlier.State.Balance}; now: {now.State.Balance}");

        // 8. A large deposit. The route publishes it to the topic, the rule lets it into "large-deposits", and the
        //    handler opens a review and queues a notice, in one commit with the acknowledgement. Everything it
        //    causes carries the correlation id of the request.
        var consumers = host.Services.GetRequiredService<ConsumerMonitor>();
        output.WriteLine($"Messaging: {stream} deposits 2500 (correlation id 'branch-42').");
        using (MessageContext.Begin(correlationId: "branch-42"))
        {
            await accounts.HandleAsync(stream, new Deposit(2_500m), cancellationToken);
        }

        await UntilAsync(() => consumers.Find(LargeDepositHandler.Queue.Value)!.Status.Handled == 1, "the large deposit is handled", cancellationToken);
        await foreach (var e in store.ReadStreamAsync(StreamName.For("review", "alice"), cancellationToken))
        {
            output.WriteLine($"  {e.Stream} v{e.Version} {e.Type} {Encoding.UTF8.GetString(e.Data.Span)}, correlation id '{e.CorrelationId}'");
        }

        // 9. The notice is a poison message: the mailer has no template, a failure no retry can fix, so the consumer
        //    dead-letters it at once instead of retrying it MaxReceiveCount times.
        var admin = host.Services.GetRequiredService<IMessagingAdmin>();
        var deadLetters = host.Services.GetRequiredService<IDeadLetterQueue>();
        await UntilAsync(() => consumers.Find(Mailer.Queue.Value)!.Status.DeadLettered == 1, "the notice is dead-lettered", cancellationToken);
        var stats = await admin.GetStatsAsync(Mailer.Queue, cancellationToken);
        output.WriteLine($"Queue {Mailer.Queue}: {stats.Visible} visible, {stats.DeadLettered} dead-lettered.");
        foreach (var letter in await deadLetters.ListDeadLettersAsync(Mailer.Queue, afterSequence: 0, limit: 10, cancellationToken))
        {
            output.WriteLine($"  dead letter {letter.Message.Type}, correlation id '{letter.Message.CorrelationId}': {letter.Reason}");
            output.WriteLine($"    attempts {letter.Attempts}, exception {letter.Failure?.Type}");
        }

        // 10. Fix the cause, then redrive: the dead letters go back to their queue, keeping their ids, and are handled.
        host.Services.GetRequiredService<Mailer>().InstallTemplate();
        var redriven = await deadLetters.RedriveAsync(Mailer.Queue, new RedriveRequest { MessagesPerSecond = 50 }, cancellationToken);
        output.WriteLine($"Template installed; {redriven} dead letter redriven.");
        await UntilAsync(() => consumers.Find(Mailer.Queue.Value)!.Status.Handled == 1, "the redriven notice is handled", cancellationToken);
        stats = await admin.GetStatsAsync(Mailer.Queue, cancellationToken);
        var mailer = consumers.Find(Mailer.Queue.Value)!.Status;
        output.WriteLine($"Consumer {mailer.Name}: {mailer.Handled} handled, {mailer.DeadLettered} dead-lettered; {stats.DeadLettered} dead letters left.");

        // 11. The subscription has printed every account event as it was committed; wait until it has seen the last one.
        var head = await store.GetHeadPositionAsync(cancellationToken);
        await host.Services.GetRequiredService<SubscriptionMonitor>().Find("audit-log")!.WaitForPositionAsync(head, cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        output.WriteLine($"The audit-log subscription handled {audit.Count} events.");

        await host.StopAsync(cancellationToken);
    }

    /// <summary>Waits for a condition on a consumer's status, which changes once the broker has settled the message.</summary>
    private static async Task UntilAsync(Func<bool> condition, string what, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(5), cancellationToken);
        }
    }
}

/// <summary>A catch-up subscription's handler: prints each account event once it is committed.</summary>
public sealed class AuditLog(TextWriter output) : ISubscriptionHandler
{
    private readonly TextWriter _output = output;
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public ValueTask HandleAsync(RecordedEvent recorded, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _count);
        lock (_output)
        {
            _output.WriteLine($"  [audit-log] {recorded.Stream} v{recorded.Version}: {recorded.Type}");
        }

        return ValueTask.CompletedTask;
    }
}
