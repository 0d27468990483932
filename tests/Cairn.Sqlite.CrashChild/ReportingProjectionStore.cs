using Cairn.Projections;

namespace Cairn.Sqlite.CrashChild;

/// <summary>
/// Passes everything through to a projection store and reports each batch when it is handed over and again once its
/// commit has returned, never before: the test kills the child between the two to land inside a batch.
/// </summary>
internal sealed class ReportingProjectionStore(IProjectionStore inner, Action<string> say) : IProjectionStore
{
    /// <inheritdoc />
    public async Task<ProjectionBatchResult> ApplyAsync(ProjectionBatch batch, CancellationToken cancellationToken)
    {
        say(CrashProtocol.Applying(batch));
        var result = await inner.ApplyAsync(batch, cancellationToken);
        say(CrashProtocol.Applied(batch, result));
        return result;
    }

    /// <inheritdoc />
    public Task<ProjectionBuilds> OpenAsync(Projection projection, CancellationToken cancellationToken) => inner.OpenAsync(projection, cancellationToken);

    /// <inheritdoc />
    public Task<ProjectionBuild> StartShadowAsync(Projection projection, CancellationToken cancellationToken) => inner.StartShadowAsync(projection, cancellationToken);

    /// <inheritdoc />
    public void AttachInline(Projection projection, ReadModelApply apply) => inner.AttachInline(projection, apply);

    /// <inheritdoc />
    public void DetachInline(string projection) => inner.DetachInline(projection);

    public bool IsInlineDetached(string projection) => inner.IsInlineDetached(projection);

    /// <inheritdoc />
    public Task<IReadOnlyList<ProjectionDeadLetter>> ListDeadLettersAsync(string projection, int max, CancellationToken cancellationToken) =>
        inner.ListDeadLettersAsync(projection, max, cancellationToken);

    /// <inheritdoc />
    public Task<StoredDocument?> LoadDocumentAsync(string projection, DocumentDefinition document, string id, CancellationToken cancellationToken) =>
        inner.LoadDocumentAsync(projection, document, id, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<StoredDocument>> QueryDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken) =>
        inner.QueryDocumentsAsync(projection, document, query, cancellationToken);

    /// <inheritdoc />
    public Task<long> CountDocumentsAsync(string projection, DocumentDefinition document, DocumentQuerySpec query, CancellationToken cancellationToken) =>
        inner.CountDocumentsAsync(projection, document, query, cancellationToken);
}
