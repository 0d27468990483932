using System.Text;
using Cairn.DependencyInjection;
using Cairn.Domain;
using Cairn.EventStore;
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
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);

        // 1. Register Cairn on the embedded SQLite store: one file, created on first use.
        var audit = new AuditLog(output);
        builder.Services.AddSingleton(audit);
        builder.Services
            .AddCairn(o =>
            {
                o.UseSqlite($"Data Source={databasePath}");
                o.EventTypes.RegisterAssembly(typeof(QuickstartApp).Assembly);
            })
            .AddSubscription<AuditLog>("audit-log", s => s.Filter(EventFilter.ForCategory("account")));

        using var host = builder.Build();
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
        await accounts.HandleAsync(stream, new Deposit(7m), cancellationToken);

        // 5. The stream is the audit history.
        output.WriteLine($"The stream {stream}:");
        await foreach (var e in store.ReadStreamAsync(stream, cancellationToken))
        {
            output.WriteLine($"  v{e.Version} #{e.Position} {e.Type,-18} {Encoding.UTF8.GetString(e.Data.Span)}");
        }

        // 6. State at an earlier point: as of version 1, before the withdrawal.
        var earlier = await accounts.LoadAsOfVersionAsync(stream, 1, cancellationToken);
        var now = await accounts.LoadAsync(stream, cancellationToken);
        output.WriteLine($"Balance as of version 1: {earlier.State.Balance}; now: {now.State.Balance}");

        // 7. The subscription has printed every event as it was committed; wait until it has seen the last one.
        var head = await store.GetHeadPositionAsync(cancellationToken);
        await host.Services.GetRequiredService<SubscriptionMonitor>().Find("audit-log")!.WaitForPositionAsync(head, cancellationToken).WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        output.WriteLine($"The audit-log subscription handled {audit.Count} events.");

        await host.StopAsync(cancellationToken);
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
