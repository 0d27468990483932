using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Messaging.Consumers;
using Cairn.Serialization;
using Cairn.Workflows;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Cairn.DependencyInjection;

public sealed partial class CairnBuilder
{
    /// <summary>Hosts a workflow whose definition has a parameterless constructor.</summary>
    public CairnBuilder AddWorkflow<TWorkflow>()
        where TWorkflow : IWorkflowDefinition, new() =>
        AddWorkflow(new TWorkflow());

    /// <summary>
    /// Hosts a workflow: declares its queue (replies, timers and start messages arrive there), runs its coordinator as a
    /// consumer of that queue, and keeps the <see cref="WorkflowSummaries"/> read model. The definition is checked when
    /// the host starts; a broken one stops the start with <see cref="InvalidWorkflowDefinitionException"/>, naming the
    /// step. Start, read and control instances through <see cref="WorkflowClient"/>.
    /// </summary>
    public CairnBuilder AddWorkflow(IWorkflowDefinition workflow)
    {
        ArgumentNullException.ThrowIfNull(workflow);
        if (Services.Any(d => d.ServiceType == typeof(IWorkflowDefinition) && d.ImplementationInstance is IWorkflowDefinition w && w.Name == workflow.Name))
        {
            throw new InvalidWorkflowDefinitionException($"The workflow '{workflow.Name}' is added twice.");
        }

        if (Topology.Consumers.Find(c => c.Queue == workflow.Queue) is { } consumer)
        {
            throw MessagingTopology.WorkflowQueueTaken(consumer.Name, workflow.Queue, workflow.Name);
        }

        Topology.WorkflowQueues[workflow.Queue] = workflow.Name;

        // Timers may lie up to a year ahead: the queue keeps messages longer than that, unless the application
        // declares the queue with settings of its own.
        AddDefaultQueue(new QueueDefinition(workflow.Queue) { Retention = TimeSpan.FromDays(400), MaxReceiveCount = 10 });
        Services.AddSingleton(workflow);
        Services.Configure<CairnOptions>(o => WorkflowEventTypes.Register(o.EventTypes));
        if (!Services.Any(d => d.ServiceType == typeof(WorkflowClient)))
        {
            AddProjection(new WorkflowSummaries());
            Services.TryAddSingleton(sp => new WorkflowClient(
                sp.GetServices<IWorkflowDefinition>(),
                sp.GetRequiredService<IEventStore>(),
                sp.GetRequiredService<IMessageBroker>(),
                sp.GetRequiredService<EventSerializer>(),
                sp,
                sp.GetService<TimeProvider>(),
                sp.GetService<ILoggerFactory>()));
        }

        Services.AddSingleton<IHostedService>(sp => new WorkflowHostedService(sp, workflow.Name));
        return this;
    }
}

/// <summary>Runs one workflow's coordinator as the consumer of its queue, and reports its pending timers.</summary>
internal sealed class WorkflowHostedService(IServiceProvider services, string workflow) : IHostedService, IAsyncDisposable, IDisposable
{
    private QueueConsumer? _consumer;
    private long _timersPending;
    private Func<long>? _pendingTimers;
    private CancellationTokenSource? _stopping;
    private Task _refreshing = Task.CompletedTask;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var coordinator = services.GetRequiredService<WorkflowClient>().Get(workflow);
        var model = coordinator.Model;
        await model.CheckDelaysFitAsync(services.GetRequiredService<IMessageBroker>(), cancellationToken).ConfigureAwait(false);
        var options = new ConsumerOptions(model.Queue, "workflow-" + model.Name)
        {
            Concurrency = model.Concurrency,
            // A decision is a fold in memory and one commit: it ends well inside the queue's 30 s lease, so no renewal
            // runs beside each one. One that stalls is cancelled first; if a lease ever ran out anyway, the redelivery's
            // decision would fail on the instance's expected version, and the inbox drops the repeat.
            ExtendLeaseWhileHandling = false,
            HandlerTimeout = TimeSpan.FromSeconds(20),
            // Two messages of one instance handled at once conflict on its stream: decide again at once, and soon.
            Retry = new RetryPolicy { ImmediateRetries = 10, InitialDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(30) },
        };
        _consumer = new QueueConsumer(
            services.GetRequiredService<IMessageBroker>(),
            options,
            coordinator.HandleAsync,
            services,
            services.GetService<EventSerializer>(),
            services.GetService<ILogger<QueueConsumer>>(),
            services.GetService<TimeProvider>(),
            services.GetService<Diagnostics.FlowRecorder>());
        services.GetRequiredService<ConsumerMonitor>().Add(_consumer);
        await _consumer.StartAsync(cancellationToken).ConfigureAwait(false);
        _stopping = new CancellationTokenSource();
        _pendingTimers = () => Interlocked.Read(ref _timersPending);
        // A backend without settings (in memory) stores for this host alone.
        var cairn = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<CairnOptions>>().Value;
        var storage = cairn.BackendSettings is { } settings ? $"{cairn.BackendName}:{settings}" : $"{cairn.BackendName}:{Guid.NewGuid()}";
        WorkflowMetrics.TrackTimers(model.Name, storage, _pendingTimers);
        _refreshing = RefreshTimersAsync(model.Queue, _stopping.Token);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await StopCountingTimersAsync().ConfigureAwait(false);
        if (_consumer is not null)
        {
            await _consumer.StopAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Also without a stop (a host disposed after a failed start, or never stopped): the gauge and its loop end here.
        await StopCountingTimersAsync().ConfigureAwait(false);
        _stopping?.Dispose();
        if (_consumer is not null)
        {
            await _consumer.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>For a container disposed synchronously: waits for <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Ends the loop that counts the queue's timers, and this host's part in the gauge.</summary>
    private async Task StopCountingTimersAsync()
    {
        if (_stopping is not null && !_stopping.IsCancellationRequested)
        {
            await _stopping.CancelAsync().ConfigureAwait(false);
        }

        await _refreshing.ConfigureAwait(false);
        if (_pendingTimers is not null)
        {
            WorkflowMetrics.UntrackTimers(workflow, _pendingTimers);
        }
    }

    /// <summary>Every few seconds, reads how many delayed messages (timers) the workflow's queue holds.</summary>
    private async Task RefreshTimersAsync(QueueName queue, CancellationToken stop)
    {
        var broker = services.GetRequiredService<IMessageBroker>();
        var time = services.GetService<TimeProvider>() ?? TimeProvider.System;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                var stats = await broker.GetStatsAsync(queue, stop).ConfigureAwait(false);
                Interlocked.Exchange(ref _timersPending, stats.Delayed);
                await Task.Delay(TimeSpan.FromSeconds(5), time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception)
            {
                // A passing failure: the gauge keeps its last value until the next read.
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(5), time, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
