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

    public GaugedWorkflow(TimeSpan wait)
        : base("gauged")
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

    private IHost Host(GaugedWorkflow workflow)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = _schema });
            GaugedWorkflow.Register(o.EventTypes);
        })
        .AddWorkflow(workflow)
        .AddQueue(GaugedWorkflow.Work)
        .AddConsumer(GaugedWorkflow.Work, (context, _) =>
        {
            context.Reply(new GaugedDone(context.Read<GaugedWork>().Id));
            return ValueTask.CompletedTask;
        });
        return builder.Build();
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

    private static List<string> ObserveTimerGauge()
    {
        var workflows = new List<string>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Cairn.Workflows" && instrument.Name == "cairn.workflow.timers.pending")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "workflow" && tag.Value is string w)
                {
                    workflows.Add(w);
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return workflows;
    }
}
