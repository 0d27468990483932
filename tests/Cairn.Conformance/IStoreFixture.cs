using Cairn.Diagnostics;
using Cairn.EventStore;
using Cairn.Messaging;
using Cairn.Projections;
using Cairn.Subscriptions;

namespace Cairn.Conformance;

/// <summary>
/// What a backend gives the conformance suite: a fresh, empty store per test, with its checkpoint store. A backend
/// enrols by implementing this and deriving one line per abstract test class.
/// </summary>
public interface IStoreFixture : IAsyncDisposable
{
    /// <summary>Creates a fresh, empty store with the given options (defaults when null).</summary>
    Task<StoreUnderTest> CreateAsync(EventStoreOptions? options = null);
}

/// <summary>
/// A store created for one test, with its checkpoint store and, for a backend with messaging, its broker; disposing
/// it releases its resources.
/// </summary>
public sealed class StoreUnderTest(IEventStore store, ICheckpointStore checkpoints, Func<ValueTask>? dispose = null, IMessageBroker? broker = null, IProjectionStore? projections = null, ICorrelationTraceReader? traces = null, Func<IProjectionStore>? otherProjections = null) : IAsyncDisposable
{
    public IEventStore Store { get; } = store;

    public ICheckpointStore Checkpoints { get; } = checkpoints;

    /// <summary>The backend's broker; the messaging conformance tests need one.</summary>
    public IMessageBroker Broker => broker ?? throw new InvalidOperationException("This backend's fixture provides no message broker.");

    /// <summary>The backend's projection store; the projection conformance tests need one.</summary>
    public IProjectionStore Projections => projections ?? throw new InvalidOperationException("This backend's fixture provides no projection store.");

    /// <summary>
    /// Makes another projection store object over the same event store, as another part of an application would; the
    /// caller disposes it.
    /// </summary>
    public IProjectionStore NewProjectionStore() => otherProjections?.Invoke() ?? throw new InvalidOperationException("This backend's fixture makes no other projection store.");

    /// <summary>The backend's correlation trace reader; the tracing conformance tests need one.</summary>
    public ICorrelationTraceReader Traces => traces ?? throw new InvalidOperationException("This backend's fixture provides no correlation trace reader.");

    public ValueTask DisposeAsync() => dispose?.Invoke() ?? ValueTask.CompletedTask;
}
