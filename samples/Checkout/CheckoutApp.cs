using System.Globalization;
using Cairn.DependencyInjection;
using Cairn.Diagnostics;
using Cairn.Envelopes;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Sqlite;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Checkout;

/// <summary>The worked example, callable from a test so it cannot rot: the same three orders checked out both ways.</summary>
public static class CheckoutApp
{
    /// <summary>A lamp order that goes through, a sofa whose payment is declined (over the card limit), a rug.</summary>
    public static readonly IReadOnlyList<Order> Orders =
    [
        new("order-1", "lamp", 2, 80m),
        new("order-2", "sofa", 1, 2_400m),
        new("order-3", "rug", 1, 150m),
    ];

    /// <summary>The order whose path is shown in full.</summary>
    public const string Traced = "order-2";

    /// <summary>Runs both styles, each on a SQLite file of its own in <paramref name="directory"/>.</summary>
    public static async Task RunAsync(string directory, TextWriter output, CancellationToken cancellationToken = default)
    {
        output.WriteLine("== 1. The checkout as a choreography: services react to each other's events ==");
        await RunChoreographyAsync(Path.Combine(directory, "choreography.db"), output, cancellationToken);
        output.WriteLine();
        output.WriteLine("== 2. The checkout as an orchestrated workflow: one definition sends commands, services reply ==");
        await RunWorkflowAsync(Path.Combine(directory, "workflow.db"), output, cancellationToken);
    }

    private static async Task RunChoreographyAsync(string databasePath, TextWriter output, CancellationToken cancellationToken)
    {
        using var host = Build(databasePath, cairn => cairn.AddCheckoutChoreography());
        await host.StartAsync(cancellationToken);
        var store = host.Services.GetRequiredService<IEventStore>();
        var serializer = host.Services.GetRequiredService<EventSerializer>();
        var inventory = host.Services.GetRequiredService<Inventory>();

        // The orders service appends each order; the route publishes it, and the services take it from there. The
        // order's id is its correlation id: everything any service does for it carries it.
        foreach (var order in Orders)
        {
            using (MessageContext.Begin(correlationId: order.Id))
            {
                await store.AppendToStreamAsync(Choreography.OrderStream(order.Id), ExpectedVersion.NoStream, [serializer.ToEventData(new OrderPlaced(order))], cancellationToken);
            }
        }

        // No one is in charge, so no one knows when a checkout is over: the order's stream says how it ended, and the
        // inventory whether a cancelled order's stock is back.
        output.WriteLine("Outcomes:");
        foreach (var order in Orders)
        {
            object? ended = null;
            await UntilAsync(
                async () => (ended = await LastEventAsync(store, serializer, Choreography.OrderStream(order.Id), cancellationToken)) is OrderCompleted
                    || (ended is OrderCancelled && !inventory.IsReserved(order.Id)),
                $"{order.Id} ends",
                cancellationToken);
            output.WriteLine(ended switch
            {
                OrderCompleted completed => $"  {order.Id}: completed, tracking {completed.Tracking}; {order.Sku} on hand: {inventory.OnHand(order.Sku)}",
                OrderCancelled cancelled => $"  {order.Id}: cancelled ({cancelled.Reason}); {order.Sku} on hand: {inventory.OnHand(order.Sku)}",
                _ => throw new InvalidOperationException("unreachable"),
            });
        }

        await UntilQuietAsync(host.Services, cancellationToken);
        PrintFlowMap(host.Services, output);
        await PrintTraceAsync(host.Services, output, cancellationToken);
        await host.StopAsync(cancellationToken);
    }

    private static async Task RunWorkflowAsync(string databasePath, TextWriter output, CancellationToken cancellationToken)
    {
        using var host = Build(databasePath, cairn => cairn.AddCheckoutWorkflow());
        await host.StartAsync(cancellationToken);
        var workflows = host.Services.GetRequiredService<WorkflowClient>();
        var inventory = host.Services.GetRequiredService<Inventory>();

        // The instance id is the order's id, and so the correlation id of the instance's whole history (the start the
        // client appends included) and of every command, reply and timer.
        foreach (var order in Orders)
        {
            await workflows.StartAsync(CheckoutWorkflow.WorkflowName, order.Id, new CheckoutState(order), cancellationToken);
        }

        // The workflow knows: each instance says where it stands.
        output.WriteLine("Outcomes:");
        foreach (var order in Orders)
        {
            WorkflowInstance? instance = null;
            await UntilAsync(
                async () => (instance = await workflows.GetAsync(CheckoutWorkflow.WorkflowName, order.Id, cancellationToken)) is { IsFinished: true },
                $"{order.Id} ends",
                cancellationToken);
            var state = workflows.GetState<CheckoutState>(instance!);
            output.WriteLine(instance!.Status == WorkflowStatus.Completed
                ? $"  {order.Id}: completed, tracking {state.Tracking}; {order.Sku} on hand: {inventory.OnHand(order.Sku)}"
                : $"  {order.Id}: {instance.Status.ToString().ToLowerInvariant()} ({instance.Reason}), compensated: {string.Join(", ", instance.CompensatedSteps)}; {order.Sku} on hand: {inventory.OnHand(order.Sku)}");
        }

        await UntilQuietAsync(host.Services, cancellationToken);
        PrintFlowMap(host.Services, output);

        output.WriteLine("The workflow's definition (WorkflowClient.Describe):");
        output.WriteLine(workflows.Describe(CheckoutWorkflow.WorkflowName));

        output.WriteLine($"The timeline of {Traced} (WorkflowClient.GetHistoryAsync):");
        var history = await workflows.GetHistoryAsync(CheckoutWorkflow.WorkflowName, Traced, cancellationToken);
        foreach (var entry in history)
        {
            var after = (entry.Time - history[0].Time).TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture);
            output.WriteLine($"  v{entry.Version,-2} +{after,4} ms  {Describe(entry.Event)}");
        }

        await PrintTraceAsync(host.Services, output, cancellationToken);
        await host.StopAsync(cancellationToken);
    }

    private static IHost Build(string databasePath, Func<CairnBuilder, CairnBuilder> configure)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton<Inventory>().AddSingleton<Payments>().AddSingleton<Shipping>();
        configure(builder.Services.AddCairn(o =>
        {
            o.UseSqlite($"Data Source={databasePath}");
            o.EventTypes.RegisterAssembly(typeof(CheckoutApp).Assembly);
        }));
        return builder.Build();
    }

    private static void PrintFlowMap(IServiceProvider services, TextWriter output)
    {
        var map = services.GetRequiredService<FlowRecorder>().Snapshot();
        output.WriteLine("The flow map of what ran (FlowRecorder.Snapshot().ToMermaid()):");
        output.WriteLine(map.ToMermaid());
        output.WriteLine($"Unconsumed types: {(map.UnconsumedTypes.Count == 0 ? "none" : string.Join(", ", map.UnconsumedTypes))}");
        output.WriteLine($"Cycles: {(map.Cycles.Count == 0 ? "none" : string.Join("; ", map.Cycles.Select(cycle => string.Join(", ", cycle))))}");
    }

    /// <summary>
    /// Everything the traced order's correlation id caused, across streams, queues and consumers: the timeline, then the
    /// causation tree. The text reads best in a console; <c>ToMermaid()</c> draws the same tree.
    /// </summary>
    private static async Task PrintTraceAsync(IServiceProvider services, TextWriter output, CancellationToken cancellationToken)
    {
        var trace = await services.GetRequiredService<CorrelationTracer>().TraceAsync(Traced, cancellationToken);
        output.WriteLine($"The trace of {Traced} (CorrelationTracer.TraceAsync(\"{Traced}\").ToText()):");
        foreach (var line in trace.ToText().TrimEnd('\n').Split('\n'))
        {
            output.WriteLine(line);
        }
    }

    /// <summary>One history event in a line: the step it belongs to and what happened.</summary>
    private static string Describe(WorkflowEvent e) => e switch
    {
        WorkflowStarted s => $"started ({s.StartedBy ?? "by the client"})",
        StepStarted s => $"{s.Step} #{s.Attempt}: sent {s.MessageType} to {s.Target}",
        StepCompleted s => $"{s.Step} done by {s.ReplyType} -> {s.Next ?? "end"}",
        StepFailed s => $"{s.Step} failed by {s.ReplyType}: {s.Reason}",
        CompensationBegan s => $"compensating {string.Join(", ", s.Steps)}",
        CompensationStarted s => $"undo {s.Step}: sent {s.MessageType} to {s.Target}",
        CompensationCompleted s => $"{s.Step} undone{(s.ReplyType is null ? "" : " (confirmed by " + s.ReplyType + ")")}",
        WorkflowCompleted => "completed",
        WorkflowFailed s => $"failed: {s.Reason}",
        _ => e.GetType().Name,
    };

    private static async Task<object?> LastEventAsync(IEventStore store, EventSerializer serializer, StreamName stream, CancellationToken cancellationToken)
    {
        object? last = null;
        await foreach (var e in store.ReadStreamAsync(stream, cancellationToken))
        {
            last = serializer.Deserialize(e);
        }

        return last;
    }

    /// <summary>Waits until no message is waiting or being handled, so the flow map holds every handling.</summary>
    private static Task UntilQuietAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        var admin = services.GetRequiredService<IMessagingAdmin>();
        var consumers = services.GetRequiredService<ConsumerMonitor>();
        return UntilAsync(
            async () =>
            {
                foreach (var consumer in consumers.Statuses)
                {
                    var stats = await admin.GetStatsAsync(consumer.Queue, cancellationToken);
                    if (consumer.InFlight > 0 || stats.Visible > 0 || stats.Leased > 0)
                    {
                        return false;
                    }
                }

                return true;
            },
            "every queue is drained",
            cancellationToken);
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, string what, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(30);
        while (!await condition())
        {
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(10), cancellationToken);
        }
    }
}
