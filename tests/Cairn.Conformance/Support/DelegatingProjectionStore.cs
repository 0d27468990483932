using Cairn.Projections;

namespace Cairn.Conformance.Support;

/// <summary>A projection store that forwards to another; tests override what they observe or disturb.</summary>
public class DelegatingProjectionStore(IProjectionStore inner) : IProjectionStore
{
    /// <summary>The wrapped store.</summary>
    public IProjectionStore Inner { get; } = inner;

    /// <inheritdoc />
    public virtual Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken) => Inner.OpenAsync(projection, cancellationToken);

    /// <inheritdoc />
    public virtual Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken) => Inner.StartShadowAsync(projection, cancellationToken);

    /// <inheritdoc />
    public virtual Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken) => Inner.ApplyAsync(batch, cancellationToken);

    /// <inheritdoc />
    public virtual void AttachInline(Projection projection, ReadModelApply apply) => Inner.AttachInline(projection, apply);

    /// <inheritdoc />
    public virtual void DetachInline(string projection) => Inner.DetachInline(projection);

    public virtual bool IsInlineDetached(string projection) => Inner.IsInlineDetached(projection);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken) => Inner.ListDeadLettersAsync(projection, max, cancellationToken);

    /// <inheritdoc />
    public virtual Task<StoredDocument?> LoadDocumentAsync(string projection, DocumentDefinition document, string id, CancellationToken cancellationToken) => Inner.LoadDocumentAsync(projection, document, id, cancellationToken);

    /// <inheritdoc />
    public virtual Task<IReadOnlyList<StoredDocument>> QueryDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken) => Inner.QueryDocumentsAsync(projection, document, query, cancellationToken);

    /// <inheritdoc />
    public virtual Task<long> CountDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken) => Inner.CountDocumentsAsync(projection, document, query, cancellationToken);
}
