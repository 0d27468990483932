using System.Collections.Concurrent;
using Cairn.Conformance.Support;
using Cairn.DependencyInjection;
using Cairn.Messaging;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Cairn.Postgres.Tests;

[EventType("twohosts.work-a")] public sealed record TwoHostsWorkA(string Id);
[EventType("twohosts.done-a")] public sealed record TwoHostsDoneA(string Id, int Copy);
[EventType("twohosts.work-b")] public sealed record TwoHostsWorkB(string Id);
[EventType("twohosts.done-b")] public sealed record TwoHostsDoneB(string Id);

[EventType("twohosts.undo-a")] public sealed record TwoHostsUndoA(string Id);
[EventType("twohosts.hold")] public sealed record TwoHostsHold(string Id);
[EventType("twohosts.held")] public sealed record TwoHostsHeld(string Id);

public sealed record TwoHostsState(string Id);

/// <summary>A step that compensates, then one that waits for a reply that never comes.</summary>
public sealed class TwoHostsCancelWorkflow : Workflow<TwoHostsState>
{
    public static readonly QueueName Undo = "twohosts-undo";
    public static readonly QueueName Hold = "twohosts-hold";

    public TwoHostsCancelWorkflow()
        : base("twohostscancel")
    {
        Step("a").Send(TwoHostsWorkflow.WorkA, s => new TwoHostsWorkA(s.Id)).On<TwoHostsDoneA>().Then("hold").CompensateWith(Undo, s => new TwoHostsUndoA(s.Id));
        Step("hold").Send(Hold, s => new TwoHostsHold(s.Id)).On<TwoHostsHeld>().Complete().NoCompensation("holds nothing");
    }
}

/// <summary>Two steps; the first's service answers twice, so two replies of one instance race on two hosts.</summary>
public sealed class TwoHostsWorkflow : Workflow<TwoHostsState>
{
    public static readonly QueueName WorkA = "twohosts-a";
    public static readonly QueueName WorkB = "twohosts-b";

    public TwoHostsWorkflow()
        : base("twohosts")
    {
        Step("a").Send(WorkA, s => new TwoHostsWorkA(s.Id)).On<TwoHostsDoneA>().Then("b");
        Step("b").Send(WorkB, s => new TwoHostsWorkB(s.Id)).On<TwoHostsDoneB>().Complete();
    }

    public static void Register(EventTypeRegistry types) =>
        types.Register<TwoHostsUndoA>().Register<TwoHostsHold>().Register<TwoHostsHeld>().Register<TwoHostsWorkA>().Register<TwoHostsDoneA>().Register<TwoHostsWorkB>().Register<TwoHostsDoneB>();
}

/// <summary>Durable workflows on PostgreSQL with several hosts sharing one schema.</summary>
public sealed class PostgresWorkflowHostsTests : IAsyncLifetime
{
    private readonly string _schema = PostgresServer.NewSchema();
    private readonly ConcurrentDictionary<string, int> _undos = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _bCommands = new(StringComparer.Ordinal);

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => PostgresServer.DropSchemaAsync(_schema);

    private IHost TwoHostsHost()
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = _schema });
            TwoHostsWorkflow.Register(o.EventTypes);
        })
        .AddWorkflow(new TwoHostsWorkflow())
        .AddWorkflow(new TwoHostsCancelWorkflow())
        .AddQueue(TwoHostsCancelWorkflow.Undo)
        .AddQueue(TwoHostsCancelWorkflow.Hold)
        .AddConsumer(TwoHostsCancelWorkflow.Undo, (context, _) =>
        {
            var id = context.Read<TwoHostsUndoA>().Id;
            context.OnCommitted(() => _undos.AddOrUpdate(id, 1, (_, n) => n + 1));
            return ValueTask.CompletedTask;
        })
        .AddQueue(TwoHostsWorkflow.WorkA)
        .AddQueue(TwoHostsWorkflow.WorkB)
        .AddConsumer(TwoHostsWorkflow.WorkA, (context, _) =>
        {
            var id = context.Read<TwoHostsWorkA>().Id;
            context.Reply(new TwoHostsDoneA(id, 1));
            context.Reply(new TwoHostsDoneA(id, 2));
            return ValueTask.CompletedTask;
        })
        .AddConsumer(TwoHostsWorkflow.WorkB, (context, _) =>
        {
            var id = context.Read<TwoHostsWorkB>().Id;
            context.OnCommitted(() => _bCommands.AddOrUpdate(id, 1, (_, n) => n + 1));
            context.Reply(new TwoHostsDoneB(id));
            return ValueTask.CompletedTask;
        });
        return builder.Build();
    }

    private IHost GaugedHost(TimeSpan wait)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddCairn(o =>
        {
            o.UsePostgres(PostgresServer.ConnectionString, p => p with { Schema = _schema });
            GaugedWorkflow.Register(o.EventTypes);
        })
        // Not "gauged": WorkflowTimerGaugeTests, in parallel, asserts that no host reports that name's pending timers.
        .AddWorkflow(new GaugedWorkflow(wait, "timedhosts"))
        .AddQueue(GaugedWorkflow.Work)
        .AddConsumer(GaugedWorkflow.Work, (context, _) =>
        {
            context.Reply(new GaugedDone(context.Read<GaugedWork>().Id));
            return ValueTask.CompletedTask;
        });
        return builder.Build();
    }

    [Fact]
    public async Task replies_racing_on_two_hosts_move_each_instance_on_once_and_the_summaries_agree_with_the_streams()
    {
        using var first = TwoHostsHost();
        using var second = TwoHostsHost();
        await first.StartAsync();
        await second.StartAsync();
        try
        {
            var clients = new[] { first.Services.GetRequiredService<WorkflowClient>(), second.Services.GetRequiredService<WorkflowClient>() };
            const int count = 40;
            await Task.WhenAll(Enumerable.Range(0, count).Select(i => clients[i % 2].StartAsync("twohosts", "i-" + i, new TwoHostsState("i-" + i))));

            await Wait.UntilAsync(
                async () =>
                {
                    for (var i = 0; i < count; i++)
                    {
                        if ((await clients[0].GetAsync("twohosts", "i-" + i))?.Status != WorkflowStatus.Completed)
                        {
                            return false;
                        }
                    }

                    return true;
                },
                "every instance completes");

            // Counted after the b command's commit, which also carried the reply that completed the instance.
            await Wait.UntilAsync(() => Enumerable.Range(0, count).All(i => _bCommands.ContainsKey("i-" + i)), "every b command's handling is counted");
            Assert.All(Enumerable.Range(0, count), i => Assert.Equal(1, _bCommands.GetValueOrDefault("i-" + i)));
            await clients[1].WaitForSummariesAsync(TimeSpan.FromSeconds(30));
            var summaries = await clients[1].Query().Where("workflow", "twohosts").ToListAsync();
            Assert.Equal(count, summaries.Count);
            Assert.All(summaries, s => Assert.Equal(WorkflowStatus.Completed, s.Status));
        }
        finally
        {
            await second.StopAsync();
            await first.StopAsync();
        }
    }

    [Fact]
    public async Task a_host_stopped_while_deciding_leaves_every_instance_to_the_other_host_which_finishes_each_once()
    {
        using var first = TwoHostsHost();
        using var second = TwoHostsHost();
        await first.StartAsync();
        await second.StartAsync();
        try
        {
            var clients = new[] { first.Services.GetRequiredService<WorkflowClient>(), second.Services.GetRequiredService<WorkflowClient>() };
            const int count = 60;
            await Task.WhenAll(Enumerable.Range(0, count).Select(i => clients[i % 2].StartAsync("twohosts", "s-" + i, new TwoHostsState("s-" + i))));
            await Wait.UntilAsync(() => !_bCommands.IsEmpty, "some instances reach their second step");
            await first.StopAsync();

            await Wait.UntilAsync(
                async () =>
                {
                    for (var i = 0; i < count; i++)
                    {
                        if ((await clients[1].GetAsync("twohosts", "s-" + i))?.Status != WorkflowStatus.Completed)
                        {
                            return false;
                        }
                    }

                    return true;
                },
                "every instance completes on the host left");
            // Counted after the b command's commit, which also carried the reply that completed the instance.
            await Wait.UntilAsync(() => Enumerable.Range(0, count).All(i => _bCommands.ContainsKey("s-" + i)), "every b command's handling is counted");
            Assert.All(Enumerable.Range(0, count), i => Assert.Equal(1, _bCommands.GetValueOrDefault("s-" + i)));
        }
        finally
        {
            await second.StopAsync();
        }
    }

    [Fact]
    public async Task a_cancel_from_two_hosts_at_once_compensates_once()
    {
        using var first = TwoHostsHost();
        using var second = TwoHostsHost();
        await first.StartAsync();
        await second.StartAsync();
        try
        {
            var clients = new[] { first.Services.GetRequiredService<WorkflowClient>(), second.Services.GetRequiredService<WorkflowClient>() };
            const int count = 10;
            await Task.WhenAll(Enumerable.Range(0, count).Select(i => clients[i % 2].StartAsync("twohostscancel", "c-" + i, new TwoHostsState("c-" + i))));
            await Wait.UntilAsync(
                async () =>
                {
                    for (var i = 0; i < count; i++)
                    {
                        if ((await clients[0].GetAsync("twohostscancel", "c-" + i))?.CurrentStep != "hold")
                        {
                            return false;
                        }
                    }

                    return true;
                },
                "every instance waits at 'hold'");
            for (var i = 0; i < count; i++)
            {
                var id = "c-" + i;
                var outcomes = await Task.WhenAll(clients.Select(async c =>
                {
                    try
                    {
                        await c.CancelAsync("twohostscancel", id, "changed their mind");
                        return "cancelled";
                    }
                    catch (WorkflowStateException)
                    {
                        return "refused";
                    }
                }));
                Assert.Equal(["cancelled", "refused"], outcomes.Order(StringComparer.Ordinal));
            }

            await Wait.UntilAsync(() => _undos.Count == count, "each instance's first step is undone");
            Assert.All(Enumerable.Range(0, count), i => Assert.Equal(1, _undos["c-" + i]));
        }
        finally
        {
            await second.StopAsync();
            await first.StopAsync();
        }
    }

    [Fact]
    public async Task the_same_instance_started_from_two_hosts_at_once_starts_once_and_the_other_is_told_it_is_started()
    {
        using var first = TwoHostsHost();
        using var second = TwoHostsHost();
        await first.StartAsync();
        await second.StartAsync();
        try
        {
            var clients = new[] { first.Services.GetRequiredService<WorkflowClient>(), second.Services.GetRequiredService<WorkflowClient>() };
            for (var round = 0; round < 10; round++)
            {
                var id = "same-" + round;
                var starts = clients.Select(c => c.StartAsync("twohosts", id, new TwoHostsState(id))).ToArray();
                var outcomes = await Task.WhenAll(starts.Select(async s =>
                {
                    try
                    {
                        await s;
                        return "started";
                    }
                    catch (WorkflowAlreadyStartedException)
                    {
                        return "already";
                    }
                    catch (Exception ex)
                    {
                        return ex.GetType().Name + ": " + ex.Message;
                    }
                }));
                Assert.Equal(["already", "started"], outcomes.Order(StringComparer.Ordinal));
            }
        }
        finally
        {
            await second.StopAsync();
            await first.StopAsync();
        }
    }

    [Fact]
    public async Task a_timer_armed_by_a_host_that_stopped_fires_on_the_other_host()
    {
        using var first = GaugedHost(TimeSpan.FromSeconds(2));
        using var second = GaugedHost(TimeSpan.FromSeconds(2));
        await first.StartAsync();
        await second.StartAsync();
        try
        {
            var client = first.Services.GetRequiredService<WorkflowClient>();
            await client.StartAsync("timedhosts", "t-1", new GaugedState("t-1"));
            await first.StopAsync();
            var other = second.Services.GetRequiredService<WorkflowClient>();
            await Wait.UntilAsync(async () => (await other.GetAsync("timedhosts", "t-1"))?.Status == WorkflowStatus.Completed, "the other host fires the timer and completes the instance");
        }
        finally
        {
            await second.StopAsync();
        }
    }
}
