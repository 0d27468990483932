using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Postgres.Tests;

[EventType("gauge.work")] public sealed record GaugedWork(string Id);
[EventType("gauge.done")] public sealed record GaugedDone(string Id);

public sealed record GaugedState(string Id);

/// <summary>A workflow that waits on a durable timer, then sends a command whose reply completes it.</summary>
public sealed class GaugedWorkflow : Workflow<GaugedState>
{
    public static readonly QueueName Work = "gauged-work";

    // The name is "gauged" for the gauge's own tests, which read the process-wide gauge for that name while other test
    // classes run in parallel: another class hosting this workflow gives it a name of its own.
    public GaugedWorkflow(TimeSpan wait, string name = "gauged")
        : base(name)
    {
        Step("wait").Wait(wait).Then("work");
        Step("work").Send(Work, s => new GaugedWork(s.Id)).On<GaugedDone>().Complete();
    }

    public static void Register(EventTypeRegistry types) => types.Register<GaugedWork>().Register<GaugedDone>();
}

/// <summary>The pending-timer gauge of a hosted workflow on PostgreSQL, as hosts start, stop and are disposed.</summary>
public sealed class WorkflowTimerGaugeTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => PostgresServer.DropSchemaAsync(_schema);

    private IHost Host(GaugedWorkflow workflow, string? schema = null, bool withWorker = true)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var cairn = builder.Services.AddCairn(o =>
        {
            o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = schema ?? _schema });
            GaugedWorkflow.Register(o.EventTypes);
        })
        .AddWorkflow(workflow)
        .AddQueue(GaugedWorkflow.Work);
        if (withWorker)
        {
            cairn.AddConsumer(GaugedWorkflow.Work, (context, _) =>
            {
                context.Reply(new GaugedDone(context.Read<GaugedWork>().Id));
                return ValueTask.CompletedTask;
            });
        }

        return builder.Build();
    }

    // Two hosts of one workflow in one process on two schemas (two tenants) add their timers up; a third host on the
    // first tenant's schema counts the same queue as the first, once.
    [Fact]
    public async Task hosts_of_one_workflow_on_two_schemas_add_their_pending_timers_and_hosts_on_one_schema_count_them_once()
    {
        var otherSchema = PostgresServer.NewSchema();
        using var first = Host(new GaugedWorkflow(TimeSpan.FromHours(1)), withWorker: false);
        using var second = Host(new GaugedWorkflow(TimeSpan.FromHours(1)), otherSchema, withWorker: false);
        using var third = Host(new GaugedWorkflow(TimeSpan.FromHours(1)), withWorker: false);
        try
        {
            await first.StartAsync();
            await second.StartAsync();
            await third.StartAsync();
            await first.Services.GetRequiredService<WorkflowClient>().StartAsync("gauged", "a-1", new GaugedState("a-1"));
            await second.Services.GetRequiredService<WorkflowClient>().StartAsync("gauged", "b-1", new GaugedState("b-1"));
            await second.Services.GetRequiredService<WorkflowClient>().StartAsync("gauged", "b-2", new GaugedState("b-2"));

            // Each host reads its queue every 5 s: one timer in the first schema, two in the other.
            await Wait.UntilAsync(() => PendingTimers() == 3, "the gauge reports the timers of both schemas, each once");
        }
        finally
        {
            await third.StopAsync();
            await second.StopAsync();
            await first.StopAsync();
            await PostgresServer.DropSchemaAsync(otherSchema);
        }
    }

    // Once a host is disposed, also without a stop, `cairn.workflow.timers.pending` no longer reports its workflow, and
    // its loop counting the queue's timers has ended (it would read a disposed broker every 5 s for the process's life).
    [Fact]
    public async Task a_host_disposed_without_stop_stops_reporting_its_pending_timers()
    {
        var host = Host(new GaugedWorkflow(TimeSpan.FromHours(1)));
        await host.StartAsync();
        await host.Services.GetRequiredService<WorkflowClient>().StartAsync("gauged", "g-1", new GaugedState("g-1"));
        Assert.Contains("gauged", ObserveTimerGauge());

        await ((IAsyncDisposable)host).DisposeAsync();

        Assert.False(
            ObserveTimerGauge().Contains("gauged"),
            "the disposed host's workflow 'gauged' is still reported by cairn.workflow.timers.pending after the host was disposed");
    }

    // Two hosts of one workflow in one process (a test host beside the application's, a second tenant's): the one
    // that stops takes only its own part out of the gauge, and the other's stays reported.
    [Fact]
    public async Task a_host_that_stops_leaves_another_hosts_gauge_of_the_same_workflow()
    {
        using var first = Host(new GaugedWorkflow(TimeSpan.FromHours(1)));
        using var second = Host(new GaugedWorkflow(TimeSpan.FromHours(1)));
        await first.StartAsync();
        await second.StartAsync();
        try
        {
            await first.StopAsync();

            Assert.Contains("gauged", ObserveTimerGauge());
        }
        finally
        {
            await second.StopAsync();
        }

        Assert.DoesNotContain("gauged", ObserveTimerGauge());
    }

    /// <summary>What the gauge reports for the workflow 'gauged'.</summary>
    private static long PendingTimers() => Measurements().Where(m => m.Workflow == "gauged").Sum(m => m.Value);

    private static List<string> ObserveTimerGauge() => [.. Measurements().Select(m => m.Workflow)];

    private static List<(string Workflow, long Value)> Measurements()
    {
        var measured = new List<(string, long)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Cairn.Workflows" && instrument.Name == "cairn.workflow.timers.pending")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "workflow" && tag.Value is string w)
                {
                    measured.Add((w, value));
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return measured;
    }
}
